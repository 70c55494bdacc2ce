"""Image, video and speech jobs end to end: HTTP submit, arq worker, local provider, storage,
then the outputs downloaded and opened."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from tests.infra import Stack, wait_for_job
from tests.media_checks import audio_samples, mp4_facts, png_size


async def _submit(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = await client.post("/v1/jobs", json=body)
    assert resp.status_code == 202, resp.text
    job: dict[str, Any] = resp.json()
    assert resp.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["object"] == "job"
    return job


async def _download(output: dict[str, Any]) -> bytes:
    # The signed URL works with no header at all, as an <img src> would fetch it.
    async with httpx.AsyncClient(timeout=30, follow_redirects=True) as anonymous:
        resp = await anonymous.get(output["url"])
    assert resp.status_code == 200, resp.text
    assert hashlib.sha256(resp.content).hexdigest() == output["sha256"]
    assert len(resp.content) == output["bytes"]
    return resp.content


async def test_image_job_end_to_end(stack: Stack) -> None:
    key = stack.new_key()
    async with stack.client(key) as client:
        job = await _submit(
            client,
            {
                "type": "image",
                "model": "local-image",
                "input": {"prompt": "a red fox", "n": 2, "size": "256x256", "seed": 3},
            },
        )
        done = await wait_for_job(client, job["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == 100 and done["attempts"] == 1 and done["error"] is None
    assert [o["index"] for o in done["outputs"]] == [0, 1]
    for output in done["outputs"]:
        assert output["content_type"] == "image/png"
        assert png_size(await _download(output)) == (256, 256)
    assert done["outputs"][0]["sha256"] != done["outputs"][1]["sha256"]


async def test_video_job_end_to_end(stack: Stack) -> None:
    key = stack.new_key()
    async with stack.client(key) as client:
        job = await _submit(
            client,
            {
                "type": "video",
                "model": "local-video",
                "input": {"prompt": "waves", "seconds": 2, "size": "320x180", "fps": 12},
            },
        )
        done = await wait_for_job(client, job["id"])
    assert done["status"] == "succeeded", done
    (output,) = done["outputs"]
    assert output["content_type"] == "video/mp4"
    duration, width, height, codec = mp4_facts(await _download(output))
    assert (width, height, codec) == (320, 180, "h264")
    assert duration == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("mp3", "audio/mpeg"), ("wav", "audio/wav"), ("opus", "audio/ogg"), ("flac", "audio/flac")],
)
async def test_speech_job_end_to_end(pg_s3_stack: Stack, fmt: str, content_type: str) -> None:
    key = pg_s3_stack.new_key()
    async with pg_s3_stack.client(key) as client:
        job = await _submit(
            client,
            {
                "type": "speech",
                "model": "local-speech",
                "input": {"input": "Hello from mediagate.", "voice": "nova", "format": fmt},
            },
        )
        done = await wait_for_job(client, job["id"])
    assert done["status"] == "succeeded", done
    (output,) = done["outputs"]
    assert output["content_type"] == content_type
    samples, rate = audio_samples(await _download(output))
    assert samples / rate > 0.5  # "Hello from mediagate." is well over half a second of sound


async def test_list_jobs_newest_first_with_cursor(stack: Stack) -> None:
    key = stack.new_key()
    body = {"type": "image", "model": "local-image", "input": {"prompt": "p", "size": "256x256"}}
    async with stack.client(key) as client:
        ids = [(await _submit(client, body))["id"] for _ in range(3)]
        first = (await client.get("/v1/jobs", params={"limit": 2})).json()
        assert [j["id"] for j in first["data"]] == ids[::-1][:2]
        assert first["has_more"] is True and first["object"] == "list"
        rest = (await client.get("/v1/jobs", params={"limit": 2, "after": first["last_id"]})).json()
        assert [j["id"] for j in rest["data"]] == [ids[0]] and rest["has_more"] is False
        for job_id in ids:
            await wait_for_job(client, job_id)
        done = (await client.get("/v1/jobs", params={"status": "succeeded"})).json()
        assert {j["id"] for j in done["data"]} == set(ids)
        queued = (await client.get("/v1/jobs", params={"status": "queued"})).json()
        assert queued["data"] == []


async def test_media_served_by_owner_key_and_usage_recorded(pg_s3_stack: Stack) -> None:
    key = pg_s3_stack.new_key()
    async with pg_s3_stack.client(key) as client:
        job = await _submit(
            client,
            {"type": "image", "model": "local-image", "input": {"prompt": "q", "size": "512x512"}},
        )
        done = await wait_for_job(client, job["id"])
        media_id = done["outputs"][0]["id"]
        resp = await client.get(f"/v1/media/{media_id}")
    # S3 storage: the API redirects to a presigned URL of the bucket.
    assert resp.status_code == 302
    assert pg_s3_stack.settings.s3_endpoint_url is not None
    assert resp.headers["location"].startswith(pg_s3_stack.settings.s3_endpoint_url)
    async with httpx.AsyncClient() as anonymous:
        direct = await anonymous.get(resp.headers["location"])
    assert direct.status_code == 200 and png_size(direct.content) == (512, 512)
