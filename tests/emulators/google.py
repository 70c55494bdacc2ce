"""The Gemini API's Imagen and Veo endpoints as documented: `x-goog-api-key` auth;
`models/{model}:predict` answering base64 images (a prompt with `filtered` loses one image to
`raiFilteredReason`, `forbidden` loses them all); `models/{model}:predictLongRunning` answering
an operation polled at `/{name}` until `done` (`forbidden` ends it with no samples and
`raiMediaFilteredReasons`); the video's link on the API host needs the key and redirects to
signed storage, which records any request that still carried the key. Errors are
google.rpc.Status bodies: 400 INVALID_ARGUMENT, 400 API_KEY_INVALID, 429 RESOURCE_EXHAUSTED
with RetryInfo (steered with `fail`)."""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.emulators.base import API_KEY, Emulator, mp4_bytes, png_bytes

IMAGEN = (
    "imagen-4.0-generate-001",
    "imagen-4.0-fast-generate-001",
    "imagen-4.0-ultra-generate-001",
)
VEO = ("veo-3.0-generate-001", "veo-3.0-fast-generate-001", "veo-2.0-generate-001")
LRO_RESPONSE = (
    "type.googleapis.com/google.ai.generativelanguage.v1beta." + "PredictLongRunningResponse"
)
ASPECTS = ("1:1", "3:4", "4:3", "9:16", "16:9")


def status(code: int, state: str, message: str, details: list[Any] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "status": state, "details": details or []}},
        code,
    )


def invalid(message: str) -> JSONResponse:
    return status(400, "INVALID_ARGUMENT", message)


class GoogleEmulator(Emulator):
    def __init__(self) -> None:
        super().__init__()
        self.operations: dict[str, dict[str, Any]] = {}
        self.signed_with_key: list[str] = []
        """Signed-storage requests that carried our API key (there must be none)."""

    def reset(self) -> None:
        super().reset()
        self.signed_with_key.clear()

    def routes(self) -> list[Route]:
        return [
            Route("/v1beta/models/{call}", self.call, methods=["POST"]),
            Route("/v1beta/models/{model}/operations/{op}", self.operation, methods=["GET"]),
            Route("/v1beta/files/{file}", self.file_link, methods=["GET"]),
            Route("/signed/{file_id}", self.signed, methods=["GET"]),
        ]

    def authorized(self, request: Request) -> bool:
        return request.headers.get("x-goog-api-key") == API_KEY

    def _denied(self, request: Request) -> JSONResponse | None:
        if self.authorized(request):
            return None
        return status(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
        )

    async def call(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        model, _, method = request.path_params["call"].partition(":")
        body = await request.json()
        instances = body.get("instances") if isinstance(body, dict) else None
        if not isinstance(instances, list) or len(instances) != 1:
            return invalid("instances must hold exactly one instance.")
        prompt = instances[0].get("prompt") if isinstance(instances[0], dict) else None
        if not isinstance(prompt, str) or not prompt:
            return invalid("The prompt is required.")
        parameters = body.get("parameters") or {}
        if parameters.get("aspectRatio", "1:1") not in ASPECTS:
            return invalid(f"Unsupported aspect ratio: {parameters.get('aspectRatio')}")
        if method == "predict" and model in IMAGEN:
            return self._imagen(prompt, parameters)
        if method == "predictLongRunning" and model in VEO:
            return self._veo(model, prompt, parameters)
        return status(404, "NOT_FOUND", f"models/{model} is not found for {method}.")

    def _imagen(self, prompt: str, parameters: dict[str, Any]) -> Response:
        count = parameters.get("sampleCount", 4)
        if not isinstance(count, int) or not 1 <= count <= 4:
            return invalid("sampleCount must be between 1 and 4.")
        if "seed" in parameters and parameters.get("addWatermark", True):
            return invalid("Seed is not supported when watermark is enabled.")
        with self.lock:
            self.created.append(self.new_id("img"))
        filtered = count if "forbidden" in prompt else (1 if "filtered" in prompt else 0)
        reason = "Unable to show generated images. All images were filtered out because they "
        predictions: list[dict[str, Any]] = [
            {
                "bytesBase64Encoded": base64.b64encode(png_bytes("96x96")).decode(),
                "mimeType": "image/png",
            }
            for _ in range(count - filtered)
        ]
        if filtered and parameters.get("includeRaiReason"):
            predictions.append({"raiFilteredReason": reason + "violated usage guidelines."})
        return JSONResponse({"predictions": predictions} if predictions else {})

    def _veo(self, model: str, prompt: str, parameters: dict[str, Any]) -> Response:
        seconds = parameters.get("durationSeconds", 8)
        if not isinstance(seconds, int) or not 4 <= seconds <= 8:
            return invalid("durationSeconds must be between 4 and 8.")
        if parameters.get("resolution", "720p") not in ("720p", "1080p"):
            return invalid("resolution must be 720p or 1080p.")
        op = self.new_id("op")
        name = f"models/{model}/operations/{op}"
        with self.lock:
            self.created.append(name)
        self.operations[op] = {
            "name": name,
            "prompt": prompt,
            "polls": 0,
            "held": self.held.is_set(),
        }
        return JSONResponse({"name": name})

    async def operation(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        found = self.operations.get(request.path_params["op"])
        if found is None:
            return status(404, "NOT_FOUND", "Operation not found.")
        found["polls"] += 1
        if found["polls"] < 3 or (found["held"] and self.held.is_set()):
            return JSONResponse({"name": found["name"], "metadata": {}})
        response: dict[str, Any] = {"@type": LRO_RESPONSE}
        if "forbidden" in found["prompt"]:
            response["generateVideoResponse"] = {
                "raiMediaFilteredCount": 1,
                "raiMediaFilteredReasons": ["We can't create videos of this content."],
            }
        else:
            file_id = self.new_id("vid")
            self.files[file_id] = (mp4_bytes("320x180"), "video/mp4")
            uri = f"{self.url}/v1beta/files/{file_id}:download?alt=media"
            response["generateVideoResponse"] = {"generatedSamples": [{"video": {"uri": uri}}]}
        return JSONResponse({"name": found["name"], "done": True, "response": response})

    async def file_link(self, request: Request) -> Response:
        if not self.authorized(request):
            return status(403, "PERMISSION_DENIED", "The caller does not have permission")
        file_id = request.path_params["file"].removesuffix(":download")
        if file_id not in self.files:
            return status(404, "NOT_FOUND", "File not found.")
        return RedirectResponse(f"{self.url}/signed/{file_id}?X-Goog-Signature=abc", 302)

    async def signed(self, request: Request) -> Response:
        if request.headers.get("x-goog-api-key") or "key=" in str(request.url.query):
            self.signed_with_key.append(request.url.path)
        data, content_type = self.files[request.path_params["file_id"]]
        return Response(data, media_type=content_type)
