"""fal's queue against its emulator: each media type through the openai SDK, the answered status
URLs followed (not rebuilt from the model path), priority and deadline headers, the status
stream with a poll fallback, a content refusal not retried, flagged images dropped, a restarted
worker resuming the same request, cancel reaching that request, and fal's errors as ours."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from providers.base import (
    ContentPolicyError,
    GenerationRequest,
    ProviderAuthError,
    ProviderInvalidRequestError,
    ProviderQuotaError,
)
from providers.fal import FalProvider
from providers.upstream import UpstreamConfig
from tests.builders import openai_client
from tests.emulators.base import API_KEY
from tests.infra import Stack, run_job, until, wait_for_job
from tests.media_checks import mp4_facts, png_size
from tests.provider_calls import Hooks, outputs, resumed

SCHNELL = "fal/fal-ai/flux/schnell"
KLING = "fal/fal-ai/kling-video/v2.1/master/text-to-video"


def _provider(http: httpx.AsyncClient, emu: dict[str, Any], key: str = API_KEY) -> FalProvider:
    config = UpstreamConfig(key, emu["fal"].url, poll_initial_seconds=0.05, poll_max_seconds=0.1)
    return FalProvider(http, config)


def _image(prompt: str = "a lighthouse", n: int = 1, **params: Any) -> GenerationRequest:
    return GenerationRequest(
        "job_f",
        "image",
        "fal-ai/flux/schnell",
        {"prompt": prompt, "n": n, "size": "1024x1024", **params},
    )


def test_each_media_type_through_the_openai_sdk(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    client = openai_client(upstream_stack, upstream_stack.new_key())
    images = client.images.generate(model=SCHNELL, prompt="a lighthouse", n=2, size="1344x768")
    assert len(images.data) == 2
    for image in images.data:
        assert image.url is not None
        assert png_size(httpx.get(image.url, follow_redirects=True).content) == (64, 64)
    video = client.videos.create_and_poll(model=KLING, prompt="waves", seconds="5", size="1280x720")
    assert video.status == "completed", video.error
    _, width, height, codec = mp4_facts(client.videos.download_content(video.id).read())
    assert (width, height, codec) == (320, 180, "h264")
    speech = client.audio.speech.create(
        model="fal/fal-ai/kokoro/american-english",
        voice="am_adam",  # type: ignore[arg-type]  # a Kokoro voice, not one of OpenAI's
        input="Hello from fal.",
        response_format="wav",
    )
    assert speech.read()[:4] == b"RIFF"
    fal = emu["fal"]
    assert len(fal.created) == 3
    # The answered URLs hold owner/app only: followed as given, never rebuilt with the path.
    assert fal.count("GET", "/fal-ai/kling-video/requests/") >= 2
    assert fal.count("GET", "/fal-ai/kling-video/v2.1/") == 0
    assert fal.cdn_with_key == []  # outputs copied from the CDN without our key


async def test_priority_and_deadline_reach_fal(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    low = await run_job(
        upstream_stack,
        {"type": "image", "model": SCHNELL, "priority": "low", "input": {"prompt": "x"}},
    )
    high = await run_job(
        upstream_stack,
        {
            "type": "video",
            "model": KLING,
            "priority": "high",
            "input": {"prompt": "x", "seconds": 5},
        },
        max_priority="high",
    )
    assert low["status"] == high["status"] == "succeeded"
    first, second = emu["fal"].submitted
    assert first["priority"] == "low" and second["priority"] == "normal"  # fal has no high
    # The video's time limit is 8 s in these tests: fal may not start it later than that.
    assert 1 <= int(second["timeout"]) <= 8


async def test_a_content_refusal_is_not_retried(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    job = await run_job(
        upstream_stack, {"type": "image", "model": SCHNELL, "input": {"prompt": "forbidden"}}
    )
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["code"] == "content_policy_violation"
    assert "flagged" not in job["error"]["message"]  # fal's own words stay in the worker log
    assert len(emu["fal"].created) == 1


async def test_flagged_images_are_dropped(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    partial = await run_job(
        upstream_stack,
        {"type": "image", "model": SCHNELL, "input": {"prompt": "nsfw cat", "n": 3}},
    )
    assert partial["status"] == "succeeded", partial["error"]
    assert len(partial["outputs"]) == 2  # the one fal's checker blacked out is not kept
    assert partial["cost"]["actual"] == pytest.approx(0.006)
    refused = await run_job(
        upstream_stack,
        {"type": "image", "model": SCHNELL, "input": {"prompt": "nsfw all cat", "n": 2}},
    )
    assert refused["status"] == "failed" and refused["error"]["code"] == "content_policy_violation"


async def test_the_status_stream_and_its_poll_fallback(
    http: httpx.AsyncClient, emu: dict[str, Any]
) -> None:
    fal = emu["fal"]

    def gets(suffix: str) -> int:
        return sum(1 for m, p in list(fal.seen) if m == "GET" and p.endswith(suffix))

    hooks = Hooks()
    assert len(await outputs(_provider(http, emu), _image(), hooks)) == 1
    # One poll, then the stream told IN_PROGRESS and COMPLETED as they happened.
    assert (gets("/status"), gets("/status/stream")) == (1, 1)
    assert hooks.progress_seen[:2] == [10, 30]
    fal.reset()
    fal.break_stream = True  # the stream answers 503: polls carry the request to its end
    assert len(await outputs(_provider(http, emu), _image())) == 1
    assert gets("/status") == 3


async def test_a_restarted_worker_resumes_the_same_request(
    http: httpx.AsyncClient, emu: dict[str, Any]
) -> None:
    fal = emu["fal"]
    fal.hold()
    hooks = Hooks()
    first = asyncio.create_task(outputs(_provider(http, emu), _image(), hooks))
    await until(lambda: hooks.last_task is not None)
    first.cancel()  # the worker died while fal ran the request
    with pytest.raises(asyncio.CancelledError):
        await first
    task = orjson.loads(str(hooks.last_task))
    assert set(task) == {"status_url", "response_url", "cancel_url"}
    assert len(str(hooks.last_task)) <= 1000  # fits jobs.provider_task_id
    fal.release()
    again = Hooks()
    assert len(await outputs(_provider(http, emu), resumed(_image(), hooks.last_task), again)) == 1
    assert len(fal.created) == 1  # no second request: the first one was followed to its end
    assert again.last_task is None  # done: nothing left upstream


async def test_cancel_reaches_that_request(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    fal = emu["fal"]
    fal.hold()
    async with upstream_stack.client(upstream_stack.new_key()) as client:
        resp = await client.post(
            "/v1/jobs",
            json={"type": "video", "model": KLING, "input": {"prompt": "x", "seconds": 5}},
        )
        job_id = resp.json()["id"]
        await wait_for_job(client, job_id, predicate=lambda j: j["progress"] >= 30)
        assert (await client.post(f"/v1/jobs/{job_id}/cancel")).status_code == 200
        await until(lambda: bool(fal.canceled))  # the cancel reached fal
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert fal.canceled == fal.created  # that very request
    assert job["status"] == "canceled" and job["outputs"] == []


async def test_errors_are_ours(http: httpx.AsyncClient, emu: dict[str, Any]) -> None:
    with pytest.raises(ProviderAuthError):
        await outputs(_provider(http, emu, key="wrong"), _image())
    with pytest.raises(ProviderInvalidRequestError) as invalid:
        await outputs(_provider(http, emu), _image(n=9))
    assert "num_images" in invalid.value.message and "num_images" not in invalid.value.public
    emu["fal"].fail(
        "/fal-ai/flux",
        403,
        {"detail": "User is locked. Reason: Exhausted balance. Top up your balance."},
    )
    with pytest.raises(ProviderQuotaError):
        await outputs(_provider(http, emu), _image())
    with pytest.raises(ContentPolicyError) as refused:
        await outputs(_provider(http, emu), _image("forbidden"))
    assert "forbidden" not in refused.value.message  # the flagged input is not quoted back


async def test_a_5xx_then_success(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    emu["fal"].fail("/fal-ai/flux/schnell", 503, {"detail": "Service Unavailable"})
    job = await run_job(
        upstream_stack, {"type": "image", "model": SCHNELL, "input": {"prompt": "x"}}
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2 and len(emu["fal"].created) == 1


def test_the_emulator_validates_as_documented(emu: dict[str, Any]) -> None:
    url, auth = emu["fal"].url, {"Authorization": f"Key {API_KEY}"}
    missing = httpx.post(f"{url}/fal-ai/flux/dev", json={"num_images": 2}, headers=auth)
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "prompt"]
    duration = httpx.post(
        f"{url}/fal-ai/kling-video/v2.1/master/text-to-video",
        json={"prompt": "x", "duration": "7"},
        headers=auth,
    )
    assert duration.status_code == 422 and duration.json()["detail"][0]["type"] == "literal_error"
    assert httpx.post(f"{url}/fal-ai/flux/dev", json={"prompt": "x"}).status_code == 401
    submitted = httpx.post(f"{url}/fal-ai/flux/dev", json={"prompt": "x"}, headers=auth).json()
    first = httpx.get(submitted["status_url"], headers=auth)
    assert first.status_code == 202 and first.json()["status"] == "IN_QUEUE"
    early = httpx.get(submitted["response_url"], headers=auth)
    assert early.status_code == 400
    rebuilt = submitted["status_url"].replace("/fal-ai/flux/", "/fal-ai/flux/dev/")
    assert httpx.get(rebuilt, headers=auth).status_code == 404


async def test_a_broken_download_fetches_the_same_result_again(
    upstream_stack: Stack, emu: dict[str, Any]
) -> None:
    emu["fal"].fail("/files/", 502, {"detail": "Bad Gateway"})  # fal's CDN, once
    job = await run_job(
        upstream_stack, {"type": "image", "model": SCHNELL, "input": {"prompt": "x"}}
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2
    assert len(emu["fal"].created) == 1  # the retry followed the same request: paid once
