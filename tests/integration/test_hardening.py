"""Hardening (issue 12): hostile or careless input answered with our error shape, never with a
fake outage or a 500."""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from PIL import Image

from tests.builders import image_job
from tests.infra import Stack, base_settings, running_stack, wait_for_job
from tests.media_checks import declared_png

IMAGE = image_job("h")


@pytest.mark.parametrize(
    ("method", "path", "status", "param"),
    [
        ("GET", "/v1/jobs?after=abc%00", 400, "after"),
        ("GET", "/v1/videos?after=abc%00", 400, "after"),
        ("GET", "/v1/jobs/job_%00x", 404, None),
        ("GET", "/v1/jobs/job_%00x/events", 404, None),
        ("DELETE", "/v1/jobs/job_%00x", 404, None),
        ("POST", "/v1/jobs/job_%00x/cancel", 404, None),
        ("GET", "/v1/media/med_%00", 404, None),
        ("GET", "/v1/videos/vid%00", 404, None),
        ("GET", "/v1/jobs?status=queued%00", 400, "status"),
    ],
)
async def test_a_nul_byte_in_an_id_or_cursor_is_not_an_outage(
    api_only_stack: Stack, method: str, path: str, status: int, param: str | None
) -> None:
    token = api_only_stack.new_key()
    async with api_only_stack.client(token) as client:
        resp = await client.request(method, path)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] != "service_unavailable"
    assert error["param"] == param


async def test_a_nul_byte_in_a_body_is_refused_and_changes_nothing(api_only_stack: Stack) -> None:
    with api_only_stack.admin() as admin:
        before = len(admin.get("/admin/keys").json()["data"])
        bad_key = admin.post("/admin/keys", json={"name": "a\u0000b"})
        after = len(admin.get("/admin/keys").json()["data"])
        bad_alias = admin.post(
            "/admin/models", json={"name": "x\u0000", "targets": ["local-image"]}
        )
    assert bad_key.status_code == 400, bad_key.text
    assert bad_key.json()["error"]["param"] == "name"
    assert before == after
    assert bad_alias.status_code == 400, bad_alias.text
    token = api_only_stack.new_key()
    async with api_only_stack.client(token) as client:
        bad_model = await client.post("/v1/jobs", json={**IMAGE, "model": "local\u0000"})
        bad_prompt = await client.post(
            "/v1/jobs", json={**IMAGE, "input": {"prompt": "a\u0000", "size": "256x256"}}
        )
        bad_compat = await client.post(
            "/v1/images/generations", json={"prompt": "a\u0000b", "model": "local-image"}
        )
        listed = (await client.get("/v1/jobs")).json()["data"]
    for resp in (bad_model, bad_prompt, bad_compat):
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["code"] == "invalid_request"
    assert bad_prompt.json()["error"]["param"] == "input"
    assert "input.prompt contains a NUL" in bad_prompt.json()["error"]["message"]
    assert listed == []


@pytest.mark.parametrize(
    ("path", "body", "headers", "param"),
    [
        # A Webhook-Url longer than the column that would keep it.
        (
            "/v1/images/generations",
            {"prompt": "w", "size": "256x256"},
            {"Webhook-Url": "https://example.com/" + "a" * 2100},
            "webhook.url",
        ),
        # A port that is not one.
        (
            "/v1/jobs",
            {**IMAGE, "webhook": {"url": "https://example.com:99999/h"}},
            {},
            "webhook.url",
        ),
        (
            "/v1/jobs",
            {**IMAGE, "input": {**IMAGE["input"], "image": {"url": "https://example.com:70000/a"}}},
            {},
            "input.image",
        ),
    ],
)
async def test_edge_urls_are_a_400_and_change_nothing(
    api_only_stack: Stack, path: str, body: dict[str, Any], headers: dict[str, str], param: str
) -> None:
    token = api_only_stack.new_key()
    async with api_only_stack.client(token) as client:
        resp = await client.post(path, json=body, headers=headers)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"]["param"] == param
        assert (await client.get("/v1/jobs")).json()["data"] == []


@pytest.mark.parametrize(
    ("headers", "query", "param"),
    [
        ({"Last-Event-ID": str(2**64)}, {}, "Last-Event-ID"),
        ({}, {"after": str(2**64)}, "after"),
        ({}, {"after": "-1"}, "after"),
    ],
)
async def test_resume_points_past_any_event_id_are_a_400(
    api_only_stack: Stack, headers: dict[str, str], query: dict[str, str], param: str
) -> None:
    token = api_only_stack.new_key()
    async with api_only_stack.client(token) as client:
        job = (await client.post("/v1/jobs", json=IMAGE)).json()
        resp = await client.get(f"/v1/jobs/{job['id']}/events", headers=headers, params=query)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("status", "code", "retries"),
    [
        (401, "provider_auth_failed", 2),  # the job's attempt, then the OpenAI-compatible call
        (400, "invalid_request", 2),
        (429, "provider_unavailable", 9),  # every retry of the job
    ],
)
async def test_upstream_error_text_never_reaches_the_tenant(
    upstream_stack: Stack, emu: dict[str, Any], status: int, code: str, retries: int
) -> None:
    """OpenAI's error messages carry our key's suffix and organisation: the tenant gets our code
    and a generic sentence, in the job, its events and the OpenAI-compatible error."""
    leak = "Incorrect API key provided: sk-proj-****WXYZ; organization org-Leak123"
    emu["openai"].fail(
        "/v1/images/generations",
        status,
        {"error": {"message": leak, "type": "invalid_request_error", "code": "x"}},
        times=retries,
    )
    token = upstream_stack.new_key()
    body = {
        "type": "image",
        "model": "openai/dall-e-2",
        "input": {"prompt": "p", "size": "256x256"},
    }
    async with upstream_stack.client(token) as client:
        job = (await client.post("/v1/jobs", json=body)).json()
        done = await wait_for_job(client, job["id"], timeout=60)
        events = (await client.get(f"/v1/jobs/{job['id']}/events")).text
        compat = await client.post(
            "/v1/images/generations", json={"model": "openai/dall-e-2", "prompt": "p"}
        )
    assert done["status"] == "failed" and done["error"]["code"] == code
    for text in (str(done), events):
        assert "WXYZ" not in text and "org-Leak123" not in text
    if status != 429:  # the 429s were used up by the first job's retries
        assert compat.status_code >= 400 and "WXYZ" not in compat.text


async def test_a_decompression_bomb_upload_is_a_400_and_stores_nothing(
    api_only_stack: Stack,
) -> None:
    token = api_only_stack.new_key()
    async with api_only_stack.client(token) as client:
        for path, fields in (("/v1/media", {}), ("/v1/images/edits", {"prompt": "p"})):
            resp = await client.post(
                path,
                data=fields,
                files={
                    "file" if path == "/v1/media" else "image": (
                        "bomb.png",
                        declared_png(),
                        "image/png",
                    )
                },
            )
            assert resp.status_code == 400, resp.text
            assert "megapixels" in resp.json()["error"]["message"]
        usage = (await client.get("/v1/usage")).json()
    assert usage["objects"] == 0


async def test_failed_authentications_are_throttled_per_address(pg_url: str) -> None:
    settings = base_settings(pg_url, auth_failures_per_minute=3)
    with running_stack(settings, embedded_worker=False) as stack:
        good = stack.new_key()
        async with stack.client(good) as client:
            assert (await client.get("/v1/jobs")).status_code == 200  # now cached
        answers = []
        for _ in range(5):
            async with stack.client("mg_" + secrets.token_urlsafe(32)) as guesser:
                answers.append(await guesser.get("/v1/jobs"))
        assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
        refused = answers[-1]
        assert refused.json()["error"]["code"] == "too_many_failed_authentications"
        assert refused.headers["retry-after"] == "60"
        # Signed links need no key; a key this process knows still works from that address.
        async with stack.client(good) as client:
            assert (await client.get("/v1/jobs")).status_code == 200


async def test_media_downloads_by_key_count_against_its_rate_limit(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=True) as stack:
        with stack.admin() as admin:
            created = admin.post("/admin/keys", json={"name": "r", "requests_per_minute": 10})
        token = created.json()["key"]
        async with stack.client(token) as client:
            job = (await client.post("/v1/jobs", json=IMAGE)).json()  # 1
            done = await wait_for_job(client, job["id"])  # 2.. (polls count too)
            media_id = done["outputs"][0]["id"]
            statuses = [(await client.get(f"/v1/media/{media_id}")).status_code for _ in range(12)]
    assert statuses[-1] == 429


async def _chunked(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 64 * 1024):
        yield data[start : start + 64 * 1024]


async def test_body_limits_cannot_be_bypassed(api_only_stack: Stack) -> None:
    """MAX_BODY_BYTES holds for every body but uploads: sent chunked (no Content-Length) or as
    multipart to a JSON endpoint, a large body is a 413 and changes nothing; an upload route
    takes a file over MAX_BODY_BYTES (up to MAX_UPLOAD_BYTES)."""
    limit = api_only_stack.settings.max_body_bytes
    token = api_only_stack.new_key()
    big_prompt = "x" * (limit + 1024)
    body = orjson.dumps({**IMAGE, "input": {**IMAGE["input"], "prompt": big_prompt}})
    async with api_only_stack.client(token) as client:
        chunked = await client.post(
            "/v1/jobs", content=_chunked(body), headers={"Content-Type": "application/json"}
        )
        assert chunked.status_code == 413, chunked.text
        assert chunked.json()["error"]["type"] == "invalid_request_error"
        for path in ("/v1/jobs", "/v1/images/generations", "/v1/audio/speech"):
            multipart = await client.post(
                path, data={"prompt": big_prompt, "input": big_prompt, "model": "local-image"}
            )
            assert multipart.status_code == 413, (path, multipart.text)
        assert (await client.get("/v1/jobs")).json()["data"] == []
        buf = io.BytesIO()
        Image.frombytes("RGB", (700, 700), secrets.token_bytes(700 * 700 * 3)).save(buf, "PNG")
        assert len(buf.getvalue()) > limit
        upload = await client.post(
            "/v1/media", files={"file": ("big.png", buf.getvalue(), "image/png")}
        )
        assert upload.status_code == 201, upload.text


async def test_concurrent_uploads_are_capped(pg_url: str) -> None:
    settings = base_settings(pg_url, max_concurrent_uploads=1)
    with running_stack(settings, embedded_worker=False) as stack:
        token = stack.new_key()
        buf = io.BytesIO()
        Image.new("RGB", (64, 64)).save(buf, "PNG")
        boundary = "cap-boundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        release = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield head + buf.getvalue()
            await release.wait()
            yield f"\r\n--{boundary}--\r\n".encode()

        async with stack.client(token) as client:
            first = asyncio.create_task(
                client.post(
                    "/v1/media",
                    content=slow(),
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                )
            )
            await asyncio.sleep(0.5)  # the first upload holds the only slot
            second = await client.post(
                "/v1/media", files={"file": ("b.png", buf.getvalue(), "image/png")}
            )
            release.set()
            assert (await first).status_code == 201
            third = await client.post(
                "/v1/media", files={"file": ("c.png", buf.getvalue(), "image/png")}
            )
    assert second.status_code == 429 and second.json()["error"]["code"] == "too_many_uploads"
    assert second.headers["retry-after"] == "5"
    assert third.status_code == 201
