"""ElevenLabs against its emulator: speech end to end (native API and the openai SDK), voices by
name or id, a timed-out call recovered from history instead of paid twice, the concurrency cap
learned from the answers, quota and busy errors told apart, and the emulator's validation."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from providers.base import (
    GenerationRequest,
    ProviderAuthError,
    ProviderInvalidRequestError,
    ProviderQuotaError,
    ProviderRetryableError,
    ProviderTimeoutError,
)
from providers.elevenlabs import ElevenLabsProvider
from providers.upstream import UpstreamConfig
from tests.builders import openai_client
from tests.emulators.base import API_KEY
from tests.infra import Stack, wait_for_job
from tests.media_checks import audio_samples
from tests.provider_calls import Hooks, outputs, resumed


def _provider(http: httpx.AsyncClient, emu: dict[str, Any], key: str = API_KEY) -> Any:
    return ElevenLabsProvider(
        http, UpstreamConfig(key, emu["elevenlabs"].url), slot_wait_seconds=0.2
    )


def _speech(text: str = "hello there", voice: str = "Rachel", fmt: str = "mp3") -> Any:
    params = {"input": text, "voice": voice, "format": fmt}
    return GenerationRequest("job_el", "speech", "eleven_multilingual_v2", params)


async def test_speech_end_to_end_with_a_voice_by_name(
    upstream_stack: Stack, emu: dict[str, Any]
) -> None:
    async with upstream_stack.client(upstream_stack.new_key()) as client:
        resp = await client.post(
            "/v1/jobs",
            json={
                "type": "speech",
                "model": "elevenlabs/eleven_multilingual_v2",
                "input": {"input": "a" * 500, "voice": "Adam", "format": "wav"},
            },
        )
        assert resp.status_code == 202, resp.text
        job = await wait_for_job(client, resp.json()["id"], timeout=30)
        assert job["status"] == "succeeded", job["error"]
        assert job["outputs"][0]["content_type"] == "audio/wav"
        audio = await client.get(job["outputs"][0]["url"], follow_redirects=True)
    assert audio_samples(audio.content)[0] > 0
    assert job["cost"]["actual"] == pytest.approx(0.05)  # 500 characters at $0.10 per 1,000
    (item,) = emu["elevenlabs"].history
    assert item["voice_id"] == "pNInz6obpgDQGcFmaJgB"  # Adam, resolved through /v1/voices
    assert emu["elevenlabs"].count("POST", "/v1/text-to-speech/pNInz6obpgDQGcFmaJgB") == 1


def test_speech_through_the_openai_sdk(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    client = openai_client(upstream_stack, upstream_stack.new_key())
    speech = client.audio.speech.create(
        model="elevenlabs/eleven_flash_v2_5",
        voice="21m00Tcm4TlvDq8ikWAM",  # Rachel by id
        input="hello",
        response_format="mp3",
    )
    assert speech.response.headers["content-type"] == "audio/mpeg"
    assert audio_samples(speech.read())[0] > 0
    assert emu["elevenlabs"].history[0]["model_id"] == "eleven_flash_v2_5"


async def test_a_timed_out_call_is_recovered_from_history(emu: dict[str, Any]) -> None:
    emu["elevenlabs"].stall_seconds = 3.0  # made and paid for, but answered too late
    async with httpx.AsyncClient(timeout=0.5) as slow:
        provider = _provider(slow, emu)
        hooks = Hooks()
        with pytest.raises(ProviderTimeoutError):
            await outputs(provider, _speech(), hooks)
    assert hooks.last_task is not None and hooks.last_task.startswith("started:")
    async with httpx.AsyncClient(timeout=10) as http:
        again = Hooks()
        (found,) = await outputs(_provider(http, emu), resumed(_speech(), hooks.last_task), again)
    assert found[0] == "audio/mpeg" and audio_samples(found[1])[0] > 0
    # One call paid for: the retry fetched that call's audio from history.
    assert emu["elevenlabs"].count("POST", "/v1/text-to-speech/") == 1
    assert emu["elevenlabs"].count("GET", "/v1/history") == 2  # the list, then the audio
    assert again.tasks == []


async def test_an_answered_call_keeps_its_history_item(
    http: httpx.AsyncClient, emu: dict[str, Any]
) -> None:
    hooks = Hooks()
    await outputs(_provider(http, emu), _speech(), hooks)
    item = emu["elevenlabs"].history[0]["history_item_id"]
    assert hooks.last_task == f"history:{item}"
    # A retry after the download broke off fetches that item; it does not speak again.
    await outputs(_provider(http, emu), resumed(_speech(), hooks.last_task))
    assert emu["elevenlabs"].count("POST", "/v1/text-to-speech/") == 1


async def test_concurrency_cap_is_learned_and_waited_for(
    http: httpx.AsyncClient, emu: dict[str, Any]
) -> None:
    emulator = emu["elevenlabs"]
    emulator.max_concurrent, emulator.speak_seconds = 2, 0.3
    provider = _provider(http, emu)
    first = await asyncio.gather(*(outputs(provider, _speech(f"n{i}")) for i in range(5)))
    assert all(len(found) == 1 for found in first)  # the refused ones waited for a slot
    assert emulator.peak <= 2 and provider.gate.cap == 2
    calls = emulator.count("POST", "/v1/text-to-speech/")
    provider.gate.peak = 0
    second = await asyncio.gather(*(outputs(provider, _speech(f"m{i}")) for i in range(4)))
    assert all(len(found) == 1 for found in second)
    # The cap known, no call is refused any more: one request per output.
    assert emulator.count("POST", "/v1/text-to-speech/") - calls == 4
    assert provider.gate.peak == 2  # calls past the cap waited here, not upstream


async def test_quota_busy_auth_and_voice_errors(
    http: httpx.AsyncClient, emu: dict[str, Any]
) -> None:
    emulator = emu["elevenlabs"]
    emulator.characters_left = 3
    with pytest.raises(ProviderQuotaError) as quota:
        await outputs(_provider(http, emu), _speech())
    assert quota.value.code == "provider_quota_exceeded" and not quota.value.retryable
    emulator.characters_left = 1000
    emulator.fail("/v1/text-to-speech/", 429, {"detail": {"status": "system_busy"}})
    with pytest.raises(ProviderRetryableError) as busy:
        await outputs(_provider(http, emu), _speech())
    assert busy.value.retry_after == 2.0
    with pytest.raises(ProviderAuthError):
        await outputs(_provider(http, emu, key="wrong"), _speech())
    with pytest.raises(ProviderInvalidRequestError) as voice:
        await outputs(_provider(http, emu), _speech(voice="Nobody"))
    assert voice.value.public == "The provider has no such voice."


async def test_a_quota_failure_reaches_the_tenant_as_our_code(
    upstream_stack: Stack, emu: dict[str, Any]
) -> None:
    emu["elevenlabs"].characters_left = 2
    async with upstream_stack.client(upstream_stack.new_key()) as client:
        resp = await client.post(
            "/v1/jobs",
            json={"type": "speech", "model": "elevenlabs/eleven_v3", "input": {"input": "hi!"}},
        )
        job = await wait_for_job(client, resp.json()["id"], timeout=30)
    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["code"] == "provider_quota_exceeded"
    assert "credits" not in job["error"]["message"]  # the upstream's words stay in the log


async def test_emulator_validates_as_documented(emu: dict[str, Any]) -> None:
    base = emu["elevenlabs"].url + "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM"
    headers = {"xi-api-key": API_KEY}
    async with httpx.AsyncClient() as raw:
        missing = await raw.post(base, headers=headers, json={"model_id": "eleven_v3"})
        bad_format = await raw.post(
            base, headers=headers, params={"output_format": "mp4"}, json={"text": "x"}
        )
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "text"]
    assert bad_format.status_code == 422
