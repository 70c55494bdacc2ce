"""Each upstream provider against a loopback emulator of its documented API, through the whole
stack: success for each media type, polling through every upstream status, 429 with Retry-After,
500 then success, content rejection, upstream timeout, cancel reaching Replicate, fallback."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import openai
import pytest

from tests.builders import openai_client
from tests.infra import Stack, until, wait_for_job
from tests.media_checks import audio_samples, mp4_facts, png_size


async def _run(stack: Stack, key: str, body: dict[str, Any]) -> dict[str, Any]:
    async with stack.client(key) as client:
        resp = await client.post("/v1/jobs", json=body)
        assert resp.status_code == 202, resp.text
        return await wait_for_job(client, resp.json()["id"], timeout=30)


async def _bytes(url: str) -> bytes:
    async with httpx.AsyncClient(follow_redirects=True, timeout=30) as client:
        resp = await client.get(url)
        assert resp.status_code == 200
        return resp.content


# OpenAI ------------------------------------------------------------------------------------


def test_openai_images_through_the_sdk(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    client = openai_client(upstream_stack, upstream_stack.new_key())
    urls = client.images.generate(model="dall-e-2", prompt="a fox", n=2, size="256x256")
    assert len(urls.data) == 2
    for image in urls.data:
        # The provider's URL was downloaded at once; the client gets ours.
        assert image.url is not None and image.url.startswith(upstream_stack.url)
        assert "/files/" not in image.url
        assert png_size(httpx.get(image.url, follow_redirects=True).content) == (256, 256)
    assert emu["openai"].count("GET", "/files/") == 2

    b64 = client.images.generate(
        model="gpt-image-1", prompt="a fox", size="1024x1024", response_format="b64_json"
    )
    assert b64.data[0].b64_json
    assert png_size(base64.b64decode(b64.data[0].b64_json)) == (512, 512)

    aliased = client.images.generate(model="my-dalle", prompt="a fox", quality="hd")
    assert aliased.data[0].url
    # Upstream requests are counted by provider and status (the worker runs in this process).
    metrics = httpx.get(f"{upstream_stack.url}/metrics").text
    assert 'mediagate_provider_requests_total{provider="openai",status="200"}' in metrics


def test_openai_content_policy_is_a_400(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    client = openai_client(upstream_stack, upstream_stack.new_key())
    with pytest.raises(openai.BadRequestError) as refused:
        client.images.generate(model="dall-e-3", prompt="something forbidden")
    assert refused.value.code == "content_policy_violation"
    assert emu["openai"].count("POST", "/v1/images/generations") == 1  # never retried


def test_openai_video_polls_to_completion(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    client = openai_client(upstream_stack, upstream_stack.new_key())
    video = client.videos.create_and_poll(model="sora-2", prompt="waves", seconds="4")
    assert video.status == "completed", video.error
    # queued -> in_progress -> 50% -> completed: one upstream task, polled until done.
    assert emu["openai"].created and len(emu["openai"].created) == 1
    assert emu["openai"].count("GET", "/v1/videos/") >= 3
    data = client.videos.download_content(video.id).read()
    _, width, height, codec = mp4_facts(data)
    assert (width, height, codec) == (180, 320, "h264")


def test_openai_speech_and_failed_video(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    client = openai_client(upstream_stack, upstream_stack.new_key())
    speech = client.audio.speech.create(
        model="tts-1", voice="nova", input="hello", response_format="mp3"
    )
    assert speech.response.headers["content-type"] == "audio/mpeg"
    samples, _ = audio_samples(speech.read())
    assert samples > 0
    video = client.videos.create_and_poll(model="sora-2", prompt="forbidden waves", seconds="4")
    assert video.status == "failed"
    assert video.error is not None and video.error.code == "content_policy_violation"


async def test_openai_429_with_retry_after(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    emu["openai"].fail(
        "/v1/images/generations",
        429,
        {"error": {"message": "Rate limit reached", "type": "requests", "code": None}},
        headers={"retry-after": "1"},
    )
    started = time.monotonic()
    job = await _run(
        upstream_stack,
        upstream_stack.new_key(),
        {"type": "image", "model": "dall-e-2", "input": {"prompt": "x", "size": "256x256"}},
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2
    assert time.monotonic() - started >= 1.0  # Retry-After was honoured


# MiniMax -----------------------------------------------------------------------------------


async def test_minimax_image_with_500_then_success(
    upstream_stack: Stack, emu: dict[str, Any]
) -> None:
    emu["minimax"].fail("/v1/image_generation", 500, {"error": "internal"})
    job = await _run(
        upstream_stack,
        upstream_stack.new_key(),
        {
            "type": "image",
            "model": "minimax-image",  # seeded from the models file
            "input": {"prompt": "a lake", "n": 2, "size": "1280x720"},
        },
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2 and job["served_by"] == "minimax/image-01"
    assert len(job["outputs"]) == 2
    for output in job["outputs"]:
        assert output["content_type"] == "image/png"  # judged by the bytes, not the label
        assert png_size(await _bytes(output["url"])) == (320, 180)


async def test_minimax_video_through_every_status(
    upstream_stack: Stack, emu: dict[str, Any]
) -> None:
    key = upstream_stack.new_key()
    async with upstream_stack.client(key) as client:
        resp = await client.post(
            "/v1/jobs",
            json={
                "type": "video",
                "model": "minimax/MiniMax-Hailuo-02",
                "input": {"prompt": "a lake", "seconds": 6},
            },
        )
        job = await wait_for_job(client, resp.json()["id"], timeout=30)
        events = (await client.get(f"/v1/jobs/{job['id']}/events")).text
    assert job["status"] == "succeeded", job["error"]
    assert emu["minimax"].count("GET", "/v1/query/video_generation") == 4
    assert emu["minimax"].count("GET", "/v1/files/retrieve") == 1
    progress = [line for line in events.splitlines() if line == "event: job.progress"]
    assert len(progress) >= 3  # Preparing, Queueing, Processing each reported
    _, width, height, _ = mp4_facts(await _bytes(job["outputs"][0]["url"]))
    assert (width, height) == (320, 180)


async def test_minimax_rejections(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    key = upstream_stack.new_key()
    image = await _run(
        upstream_stack,
        key,
        {"type": "image", "model": "minimax/image-01", "input": {"prompt": "forbidden"}},
    )
    assert image["status"] == "failed" and image["attempts"] == 1
    assert image["error"]["code"] == "content_policy_violation"
    video = await _run(
        upstream_stack,
        key,
        {
            "type": "video",
            "model": "minimax/hailuo-02",
            "input": {"prompt": "forbidden-output", "seconds": 6},
        },
    )
    assert video["status"] == "failed"
    assert video["error"]["code"] == "content_policy_violation"


# Replicate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "model", "media_input", "content_type"),
    [
        ("image", "replicate/black-forest-labs/flux-schnell", {"prompt": "a cat"}, "image/png"),
        ("video", "replicate/minimax/video-01", {"prompt": "a cat"}, "video/mp4"),
        ("speech", "replicate/minimax/speech-02-turbo", {"input": "hi"}, "audio/mpeg"),
    ],
)
async def test_replicate_each_media_type(
    upstream_stack: Stack,
    emu: dict[str, Any],
    media_type: str,
    model: str,
    media_input: dict[str, Any],
    content_type: str,
) -> None:
    job = await _run(
        upstream_stack,
        upstream_stack.new_key(),
        {"type": media_type, "model": model, "input": media_input},
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["outputs"][0]["content_type"] == content_type
    assert emu["replicate"].count("GET", "/v1/predictions/") >= 2  # starting -> processing -> done
    data = await _bytes(job["outputs"][0]["url"])
    if media_type == "image":
        assert png_size(data) == (128, 128)
    elif media_type == "video":
        assert mp4_facts(data)[3] == "h264"
    else:
        assert audio_samples(data)[0] > 0


async def test_replicate_nsfw_failure_is_a_content_rejection(
    upstream_stack: Stack, emu: dict[str, Any]
) -> None:
    job = await _run(
        upstream_stack,
        upstream_stack.new_key(),
        {
            "type": "image",
            "model": "replicate/black-forest-labs/flux-schnell",
            "input": {"prompt": "forbidden"},
        },
    )
    assert job["status"] == "failed" and job["error"]["code"] == "content_policy_violation"
    assert len(emu["replicate"].created) == 1


async def test_cancel_reaches_replicate(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    emu["replicate"].hold()
    key = upstream_stack.new_key()
    async with upstream_stack.client(key) as client:
        resp = await client.post(
            "/v1/jobs",
            json={"type": "video", "model": "replicate/minimax/video-01", "input": {"prompt": "x"}},
        )
        job_id = resp.json()["id"]
        await wait_for_job(client, job_id, predicate=lambda j: j["progress"] >= 50)
        assert (await client.post(f"/v1/jobs/{job_id}/cancel")).status_code == 200
        await until(lambda: bool(emu["replicate"].canceled))
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert emu["replicate"].canceled == emu["replicate"].created  # that very prediction
    assert job["status"] == "canceled" and job["outputs"] == []


# Deadlines and fallback ---------------------------------------------------------------------


async def test_upstream_that_never_finishes_times_out(
    upstream_stack: Stack, emu: dict[str, Any]
) -> None:
    emu["openai"].hold()
    job = await _run(
        upstream_stack,
        upstream_stack.new_key(),
        {"type": "video", "model": "sora-2", "input": {"prompt": "slow", "seconds": 4}},
    )
    assert job["status"] == "failed" and job["error"]["code"] == "timeout"
    assert len(emu["openai"].created) == 1


async def test_fallback_to_the_next_target(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    # OpenAI keeps answering 503: after its tries the alias's second target serves the job.
    emu["openai"].fail(
        "/v1/images/generations",
        503,
        {"error": {"message": "overloaded", "type": "server_error", "code": None}},
        times=10,
        headers={"retry-after": "0"},
    )
    job = await _run(
        upstream_stack,
        upstream_stack.new_key(),
        {"type": "image", "model": "fallback-image", "input": {"prompt": "x", "size": "1024x1024"}},
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["model"] == "fallback-image"
    assert job["served_by"] == "minimax/image-01" and job["provider"] == "minimax"
    assert job["attempts"] == 3  # two on openai, one on minimax
    assert emu["openai"].count("POST", "/v1/images/generations") == 2
