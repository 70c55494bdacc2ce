"""Security: tenant isolation on every endpoint and every kind of id, `/admin` closed to virtual
keys on every route, security headers on every kind of answer, and no prompt, input text or media
byte in any log line of the API and a worker (all loggers captured at DEBUG)."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.platform.logs import QUIET_LOGGERS, quiet_libraries
from tests.builders import png
from tests.infra import (
    Stack,
    base_settings,
    running_stack,
    wait_for_job,
)


def _is_error(resp: httpx.Response, status: int) -> None:
    assert resp.status_code == status, (resp.request.method, resp.request.url, resp.text)
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["message"]


async def _resources_of(client: httpx.AsyncClient) -> dict[str, str]:
    """One of each kind of id a key owns: jobs (image, speech), a video, outputs, a thumbnail,
    an upload."""
    image = (
        await client.post(
            "/v1/jobs",
            json={"type": "image", "model": "local-image", "input": {"prompt": "mine"}},
        )
    ).json()
    speech = (
        await client.post(
            "/v1/jobs",
            json={"type": "speech", "model": "local-speech", "input": {"input": "mine"}},
        )
    ).json()
    video = (await client.post("/v1/videos", json={"model": "local-video", "prompt": "m"})).json()
    upload = (
        await client.post(
            "/v1/media", files={"file": ("in.png", png(colour=(90, 40, 160)), "image/png")}
        )
    ).json()
    image_done = await wait_for_job(client, image["id"])
    await wait_for_job(client, speech["id"])
    video_done = await wait_for_job(client, video["id"])
    return {
        "image_job": image["id"],
        "speech_job": speech["id"],
        "video": video["id"],
        "output": image_done["outputs"][0]["id"],
        "video_output": video_done["outputs"][0]["id"],
        "upload": upload["id"],
    }


async def test_no_key_reaches_another_keys_anything(stack: Stack) -> None:
    alice, bob = stack.new_key("alice"), stack.new_key("bob")
    async with stack.client(alice) as a, stack.client(bob) as b:
        ids = await _resources_of(a)
        before = (await a.get("/v1/usage")).json()
        job_ids = (ids["image_job"], ids["speech_job"], ids["video"])
        for job_id in job_ids:
            _is_error(await b.get(f"/v1/jobs/{job_id}"), 404)
            _is_error(await b.get(f"/v1/jobs/{job_id}/events"), 404)
            _is_error(await b.post(f"/v1/jobs/{job_id}/cancel"), 404)
            _is_error(await b.delete(f"/v1/jobs/{job_id}"), 404)
        _is_error(await b.get(f"/v1/videos/{ids['video']}"), 404)
        _is_error(await b.get(f"/v1/videos/{ids['video']}/content"), 404)
        _is_error(
            await b.get(f"/v1/videos/{ids['video']}/content", params={"variant": "thumbnail"}),
            404,
        )
        _is_error(await b.delete(f"/v1/videos/{ids['video']}"), 404)
        for media_id in (ids["output"], ids["video_output"], ids["upload"]):
            _is_error(await b.get(f"/v1/media/{media_id}"), 404)
            _is_error(await b.delete(f"/v1/media/{media_id}"), 404)
        # Naming another key's upload as an input is refused like an unknown id.
        borrowed = await b.post(
            "/v1/jobs",
            json={
                "type": "image",
                "model": "local-image",
                "input": {"prompt": "x", "image": {"media_id": ids["upload"]}},
            },
        )
        _is_error(borrowed, 400)
        assert "No media found" in borrowed.json()["error"]["message"]
        # Lists and usage show only the caller's own.
        assert (await b.get("/v1/jobs")).json()["data"] == []
        assert (await b.get("/v1/videos")).json()["data"] == []
        bob_usage = (await b.get("/v1/usage")).json()
        assert bob_usage["objects"] == 0 and bob_usage["key_id"] != before["key_id"]
        # Nothing Bob tried changed anything of Alice's.
        assert (await a.get("/v1/usage")).json()["objects"] == before["objects"]
        for job_id in job_ids:
            assert (await a.get(f"/v1/jobs/{job_id}")).json()["status"] == "succeeded"
        assert (await a.get(f"/v1/media/{ids['upload']}", follow_redirects=True)).status_code == 200


ADMIN_ROUTES = [
    ("GET", "/admin/keys", None),
    ("POST", "/admin/keys", {"name": "x"}),
    ("GET", "/admin/keys/key_x", None),
    ("PATCH", "/admin/keys/key_x", {"max_bytes": 1}),
    ("DELETE", "/admin/keys/key_x", None),
    ("GET", "/admin/keys/key_x/usage", None),
    ("GET", "/admin/usage", None),
    ("GET", "/admin/models", None),
    ("POST", "/admin/models", {"name": "a", "targets": ["local-image"]}),
    ("DELETE", "/admin/models/a", None),
]


async def test_admin_is_closed_to_virtual_keys(stack: Stack) -> None:
    token = stack.new_key()
    async with stack.client(token) as client, stack.client() as anonymous:
        for method, path, body in ADMIN_ROUTES:
            _is_error(await client.request(method, path, json=body), 401)
            _is_error(await anonymous.request(method, path, json=body), 401)


async def test_security_headers_on_every_kind_of_answer(stack: Stack) -> None:
    token = stack.new_key()
    async with stack.client(token) as client:
        job = (
            await client.post(
                "/v1/jobs",
                json={"type": "image", "model": "local-image", "input": {"prompt": "h"}},
            )
        ).json()
        done = await wait_for_job(client, job["id"])
        answers = {
            "json": await client.get(f"/v1/jobs/{job['id']}"),
            "error": await client.get("/v1/jobs/job_missing"),
            "unauthenticated": await httpx.AsyncClient(base_url=stack.url).get("/v1/jobs"),
            # Our answer: the bytes (memory storage) or a redirect to the bucket (S3).
            "media": await client.get(done["outputs"][0]["url"]),
            "health": await client.get("/healthz"),
        }
    for name, resp in answers.items():
        headers = resp.headers
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["x-frame-options"] == "DENY", name
        assert headers["referrer-policy"] == "no-referrer", name
        assert "default-src 'none'" in headers.get("content-security-policy", ""), name
        assert headers["strict-transport-security"].startswith("max-age="), name
        if headers["content-type"].startswith("application/json"):
            assert headers["cache-control"] == "no-store", name


@pytest.fixture
def logged_stack(pg_url: str) -> Iterator[Stack]:
    """API and worker in this process, so that every log record of both reaches caplog."""
    with running_stack(base_settings(pg_url), embedded_worker=True) as stack:
        yield stack


@pytest.fixture
def quiet_libraries_applied() -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    quiet_libraries()
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


async def test_no_prompt_input_or_media_byte_in_any_log_line(
    logged_stack: Stack, caplog: pytest.LogCaptureFixture, quiet_libraries_applied: None
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = f"s3cr3t-{secrets.token_hex(6)}"
    image = png(colour=(90, 40, 160))
    token = logged_stack.new_key()
    outputs: list[bytes] = []
    async with logged_stack.client(token) as client:
        requests: list[tuple[str, dict[str, Any]]] = [
            ("/v1/jobs", {"type": "image", "model": "local-image", "input": {"prompt": secret}}),
            ("/v1/jobs", {"type": "speech", "model": "local-speech", "input": {"input": secret}}),
            ("/v1/videos", {"model": "local-video", "prompt": secret}),
            # Refused ones too: the error tells the client, never the log.
            (
                "/v1/jobs",
                {
                    "type": "image",
                    "model": "local-image",
                    "input": {"prompt": secret, "size": "1x1"},
                },
            ),
            ("/v1/images/generations", {"model": "nope", "prompt": secret}),
        ]
        for path, body in requests:
            resp = await client.post(path, json=body)
            if resp.status_code in (200, 202):
                done = await wait_for_job(client, resp.json()["id"])
                for output in done["outputs"]:
                    outputs.append((await client.get(output["url"], follow_redirects=True)).content)
        edit = await client.post(
            "/v1/images/edits",
            data={"prompt": secret, "model": "local-image"},
            files={"image": ("in.png", image, "image/png")},
        )
        assert edit.status_code == 200, edit.text
        sse = await client.get(
            f"/v1/jobs/{(await client.get('/v1/jobs')).json()['data'][0]['id']}/events"
        )
        assert secret in sse.text  # the client may see its own prompt; the logs may not
    assert len(outputs) >= 3
    text = "\n".join(
        f"{record.name} {record.getMessage()} {record.exc_text or ''}" for record in caplog.records
    )
    assert len(caplog.records) > 20  # the capture did see the API and the worker at work
    # The jobs service logs the API's submits (job.queued), the worker its runs.
    assert {"mediagate.jobs", "mediagate.worker"} <= {record.name for record in caplog.records}
    assert secret not in text
    for data in [image, *outputs]:
        sample = data[16:48]  # past the magic numbers, which a content type may name
        for probe in (
            repr(sample)[2:-1],
            sample.decode("latin-1"),
            sample.hex(),
            base64.b64encode(data[:48]).decode()[16:48],
        ):
            assert probe not in text
