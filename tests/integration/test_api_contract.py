"""Authentication, tenant isolation, validation at the edge, signed links and health."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from app.media.service import signed_path
from tests.builders import image_job
from tests.infra import ADMIN_KEY, Stack, wait_for_job

IMAGE = image_job("iso")


def _assert_error(
    resp: httpx.Response, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = resp.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


async def test_missing_wrong_and_revoked_keys_get_401(stack: Stack) -> None:
    async with stack.client() as anonymous:
        _assert_error(await anonymous.get("/v1/jobs"), 401, "missing_api_key")
        _assert_error(await anonymous.get("/v1/jobs/job_x/events"), 401, "missing_api_key")
        _assert_error(await anonymous.post("/v1/jobs/job_x/cancel"), 401, "missing_api_key")
    async with stack.client("mg_" + "x" * 43) as wrong:
        _assert_error(await wrong.get("/v1/jobs"), 401, "invalid_api_key")
    key = stack.new_key("to-revoke")
    async with stack.client(key) as client:
        assert (await client.get("/v1/jobs")).status_code == 200
        with stack.admin() as admin:
            key_id = next(
                k["id"] for k in admin.get("/admin/keys").json()["data"] if k["prefix"] == key[:8]
            )
            revoked = admin.delete(f"/admin/keys/{key_id}")
            assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        _assert_error(await client.get("/v1/jobs"), 401, "invalid_api_key")
        _assert_error(await client.post("/v1/jobs", json=IMAGE), 401)


async def test_admin_needs_admin_key(stack: Stack) -> None:
    key = stack.new_key()
    async with stack.client(key) as client:
        _assert_error(await client.get("/admin/keys"), 401)
        _assert_error(await client.post("/admin/keys", json={"name": "x"}), 401)
    async with stack.client(ADMIN_KEY) as admin:
        created = await admin.post("/admin/keys", json={"name": "shown once"})
        assert created.status_code == 201
        body = created.json()
        assert body["key"].startswith("mg_") and len(body["key"]) == 46
        assert body["prefix"] == body["key"][:8]
        listed = (await admin.get("/admin/keys")).json()["data"]
        assert all("key" not in k for k in listed)


async def test_another_keys_job_events_and_media_are_404(stack: Stack) -> None:
    alice, bob = stack.new_key("alice"), stack.new_key("bob")
    async with stack.client(alice) as a, stack.client(bob) as b:
        job = (await a.post("/v1/jobs", json=IMAGE)).json()
        done = await wait_for_job(a, job["id"])
        media_id = done["outputs"][0]["id"]
        _assert_error(await b.get(f"/v1/jobs/{job['id']}"), 404)
        _assert_error(await b.get(f"/v1/jobs/{job['id']}/events"), 404)
        _assert_error(await b.post(f"/v1/jobs/{job['id']}/cancel"), 404)
        _assert_error(await b.get(f"/v1/media/{media_id}"), 404)
        assert (await b.get("/v1/jobs")).json()["data"] == []
        own = await a.get(f"/v1/media/{media_id}")
        assert own.status_code in (200, 302)


async def test_signed_urls_reject_tampering_and_expiry(stack: Stack) -> None:
    key = stack.new_key()
    async with stack.client(key) as client:
        job = (await client.post("/v1/jobs", json=IMAGE)).json()
        done = await wait_for_job(client, job["id"])
    output = done["outputs"][0]
    query = parse_qs(urlparse(output["url"]).query)
    exp, sig = int(query["exp"][0]), query["sig"][0]
    media_id = output["id"]
    async with stack.client() as anonymous:
        assert (await anonymous.get(output["url"])).status_code in (200, 302)
        flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
        _assert_error(await anonymous.get(f"/v1/media/{media_id}?exp={exp}&sig={flipped}"), 404)
        _assert_error(await anonymous.get(f"/v1/media/{media_id}?exp={exp + 60}&sig={sig}"), 404)
        _assert_error(await anonymous.get(f"/v1/media/{media_id}"), 404)
        expired = signed_path(stack.settings.signing_secret, media_id, int(time.time()) - 1)
        _assert_error(await anonymous.get(expired), 404)
        other = signed_path(stack.settings.signing_secret, "med_other", exp)
        _assert_error(await anonymous.get(other), 404)
        # A forged signature with non-ASCII characters is a 404 too, not a 500 (schemathesis).
        _assert_error(await anonymous.get(f"/v1/media/{media_id}?exp={exp}&sig=%F1%8E%BC%BDL"), 404)


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"type": "image", "model": "nope", "input": {"prompt": "x"}}, "model_not_found", "model"),
        ({"type": "image", "model": "local-video", "input": {"prompt": "x"}}, None, "model"),
        ({"type": "gif", "model": "local-image", "input": {}}, None, "type"),
        ({"type": "image", "model": "local-image", "input": {}}, None, "input.prompt"),
        (
            {"type": "image", "model": "local-image", "input": {"prompt": "x", "n": 5}},
            None,
            "input.n",
        ),
        (
            {"type": "image", "model": "local-image", "input": {"prompt": "x", "size": "7x7"}},
            None,
            "input.size",
        ),
        (
            {"type": "video", "model": "local-video", "input": {"prompt": "x", "seconds": 13}},
            None,
            "input.seconds",
        ),
        (
            {"type": "speech", "model": "local-speech", "input": {"input": "x", "format": "ogg"}},
            None,
            "input.format",
        ),
        (
            {"type": "image", "model": "local-image", "input": {"prompt": "x", "style": "y"}},
            None,
            "input.style",
        ),
        ({"type": "image", "model": "local-image"}, None, "input"),
    ],
)
async def test_invalid_submissions_are_400_and_change_nothing(
    stack: Stack, body: dict[str, Any], code: str | None, param: str
) -> None:
    key = stack.new_key()
    async with stack.client(key) as client:
        resp = await client.post("/v1/jobs", json=body)
        error = _assert_error(resp, 400, code, param)
        assert error["type"] == "invalid_request_error"
        assert (await client.get("/v1/jobs")).json()["data"] == []


async def test_bad_json_and_oversized_bodies(stack: Stack) -> None:
    key = stack.new_key()
    async with stack.client(key) as client:
        bad = await client.post(
            "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
        )
        _assert_error(bad, 400, "invalid_json")
        huge = {**IMAGE, "input": {"prompt": "x" * (stack.settings.max_body_bytes + 10)}}
        _assert_error(await client.post("/v1/jobs", json=huge), 413)
        _assert_error(await client.get("/v1/nothing-here"), 404)
        _assert_error(await client.get("/v1/jobs", params={"limit": 0}), 400)
        _assert_error(await client.get("/v1/jobs", params={"status": "weird"}), 400, None, "status")


async def test_health_readiness_and_openapi(stack: Stack) -> None:
    async with stack.client() as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "storage": "ok"}
        schema = (await client.get("/schema/openapi.json")).json()
    for path in (
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/events",
        "/v1/jobs/{job_id}/cancel",
        "/v1/media/{media_id}",
        "/admin/keys",
    ):
        assert path in schema["paths"], path
    assert ready.headers["x-content-type-options"] == "nosniff"


async def test_n_over_the_limit_is_worded_once(pg_s3_stack: Stack) -> None:
    """The native and the OpenAI-compatible endpoint refuse too many images alike."""
    async with pg_s3_stack.client(pg_s3_stack.new_key()) as client:
        native = await client.post(
            "/v1/jobs",
            json={"type": "image", "model": "local-image", "input": {"prompt": "p", "n": 50}},
        )
        compat = await client.post(
            "/v1/images/generations", json={"model": "local-image", "prompt": "p", "n": 50}
        )
    assert native.status_code == compat.status_code == 400
    first, second = native.json()["error"], compat.json()["error"]
    assert first["message"] == second["message"] and first["message"].startswith("n must be")
    assert (first["param"], second["param"]) == ("input.n", "n")
