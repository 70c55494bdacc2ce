"""OpenAI's media API as documented: images (generations, edits), Sora videos (created, polled
through queued/in_progress to completed or failed, content downloaded) and speech. Prompts
containing `forbidden` are refused the way OpenAI refuses them; `hold()` keeps videos in
progress."""

from __future__ import annotations

import base64
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators.base import Emulator, audio_bytes, mp4_bytes, png_bytes

IMAGE_SIZES = {
    "dall-e-2": {"256x256", "512x512", "1024x1024"},
    "dall-e-3": {"1024x1024", "1792x1024", "1024x1792"},
    "gpt-image-1": {"1024x1024", "1536x1024", "1024x1536", "auto"},
}
VIDEO_SIZES = {"720x1280", "1280x720", "1024x1792", "1792x1024"}
SPEECH_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac", "opus": "audio/ogg"}


def error(
    status: int,
    message: str,
    code: str | None = None,
    param: str | None = None,
    kind: str = "invalid_request_error",
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status)


class OpenAIEmulator(Emulator):
    def __init__(self) -> None:
        super().__init__()
        self.videos: dict[str, dict[str, Any]] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/v1/images/generations", self.images, methods=["POST"]),
            Route("/v1/images/edits", self.edits, methods=["POST"]),
            Route("/v1/videos", self.create_video, methods=["POST"]),
            Route("/v1/videos/{video_id}", self.get_video, methods=["GET"]),
            Route("/v1/videos/{video_id}", self.delete_video, methods=["DELETE"]),
            Route("/v1/videos/{video_id}/content", self.content, methods=["GET"]),
            Route("/v1/audio/speech", self.speech, methods=["POST"]),
        ]

    def _unauthorized(self, request: Request) -> JSONResponse | None:
        if self.authorized(request):
            return None
        return error(401, "Incorrect API key provided.", "invalid_api_key")

    def _image_result(self, body: dict[str, Any]) -> JSONResponse:
        model = body.get("model", "dall-e-2")
        prompt = body.get("prompt")
        if model not in IMAGE_SIZES:
            return error(404, f"The model {model} does not exist", "model_not_found", "model")
        if not isinstance(prompt, str) or not prompt:
            return error(400, "prompt is required", None, "prompt")
        if "forbidden" in prompt:
            return error(
                400, "Your request was rejected by our safety system.", "content_policy_violation"
            )
        n = int(body.get("n", 1))
        if model == "dall-e-3" and n != 1:
            return error(400, "dall-e-3 only supports n=1", None, "n")
        size = body.get("size", "1024x1024")
        if size not in IMAGE_SIZES[model]:
            return error(400, f"{size} is not a supported size", None, "size")
        response_format = body.get("response_format")
        if model == "gpt-image-1" and response_format is not None:
            return error(
                400, "Unknown parameter: 'response_format'.", "unknown_parameter", "response_format"
            )
        width, _, height = str(size).partition("x")
        data = []
        for index in range(n):
            png = png_bytes(f"{min(int(width), 512)}x{min(int(height), 512)}", f"{prompt}{index}")
            if model == "gpt-image-1" or response_format == "b64_json":
                data.append({"b64_json": base64.b64encode(png).decode()})
            else:
                data.append({"url": self.add_file(png, "image/png"), "revised_prompt": prompt})
        return JSONResponse({"created": 1767225600, "data": data})

    async def images(self, request: Request) -> Response:
        return self._unauthorized(request) or self._image_result(await request.json())

    async def edits(self, request: Request) -> Response:
        if denied := self._unauthorized(request):
            return denied
        form = await request.form()
        image = form.get("image")
        if not isinstance(image, UploadFile):
            return error(400, "image is required", None, "image")
        if not (await image.read()).startswith(b"\x89PNG"):
            return error(400, "image must be a PNG", None, "image")
        fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
        if "n" in fields:
            fields["n"] = int(fields["n"])
        return self._image_result(fields)

    async def create_video(self, request: Request) -> Response:
        if denied := self._unauthorized(request):
            return denied
        if request.headers.get("content-type", "").startswith("multipart/"):
            form = await request.form()
            body: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
            if isinstance(form.get("input_reference"), UploadFile):
                body["input_reference"] = True
        else:
            body = await request.json()
        model = body.get("model", "sora-2")
        if model not in ("sora-2", "sora-2-pro"):
            return error(400, f"invalid model {model}", None, "model")
        if str(body.get("seconds", "4")) not in ("4", "8", "12"):
            return error(400, "seconds must be 4, 8 or 12", None, "seconds")
        if body.get("size", "720x1280") not in VIDEO_SIZES:
            return error(400, "unsupported size", None, "size")
        if not body.get("prompt"):
            return error(400, "prompt is required", None, "prompt")
        video_id = self.new_id("video_")
        with self.lock:
            self.created.append(video_id)
        video = {
            "id": video_id,
            "object": "video",
            "model": model,
            "status": "queued",
            "progress": 0,
            "created_at": 1767225600,
            "seconds": str(body.get("seconds", "4")),
            "size": body.get("size", "720x1280"),
            "error": None,
            "_prompt": body["prompt"],
            "_held": self.held.is_set(),
        }
        self.videos[video_id] = video
        return JSONResponse(_public(video))

    async def get_video(self, request: Request) -> Response:
        if denied := self._unauthorized(request):
            return denied
        video = self.videos.get(request.path_params["video_id"])
        if video is None:
            return error(404, "Video not found", "not_found")
        held = video["_held"] and self.held.is_set()
        if video["status"] == "queued":
            video["status"] = "in_progress"
        elif video["status"] == "in_progress" and not held:
            video["progress"] = min(100, video["progress"] + 50)
            if video["progress"] >= 100:
                if "forbidden" in video["_prompt"]:
                    video["status"] = "failed"
                    video["error"] = {"code": "moderation_blocked", "message": "blocked"}
                else:
                    video["status"] = "completed"
        return JSONResponse(_public(video))

    async def delete_video(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]
        with self.lock:
            self.canceled.append(video_id)
        self.videos.pop(video_id, None)
        return JSONResponse({"id": video_id, "object": "video.deleted", "deleted": True})

    async def content(self, request: Request) -> Response:
        if denied := self._unauthorized(request):
            return denied
        video = self.videos.get(request.path_params["video_id"])
        if video is None or video["status"] != "completed":
            return error(404, "Video is not ready", "not_found")
        width, _, height = video["size"].partition("x")
        small = f"{int(width) // 4}x{int(height) // 4}"
        return Response(mp4_bytes(small), media_type="video/mp4")

    async def speech(self, request: Request) -> Response:
        if denied := self._unauthorized(request):
            return denied
        body = await request.json()
        if body.get("model") not in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"):
            return error(400, "invalid model", None, "model")
        if not body.get("input"):
            return error(400, "input is required", None, "input")
        fmt = body.get("response_format", "mp3")
        if fmt not in SPEECH_TYPES:
            return error(400, "unsupported response_format", None, "response_format")
        data, _ = audio_bytes(fmt)
        return Response(data, media_type=SPEECH_TYPES[fmt])


def _public(video: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in video.items() if not k.startswith("_")}
