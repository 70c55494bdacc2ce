"""Google's Imagen and Veo against the Gemini API emulator: images through the openai SDK, a
partial answer kept and charged for what came, every image filtered as a refusal, Veo polled to
done and its video copied through the signed redirect without our key, a filtered video as a
refusal that costs nothing, RESOURCE_EXHAUSTED waiting as RetryInfo says, a bad key."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from providers.base import GenerationRequest, ProviderAuthError, ProviderInvalidRequestError
from providers.google import GoogleProvider
from providers.upstream import UpstreamConfig
from tests.builders import openai_client
from tests.emulators.base import API_KEY
from tests.infra import Stack, run_job
from tests.media_checks import mp4_facts, png_size
from tests.provider_calls import outputs

IMAGEN = "google/imagen-4.0-generate-001"


def test_imagen_through_the_openai_sdk(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    client = openai_client(upstream_stack, upstream_stack.new_key())
    images = client.images.generate(model=IMAGEN, prompt="a heron", n=2, size="1408x768")
    assert len(images.data) == 2
    for image in images.data:
        assert image.url is not None
        assert png_size(httpx.get(image.url, follow_redirects=True).content) == (96, 96)


async def test_imagen_partial_answer_and_full_refusal(
    upstream_stack: Stack, emu: dict[str, Any]
) -> None:
    partial = await run_job(
        upstream_stack,
        {"type": "image", "model": IMAGEN, "input": {"prompt": "filtered heron", "n": 3}},
    )
    assert partial["status"] == "succeeded", partial["error"]
    assert len(partial["outputs"]) == 2  # one of three filtered: the job keeps what came
    assert partial["cost"]["estimate"] == pytest.approx(0.12)
    assert partial["cost"]["actual"] == pytest.approx(0.08)  # charged for two
    refused = await run_job(
        upstream_stack,
        {"type": "image", "model": IMAGEN, "input": {"prompt": "forbidden heron", "n": 2}},
    )
    assert refused["status"] == "failed" and refused["attempts"] == 1
    assert refused["error"]["code"] == "content_policy_violation"


def test_veo_polls_and_copies_without_the_key(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    client = openai_client(upstream_stack, upstream_stack.new_key())
    video = client.videos.create_and_poll(
        model="google/veo-3.0-fast-generate-001", prompt="waves", seconds="8", size="1280x720"
    )
    assert video.status == "completed", video.error
    assert len(emu["google"].created) == 1
    assert emu["google"].count("GET", "/v1beta/models/veo-3.0-fast-generate-001/operations/") >= 3
    assert emu["google"].count("GET", "/signed/") == 1
    assert emu["google"].signed_with_key == []  # the key stayed on Google's own host
    _, width, height, codec = mp4_facts(client.videos.download_content(video.id).read())
    assert (width, height, codec) == (320, 180, "h264")


async def test_filtered_video_is_a_refusal_not_charged(
    upstream_stack: Stack, emu: dict[str, Any]
) -> None:
    job = await run_job(
        upstream_stack,
        {
            "type": "video",
            "model": "google/veo-2.0-generate-001",
            "input": {"prompt": "forbidden waves", "seconds": 5},
        },
    )
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["code"] == "content_policy_violation"
    assert job["cost"]["actual"] in (0, None) and job["outputs"] == []


async def test_resource_exhausted_waits_for_retry_info(
    upstream_stack: Stack, emu: dict[str, Any]
) -> None:
    emu["google"].fail(
        "/v1beta/models/",
        429,
        {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"}
                ],
            }
        },
    )
    started = time.monotonic()
    job = await run_job(
        upstream_stack, {"type": "image", "model": IMAGEN, "input": {"prompt": "x"}}
    )
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 2 and time.monotonic() - started >= 1.0


async def test_bad_key_and_bad_parameters(http: httpx.AsyncClient, emu: dict[str, Any]) -> None:
    def provider(key: str) -> GoogleProvider:
        return GoogleProvider(http, UpstreamConfig(key, emu["google"].url + "/v1beta"))

    image = GenerationRequest(
        "job_g", "image", "imagen-4.0-generate-001", {"prompt": "x", "n": 1, "size": "1024x1024"}
    )
    with pytest.raises(ProviderAuthError):
        await outputs(provider("wrong"), image)
    too_many = GenerationRequest(
        "job_g", "image", "imagen-4.0-generate-001", {"prompt": "x", "n": 9, "size": "1024x1024"}
    )
    with pytest.raises(ProviderInvalidRequestError) as refused:
        await outputs(provider(API_KEY), too_many)
    assert "sampleCount" in refused.value.message and "sampleCount" not in refused.value.public
