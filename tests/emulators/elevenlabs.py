"""ElevenLabs' text-to-speech API as documented: `xi-api-key` auth, `/v1/voices`, synchronous
`POST /v1/text-to-speech/{voice_id}?output_format=...` answering audio with `request-id`,
`history-item-id` and the concurrency headers, `/v1/history` and each item's audio. Errors as
ElevenLabs writes them: 422 `detail` lists for a malformed body, 400 `voice_not_found`,
401 `quota_exceeded` when the account's characters run out, 429
`too_many_concurrent_requests` past `max_concurrent`, and (steered) 429 `system_busy`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from providers.local import encode_audio, synthesize_pcm
from tests.emulators.base import API_KEY, Emulator

VOICES = {"21m00Tcm4TlvDq8ikWAM": "Rachel", "pNInz6obpgDQGcFmaJgB": "Adam"}
MODELS = ("eleven_multilingual_v2", "eleven_flash_v2_5", "eleven_turbo_v2_5", "eleven_v3")
OUTPUT_FORMATS = {
    "mp3_44100_128": "mp3",
    "mp3_22050_32": "mp3",
    "opus_48000_128": "opus",
    "pcm_24000": "pcm",
    "pcm_16000": "pcm",
    "wav_44100": "wav",
}


def detail(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": {"status": code, "message": message}}, status)


class ElevenLabsEmulator(Emulator):
    def __init__(self) -> None:
        super().__init__()
        self.max_concurrent = 2
        self.active = 0
        self.peak = 0
        self.characters_left = 1_000_000
        self.speak_seconds = 0.0
        """How long each call takes to answer (to see the concurrency cap at work)."""
        self.stall_seconds = 0.0
        """The next call is made (and kept in history) but answers only after this long."""
        self.history: list[dict[str, Any]] = []
        self.audio: dict[str, tuple[bytes, str]] = {}

    def reset(self) -> None:
        super().reset()
        self.max_concurrent, self.active, self.peak = 2, 0, 0
        self.characters_left = 1_000_000
        self.speak_seconds = self.stall_seconds = 0.0
        self.history.clear()
        self.audio.clear()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/voices", self.voices, methods=["GET"]),
            Route("/v1/text-to-speech/{voice_id}", self.speak, methods=["POST"]),
            Route("/v1/history", self.list_history, methods=["GET"]),
            Route("/v1/history/{item}/audio", self.history_audio, methods=["GET"]),
        ]

    def authorized(self, request: Request) -> bool:
        return request.headers.get("xi-api-key") == API_KEY

    def _denied(self, request: Request) -> JSONResponse | None:
        if self.authorized(request):
            return None
        return detail(401, "invalid_api_key", "Invalid API key")

    async def voices(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        voices = [{"voice_id": v, "name": n, "category": "premade"} for v, n in VOICES.items()]
        return JSONResponse({"voices": voices})

    async def speak(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        output_format = request.query_params.get("output_format", "mp3_44100_128")
        if output_format not in OUTPUT_FORMATS:
            return JSONResponse(
                {
                    "detail": [
                        {
                            "loc": ["query", "output_format"],
                            "msg": f"Input should be one of {', '.join(OUTPUT_FORMATS)}",
                            "type": "enum",
                        }
                    ]
                },
                422,
            )
        body = await request.json()
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            return JSONResponse(
                {"detail": [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]},
                422,
            )
        model = body.get("model_id", "eleven_multilingual_v2")
        if model not in MODELS:
            return detail(400, "model_not_found", f"A model with model ID {model} does not exist")
        voice = request.path_params["voice_id"]
        if voice not in VOICES:
            return detail(400, "voice_not_found", f"A voice with voice_id {voice} was not found.")
        if len(text) > self.characters_left:
            return detail(
                401,
                "quota_exceeded",
                f"This request exceeds your quota of 10000. You have {self.characters_left} "
                f"credits remaining, while {len(text)} credits are required for this request.",
            )
        with self.lock:
            if self.active >= self.max_concurrent:
                return detail(
                    429,
                    "too_many_concurrent_requests",
                    "Your account is at its limit of concurrent requests.",
                )
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            self.characters_left -= len(text)
            fmt = OUTPUT_FORMATS[output_format]
            if fmt == "pcm":
                data, content_type = synthesize_pcm(text, "alloy", 24_000), "audio/pcm"
            else:
                data, content_type = encode_audio(text, "alloy", fmt)
            item = self.new_id("h")
            request_id = self.new_id("req")
            with self.lock:
                self.created.append(item)
                self.history.insert(
                    0,
                    {
                        "history_item_id": item,
                        "request_id": request_id,
                        "voice_id": voice,
                        "voice_name": VOICES[voice],
                        "model_id": model,
                        "text": text,
                        "date_unix": int(time.time()),
                        "character_count_change_from": self.characters_left + len(text),
                        "character_count_change_to": self.characters_left,
                        "content_type": content_type,
                        "state": "created",
                    },
                )
                self.audio[item] = (data, content_type)
            stall, self.stall_seconds = self.stall_seconds, 0.0
            await asyncio.sleep(stall or self.speak_seconds)
        finally:
            with self.lock:
                self.active -= 1
        return Response(
            data,
            media_type=content_type,
            headers={
                "request-id": request_id,
                "history-item-id": item,
                "character-cost": str(len(text)),
                "current-concurrent-requests": str(self.active + 1),
                "maximum-concurrent-requests": str(self.max_concurrent),
            },
        )

    async def list_history(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        voice = request.query_params.get("voice_id")
        size = min(1000, int(request.query_params.get("page_size", "100")))
        items = [h for h in self.history if voice is None or h["voice_id"] == voice][:size]
        return JSONResponse(
            {
                "history": items,
                "last_history_item_id": items[-1]["history_item_id"] if items else None,
                "has_more": False,
            }
        )

    async def history_audio(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        found = self.audio.get(request.path_params["item"])
        if found is None:
            return detail(400, "history_item_not_found", "History item not found.")
        return Response(found[0], media_type=found[1])
