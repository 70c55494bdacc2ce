"""Model routing, in process: a name becomes the catalog models that may serve it, aliases are
checked when saved, and a job's input is validated for every target it may fall back to."""

from __future__ import annotations

import pytest

from app.catalog import routing
from app.jobs import intake
from app.keys.service import authenticate, insert_key, revoke_key
from app.platform.errors import InvalidRequestError, ModelNotFoundError, NotFoundError
from app.platform.resources import Resources
from tests.services.conftest import KeyFactory


async def test_an_alias_routes_to_its_targets_in_order(res: Resources) -> None:
    await routing.save_alias(res, "house-image", ["openai/dall-e-3", "minimax/image-01"])
    async with res.sessionmaker() as session:
        route = await routing.resolve(session, res.catalog, "house-image")
        plain = await routing.resolve(session, res.catalog, "local-image")
        with pytest.raises(ModelNotFoundError):
            await routing.resolve(session, res.catalog, "no-such-model")
    assert [t.name for t in route.targets] == ["openai/dall-e-3", "minimax/image-01"]
    assert (route.type, [t.name for t in plain.targets]) == ("image", ["local-image"])
    names = {entry["id"]: entry["owned_by"] for entry in await routing.models(res)}
    assert names["house-image"] == "mediagate" and names["local-image"] == "local"
    await routing.remove_alias(res, "house-image")
    assert "house-image" not in {entry["id"] for entry in await routing.models(res)}
    with pytest.raises(NotFoundError):
        await routing.remove_alias(res, "house-image")


@pytest.mark.parametrize(
    "targets",
    [
        ["local-image", "local-speech"],  # they make different things
        ["local-image", "no-such-model"],
        [],
    ],
)
async def test_a_bad_alias_is_refused(res: Resources, targets: list[str]) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await routing.save_alias(res, "bad", targets)
    assert (refused.value.param or "").startswith("targets")
    assert await routing.aliases(res) == []


async def test_input_is_validated_for_every_target(res: Resources, new_key: KeyFactory) -> None:
    await routing.save_alias(res, "fallback", ["openai/dall-e-2", "local-image"])
    key = await new_key()
    async with res.sessionmaker() as session:
        # dall-e-2 has no 1792x1024; refusing now means falling back can never fail on input.
        with pytest.raises(InvalidRequestError) as refused:
            await intake.create_job(
                session, key, res.catalog, "image", "fallback", {"prompt": "p", "size": "1792x1024"}
            )
        with pytest.raises(InvalidRequestError) as wrong_type:
            await intake.create_job(session, key, res.catalog, "video", "fallback", {"prompt": "p"})
    assert refused.value.param == "input.size"
    assert wrong_type.value.param == "model"


async def test_the_plain_path_is_for_plain_jobs_only(res: Resources, new_key: KeyFactory) -> None:
    """`plain_job` builds the job without the database only when nothing needs looking up."""
    params = {"prompt": "p", "size": "256x256"}
    plain, limited = await new_key(), await new_key("limited", max_objects=5)
    built = intake.plain_job(plain, res.catalog, "image", "local-image", params)
    assert built is not None and built.targets == ["local-image"] and built.status == "queued"
    assert intake.plain_job(limited, res.catalog, "image", "local-image", params) is None
    assert intake.plain_job(plain, res.catalog, "image", "an-alias", params) is None
    with_upload = {**params, "image": {"media_id": "med_x"}}
    assert intake.plain_job(plain, res.catalog, "image", "local-image", with_upload) is None


async def test_a_key_authenticates_until_revoked(res: Resources) -> None:
    async with res.sessionmaker() as session:
        key, token = await insert_key(session, "auth")
        await session.commit()
    found = await authenticate(res, token)
    assert found is not None and found.id == key.id
    assert await authenticate(res, token[:-1] + ("x" if token[-1] != "x" else "y")) is None
    async with res.sessionmaker() as session:
        await revoke_key(session, key.id)
        await session.commit()
    assert await authenticate(res, token) is None
