"""ElevenLabs: synchronous text to speech (`POST /v1/text-to-speech/{voice_id}`), voices by id
or by name (resolved through `/v1/voices`), our formats mapped onto its `output_format`.

A call that times out may still have been made and paid for: before each call the job records
when it began, and after the answer's headers the `history-item-id`; a retry fetches that item's
audio from `/v1/history` instead of paying twice. 429 `too_many_concurrent_requests` waits for
one of this process's own calls to end (the cap is learned from `maximum-concurrent-requests`);
`system_busy` backs off; 401 `quota_exceeded` is the account's quota, not its credentials."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from providers.base import (
    GeneratedMedia,
    GenerationRequest,
    ProviderAuthError,
    ProviderError,
    ProviderInvalidRequestError,
    ProviderQuotaError,
    ProviderRetryableError,
    RunHooks,
)
from providers.upstream import (
    HTTPProvider,
    UpstreamConfig,
    error_for_status,
    json_body,
    parse_retry_after,
    stream_media,
)

NAME = "elevenlabs"
FORMATS = {
    "mp3": ("mp3_44100_128", "audio/mpeg"),
    "opus": ("opus_48000_128", "audio/ogg"),
    "pcm": ("pcm_24000", "audio/pcm"),  # 16-bit mono at 24 kHz, as OpenAI's pcm
    "wav": ("wav_44100", "audio/wav"),
}
VOICE_ID = re.compile(r"[A-Za-z0-9]{20}")
BUSY_SECONDS = 2.0
"""The backoff after `system_busy` when no Retry-After came with it."""
HISTORY_SLACK_SECONDS = 30
"""How much earlier than our record of a call its history item may be dated (clock skew)."""
STARTED = "started:"
HISTORY = "history:"


def elevenlabs_error(response: httpx.Response) -> ProviderError:
    """ElevenLabs answers `{"detail": {"status": ..., "message": ...}}`, or for a malformed
    request (422) `{"detail": [{"loc", "msg", "type"}]}`."""
    detail = json_body(response).get("detail")
    status, message = "", ""
    if isinstance(detail, dict):
        status, message = str(detail.get("status") or ""), str(detail.get("message") or "")
    elif isinstance(detail, list):
        message = "; ".join(str(d.get("msg")) for d in detail if isinstance(d, dict))
    text = f"elevenlabs answered {response.status_code} {status}: {message}".strip()
    if status == "quota_exceeded":
        return ProviderQuotaError(text)
    if status in ("voice_not_found", "voice_does_not_exist"):
        public = "The provider has no such voice."
        return ProviderInvalidRequestError(text, public=public)
    if status == "too_many_concurrent_requests":
        return ConcurrencyRefused(text)
    if status == "system_busy":
        retry = parse_retry_after(response.headers.get("retry-after"))
        return ProviderRetryableError(text, retry_after=BUSY_SECONDS if retry is None else retry)
    if response.status_code in (401, 403):
        return ProviderAuthError(text)
    return error_for_status(NAME, response, f"{status}: {message}".strip(": "))


class ConcurrencyRefused(ProviderRetryableError):
    """429 `too_many_concurrent_requests`: the account is at its concurrency limit."""


class ConcurrencyGate:
    """At most `cap` calls at once in this process (None: no cap yet), the cap taken from the
    upstream's `maximum-concurrent-requests` answer header."""

    def __init__(self, cap: int | None = None) -> None:
        self.cap = cap
        self.active = 0
        self.peak = 0
        self._changed = asyncio.Condition()

    def _open(self) -> bool:
        return self.cap is None or self.active < self.cap

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._changed:
            await self._changed.wait_for(self._open)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            yield
        finally:
            async with self._changed:
                self.active -= 1
                self._changed.notify_all()

    def learn(self, header: str | None) -> None:
        with contextlib.suppress(TypeError, ValueError):
            cap = int(header or "")
            if cap > 0:
                self.cap = cap

    async def refused(self, seconds: float) -> None:
        """The upstream said we are at its limit: hold the cap at the calls running besides this
        one, and wait (at most `seconds`) for one of them to end."""
        async with self._changed:
            self.cap = max(1, self.active) if self.cap is None else self.cap
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), seconds)


class ElevenLabsProvider(HTTPProvider):
    name = NAME

    def __init__(
        self,
        client: httpx.AsyncClient,
        config: UpstreamConfig,
        *,
        concurrency: int | None = None,
        slot_wait_seconds: float = 1.0,
    ) -> None:
        super().__init__(client, config)
        self.gate = ConcurrencyGate(concurrency)
        self._slot_wait = slot_wait_seconds
        self._voices: dict[str, str] = {}

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"xi-api-key": api_key}

    def error_from(self, response: httpx.Response) -> ProviderError:
        return elevenlabs_error(response)

    async def voice_id(self, voice: str) -> str:
        """A voice id as given, or the id of the account's voice of that name."""
        if VOICE_ID.fullmatch(voice):
            return voice
        wanted = voice.casefold()
        if wanted not in self._voices:
            body = await self._call("GET", "/v1/voices")
            for item in body.get("voices") or []:
                if isinstance(item, dict) and item.get("name") and item.get("voice_id"):
                    self._voices[str(item["name"]).casefold()] = str(item["voice_id"])
        if wanted not in self._voices:
            message = f"elevenlabs has no voice named {voice!r}"
            raise ProviderInvalidRequestError(message, public="The provider has no such voice.")
        return self._voices[wanted]

    async def generate(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        if request.type != "speech":
            raise ProviderInvalidRequestError(f"elevenlabs cannot make {request.type}")
        output_format, content_type = FORMATS[str(request.params.get("format") or "mp3")]
        voice = await self.voice_id(str(request.params["voice"]))
        earlier = await self._earlier_call(request, voice)
        if earlier is not None:
            await hooks.progress(90)
            yield await self._history_audio(earlier, content_type)
            return
        await hooks.task_started(f"{STARTED}{int(time.time())}")
        await hooks.progress(10)
        yield await self._speak(request, voice, output_format, content_type, hooks)

    async def _speak(
        self,
        request: GenerationRequest,
        voice: str,
        output_format: str,
        content_type: str,
        hooks: RunHooks,
    ) -> GeneratedMedia:
        body: dict[str, Any] = {"text": request.params["input"], "model_id": request.model}
        deadline = time.monotonic() + (request.deadline_seconds or 60.0)
        while True:
            async with self.gate.slot():
                response = await self._send(
                    "POST",
                    self._config.url(f"/v1/text-to-speech/{voice}"),
                    params={"output_format": output_format},
                    json=body,
                    stream=True,
                )
                self.gate.learn(response.headers.get("maximum-concurrent-requests"))
                if response.status_code < 400:
                    history_id = response.headers.get("history-item-id")
                    if history_id:
                        await hooks.task_started(f"{HISTORY}{history_id}")
                    return await stream_media(NAME, response, content_type)
                await response.aread()
                await response.aclose()
                error = elevenlabs_error(response)
            if not isinstance(error, ConcurrencyRefused) or time.monotonic() > deadline:
                if not error.retryable:
                    await hooks.task_started(None)
                raise error
            await self.gate.refused(self._slot_wait)  # not an attempt: wait for a slot

    async def _earlier_call(self, request: GenerationRequest, voice: str) -> str | None:
        """The history item an earlier attempt of this job made, if it made one."""
        task = request.task_id or ""
        if task.startswith(HISTORY):
            return task.removeprefix(HISTORY)
        if not task.startswith(STARTED):
            return None
        since = int(task.removeprefix(STARTED)) - HISTORY_SLACK_SECONDS
        page = await self._call("GET", "/v1/history", params={"page_size": 100, "voice_id": voice})
        for item in page.get("history") or []:
            if (
                isinstance(item, dict)
                and int(item.get("date_unix") or 0) >= since
                and item.get("text") == request.params["input"]
                and item.get("model_id") in (None, request.model)
            ):
                return str(item["history_item_id"])
        return None

    async def _history_audio(self, history_id: str, content_type: str) -> GeneratedMedia:
        response = await self._send(
            "GET", self._config.url(f"/v1/history/{history_id}/audio"), stream=True
        )
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            raise elevenlabs_error(response)
        return await stream_media(NAME, response, content_type)

    async def cancel(self, task_id: str) -> None:
        return None  # a synchronous call: nothing to cancel upstream
