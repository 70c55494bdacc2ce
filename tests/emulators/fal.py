"""fal's queue API as documented: `Authorization: Key ...`; `POST /{owner}/{app}[/{path}]`
answers a request id and its status, result and cancel URLs, which hold the owner and app only
(a client that rebuilds them with the path gets 404); the status answers 202 IN_QUEUE (with
`queue_position`), then IN_PROGRESS, then 200 COMPLETED; `{status_url}/stream` tells the same
as Server-Sent Events; the result holds `images[]` (with `has_nsfw_concepts`), `video` or
`audio` on a CDN host that wants no key; cancel answers 202 CANCELLATION_REQUESTED or 400
ALREADY_COMPLETED. Input errors are 422 `{"detail": [{loc, msg, type}]}` at submit; a prompt with
`forbidden` completes with a 422 `content_policy_violation` result, one with `nsfw` has its first
image flagged (`nsfw all`: every image)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.emulators.base import API_KEY, Emulator, audio_bytes, mp4_bytes, png_bytes

APPS = {
    "fal-ai/flux": "image",
    "fal-ai/flux-pro": "image",
    "fal-ai/kling-video": "video",
    "fal-ai/kokoro": "speech",
}
"""Owner/app -> what its endpoints make."""
VOICES = ("af_heart", "af_bella", "am_adam", "am_michael", "bf_emma", "bm_george")
SIZE_PRESETS = (
    "square_hd",
    "square",
    "portrait_4_3",
    "portrait_16_9",
    "landscape_4_3",
    "landscape_16_9",
)
POLLS_TO_FINISH = 2
"""Status answers (polls or stream events) a request is IN_QUEUE/IN_PROGRESS before COMPLETED."""


def _problem(loc: str, msg: str, kind: str, value: Any = None) -> dict[str, Any]:
    return {"loc": ["body", loc], "msg": msg, "type": kind, "input": value}


def unprocessable(*problems: dict[str, Any]) -> JSONResponse:
    return JSONResponse({"detail": list(problems)}, 422, headers={"X-Fal-Retryable": "false"})


class FalEmulator(Emulator):
    def __init__(self) -> None:
        super().__init__()
        self.requests: dict[str, dict[str, Any]] = {}
        self.submitted: list[dict[str, str]] = []
        """The platform headers each submit carried (priority, request timeout)."""
        self.cdn_with_key: list[str] = []
        """CDN requests that carried our key (there must be none)."""
        self.break_stream = False
        """Answer the status stream with 503 (the client must fall back to polling)."""

    def reset(self) -> None:
        super().reset()
        self.submitted.clear()
        self.cdn_with_key.clear()
        self.break_stream = False

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Key {API_KEY}"

    def routes(self) -> list[Route]:
        base = "/{owner}/{app}/requests/{request_id}"
        return [
            Route(base + "/status/stream", self.status_stream, methods=["GET"]),
            Route(base + "/status", self.status, methods=["GET"]),
            Route(base + "/cancel", self.cancel, methods=["PUT"]),
            Route(base, self.result, methods=["GET"]),
            Route("/{model:path}", self.submit, methods=["POST"]),
            Route("/{model:path}", self.unknown, methods=["GET", "PUT"]),
        ]

    async def unknown(self, request: Request) -> Response:
        return JSONResponse({"detail": "Not Found"}, 404)

    def _denied(self, request: Request) -> JSONResponse | None:
        if self.authorized(request):
            return None
        return JSONResponse({"detail": "Invalid Key"}, 401)

    async def submit(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        model = request.path_params["model"]
        owner, _, rest = model.partition("/")
        app = rest.split("/", 1)[0]
        kind = APPS.get(f"{owner}/{app}")
        if kind is None:
            return JSONResponse({"detail": f"Application '{app}' not found"}, 404)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return unprocessable(_problem("body", "Invalid JSON", "json_invalid"))
        problems = _validate(kind, body if isinstance(body, dict) else {})
        if problems:
            return unprocessable(*problems)
        request_id = self.new_id("req-")
        base = f"{self.url}/{owner}/{app}/requests/{request_id}"
        with self.lock:
            self.created.append(request_id)
            self.submitted.append(
                {
                    "priority": request.headers.get("x-fal-queue-priority", ""),
                    "timeout": request.headers.get("x-fal-request-timeout", ""),
                }
            )
            self.requests[request_id] = {
                "kind": kind,
                "app": f"{owner}/{app}",
                "body": body,
                "answers": 0,
                "held": self.held.is_set(),
                "canceled": False,
            }
        return JSONResponse(
            {
                "request_id": request_id,
                "status": "IN_QUEUE",
                "queue_position": 1,
                "status_url": base + "/status",
                "response_url": base,
                "cancel_url": base + "/cancel",
            }
        )

    def _find(self, request: Request) -> dict[str, Any] | None:
        found = self.requests.get(request.path_params["request_id"])
        app = f"{request.path_params['owner']}/{request.path_params['app']}"
        return found if found is not None and found["app"] == app else None

    def _state(self, found: dict[str, Any]) -> dict[str, Any]:
        """The next status answer for a request: it advances one step per answer."""
        if found["canceled"]:
            return {"status": "COMPLETED"}
        found["answers"] += 1
        if found["held"] and self.held.is_set():
            return {"status": "IN_PROGRESS", "logs": None}
        if found["answers"] == 1:
            return {"status": "IN_QUEUE", "queue_position": 0}
        if found["answers"] <= POLLS_TO_FINISH:
            return {"status": "IN_PROGRESS", "logs": None}
        return {"status": "COMPLETED", "logs": None, "metrics": {"inference_time": 0.1}}

    async def status(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        found = self._find(request)
        if found is None:
            return JSONResponse({"detail": "Request not found"}, 404)
        state = self._state(found)
        state["response_url"] = str(request.url).rsplit("/status", 1)[0]
        return JSONResponse(state, 200 if state["status"] == "COMPLETED" else 202)

    async def status_stream(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        found = self._find(request)
        if found is None:
            return JSONResponse({"detail": "Request not found"}, 404)
        if self.break_stream:
            return JSONResponse({"detail": "Service Unavailable"}, 503)

        async def events() -> AsyncIterator[bytes]:
            while True:
                state = self._state(found)
                yield b"data: " + orjson.dumps(state) + b"\n\n"
                if state["status"] == "COMPLETED":
                    return
                await asyncio.sleep(0.05)

        return StreamingResponse(events(), media_type="text/event-stream")

    async def result(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        found = self._find(request)
        if found is None:
            return JSONResponse({"detail": "Request not found"}, 404)
        if found["canceled"]:
            return JSONResponse({"detail": "Request was cancelled"}, 400)
        if found["answers"] <= POLLS_TO_FINISH or (found["held"] and self.held.is_set()):
            return JSONResponse({"detail": "Request is still in progress"}, 400)
        body = found["body"]
        prompt = str(body.get("prompt", ""))
        if "forbidden" in prompt:
            return unprocessable(
                _problem(
                    "prompt",
                    "The content was flagged by a content checker.",
                    "content_policy_violation",
                    prompt,
                )
            )
        return JSONResponse(self._outputs(found["kind"], body, prompt))

    def _outputs(self, kind: str, body: dict[str, Any], prompt: str) -> dict[str, Any]:
        if kind == "image":
            count = int(body.get("num_images", 1))
            flags = [("nsfw" in prompt and (n == 0 or "nsfw all" in prompt)) for n in range(count)]
            images = [
                {
                    "url": self.add_file(png_bytes("64x64"), "image/png"),
                    "width": 64,
                    "height": 64,
                    "content_type": "image/png",
                }
                for _ in range(count)
            ]
            return {"images": images, "seed": body.get("seed", 42), "has_nsfw_concepts": flags}
        if kind == "video":
            return {"video": {"url": self.add_file(mp4_bytes("320x180"), "video/mp4")}}
        data, content_type = audio_bytes("wav")
        return {"audio": {"url": self.add_file(data, content_type), "content_type": content_type}}

    async def cancel(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        found = self._find(request)
        if found is None:
            return JSONResponse({"status": "NOT_FOUND"}, 404)
        if found["answers"] > POLLS_TO_FINISH and not (found["held"] and self.held.is_set()):
            return JSONResponse({"status": "ALREADY_COMPLETED"}, 400)
        found["canceled"] = True
        with self.lock:
            self.canceled.append(request.path_params["request_id"])
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, 202)

    async def _file(self, request: Request) -> Response:
        if request.headers.get("authorization"):
            self.cdn_with_key.append(request.url.path)
        return await super()._file(request)


def _validate(kind: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The documented input schemas' checks (FLUX, Kling, Kokoro)."""
    problems = []
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        problems.append(_problem("prompt", "Field required", "missing"))
    if kind == "image":
        count = body.get("num_images", 1)
        if not isinstance(count, int) or not 1 <= count <= 4:
            problems.append(
                _problem("num_images", "Input should be less than or equal to 4", "less_than_equal")
            )
        size = body.get("image_size", "landscape_4_3")
        if size not in SIZE_PRESETS and not (
            isinstance(size, dict)
            and all(
                isinstance(size.get(k), int) and 0 < size[k] <= 14142 for k in ("width", "height")
            )
        ):
            problems.append(_problem("image_size", "Invalid image size", "value_error"))
    elif kind == "video":
        if body.get("duration", "5") not in ("5", "10"):
            problems.append(
                _problem(
                    "duration", "Input should be '5' or '10'", "literal_error", body.get("duration")
                )
            )
        if body.get("aspect_ratio", "16:9") not in ("16:9", "9:16", "1:1"):
            problems.append(_problem("aspect_ratio", "Unsupported aspect ratio", "literal_error"))
    elif body.get("voice", "af_heart") not in VOICES:
        problems.append(_problem("voice", "Unknown voice", "literal_error", body.get("voice")))
    return problems
