"""Storage quotas and usage, in process: one calculation (`usage.breach`) decides for a new job,
an upload and a job's output; usage moves with the rows, exactly."""

from __future__ import annotations

import pytest

from app.jobs import intake
from app.media import service as media_service
from app.media import uploads, usage
from app.platform.errors import AuthenticationError, QuotaExceededError
from app.platform.resources import Resources
from app.platform.tables import VirtualKey, transient
from tests.builders import png
from tests.services.conftest import KeyFactory

INPUT = {"prompt": "a quota", "size": "256x256"}


async def stored(res: Resources) -> list[str]:
    return [found.key async for found in res.store.list_objects("")]


def key_with(**limits: int | None) -> VirtualKey:
    return transient(VirtualKey, id="key_x", name="x", prefix="", key_hash="", **limits)


@pytest.mark.parametrize(
    ("limits", "used", "more", "breached"),
    [
        ({}, (10**12, 10**6), (10**9, 1), None),  # no limits
        ({"max_bytes": 100}, (99, 5), (1, 1), None),  # exactly full is allowed
        ({"max_bytes": 100}, (99, 5), (2, 1), ("bytes", 99, 100)),
        ({"max_bytes": 100}, (100, 5), (1, 1), ("bytes", 100, 100)),  # a new job: at the limit
        ({"max_objects": 3}, (0, 3), (1, 1), ("objects", 3, 3)),
        ({"max_objects": 3}, (0, 3), (50, 0), None),  # replacing an object adds none
        ({"max_bytes": 100, "max_objects": 3}, (90, 3), (20, 1), ("bytes", 90, 100)),
        ({"max_bytes": 100}, (100, 1), (-40, 0), None),  # a smaller replacement
    ],
)
def test_one_quota_calculation(
    limits: dict[str, int],
    used: tuple[int, int],
    more: tuple[int, int],
    breached: tuple[str, int, int] | None,
) -> None:
    found = usage.breach(key_with(**limits), used, more)
    assert (None if found is None else (found.unit, found.used, found.limit)) == breached


async def test_an_upload_past_the_quota_leaves_nothing(res: Resources, new_key: KeyFactory) -> None:
    image = png()
    key = await new_key(max_bytes=len(image) + 10)
    first = await uploads.upload(res, key, image, "file")
    with pytest.raises(QuotaExceededError):
        await uploads.upload(res, key, png(colour=(1, 2, 3)), "file")
    assert await stored(res) == [first.storage_key]
    async with res.sessionmaker() as session:
        assert await usage.totals(session, key.id) == (len(image), 1)


async def test_a_key_at_its_quota_takes_no_new_job(res: Resources, new_key: KeyFactory) -> None:
    key = await new_key(max_objects=1, max_concurrent_jobs=2)
    await uploads.upload(res, key, png(), "file")
    async with res.sessionmaker() as session:
        with pytest.raises(QuotaExceededError) as full:
            await intake.create_job(session, key, res.catalog, "image", "local-image", INPUT)
    assert full.value.code == "storage_quota_exceeded"
    roomy = await new_key(max_concurrent_jobs=1)
    async with res.sessionmaker() as session:
        await intake.create_job(session, roomy, res.catalog, "image", "local-image", INPUT)
        await session.commit()
        with pytest.raises(QuotaExceededError) as busy:
            await intake.create_job(session, roomy, res.catalog, "image", "local-image", INPUT)
    assert busy.value.code == "concurrency_limit_exceeded"


async def test_an_output_replacing_another_counts_the_difference(
    res: Resources, new_key: KeyFactory
) -> None:
    key = await new_key(max_bytes=1000)
    async with res.sessionmaker() as session:
        job = await intake.create_job(session, key, res.catalog, "image", "local-image", INPUT)
        await media_service.record_output(
            session,
            job_id=job.id,
            key_id=key.id,
            index=0,
            storage_key="k/0.png",
            content_type="image/png",
            size=900,
            sha256="0" * 64,
        )
        await session.commit()
    async with res.sessionmaker() as session:
        # A re-run's output at the same place replaces the first: 900 -> 1000 fits, 1001 not.
        assert not await usage.output_over_quota(session, key, job.id, "output", 0, 1000)
        assert await usage.output_over_quota(session, key, job.id, "output", 0, 1001)
        # At another index it adds to what is stored.
        assert await usage.output_over_quota(session, key, job.id, "output", 1, 101)


async def test_usage_moves_with_the_rows(res: Resources, new_key: KeyFactory) -> None:
    key = await new_key()
    media = await uploads.upload(res, key, png(), "file")
    await media_service.delete(res, key.id, media.id)
    async with res.sessionmaker() as session:
        assert await usage.totals(session, key.id) == (0, 0)
        report = await usage.usage_of(session, key)
    image = report["by_type"]["image"]
    assert image["bytes_written"] == image["bytes_deleted"] == media.bytes
    assert await stored(res) == []


async def test_a_deleted_key_writes_nothing(res: Resources, new_key: KeyFactory) -> None:
    from app.keys.service import lock_key
    from app.media import lifecycle

    key = await new_key()
    async with res.sessionmaker() as session:
        await lifecycle.delete_key(session, key.id)
        await session.commit()
    with pytest.raises(AuthenticationError):
        await uploads.upload(res, key, png(), "file")
    assert await stored(res) == []
    async with res.sessionmaker() as session:
        with pytest.raises(AuthenticationError):
            await lock_key(session, key.id)
        assert (await lock_key(session, key.id, writer=False)).deleted_at is not None
