"""Replicate's predictions API as documented: create by model (`/models/{owner}/{name}/
predictions`) or by version (`/predictions`), poll `/predictions/{id}` through starting and
processing to succeeded (output file URLs), failed or canceled, and cancel. 422 for an input the
model cannot take; `forbidden` in the prompt fails the prediction with an NSFW error."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators.base import Emulator, audio_bytes, mp4_bytes, png_bytes

KINDS = {
    "black-forest-labs/flux-schnell": "image",
    "minimax/video-01": "video",
    "minimax/speech-02-turbo": "speech",
}
VERSIONS = {"5599ed30703defd1d160a25a63321b4dec97101d98b4674bcc56e41f62f35637": "image"}


def problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"title": "Error", "detail": detail, "status": status}, status)


class ReplicateEmulator(Emulator):
    def __init__(self) -> None:
        super().__init__()
        self.predictions: dict[str, dict[str, Any]] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models/{owner}/{name}/predictions", self.create_by_model, methods=["POST"]),
            Route("/v1/predictions", self.create_by_version, methods=["POST"]),
            Route("/v1/predictions/{pid}", self.get, methods=["GET"]),
            Route("/v1/predictions/{pid}/cancel", self.cancel, methods=["POST"]),
        ]

    def _denied(self, request: Request) -> JSONResponse | None:
        if self.authorized(request):
            return None
        return problem(401, "You did not pass a valid authentication token")

    async def create_by_model(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        model = f"{request.path_params['owner']}/{request.path_params['name']}"
        if model not in KINDS:
            return problem(404, f"Model {model} not found")
        return self._create(KINDS[model], model, await request.json())

    async def create_by_version(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        body = await request.json()
        kind = VERSIONS.get(body.get("version", ""))
        if kind is None:
            return problem(422, "Invalid version or not permitted")
        return self._create(kind, body["version"], body)

    def _create(self, kind: str, model: str, body: dict[str, Any]) -> Response:
        data = body.get("input")
        if not isinstance(data, dict):
            return problem(422, "input is required")
        required = "text" if kind == "speech" else "prompt"
        if not data.get(required):
            return problem(422, f"- input: {required} is required")
        pid = self.new_id("p")
        with self.lock:
            self.created.append(pid)
        prediction = {
            "id": pid,
            "model": model,
            "status": "starting",
            "input": data,
            "output": None,
            "error": None,
            "urls": {
                "get": f"{self.url}/v1/predictions/{pid}",
                "cancel": f"{self.url}/v1/predictions/{pid}/cancel",
            },
            "_kind": kind,
            "_held": self.held.is_set(),
        }
        self.predictions[pid] = prediction
        return JSONResponse(_public(prediction), 201)

    async def get(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        prediction = self.predictions.get(request.path_params["pid"])
        if prediction is None:
            return problem(404, "Prediction not found")
        held = prediction["_held"] and self.held.is_set()
        if prediction["status"] == "starting":
            prediction["status"] = "processing"
        elif prediction["status"] == "processing" and not held:
            if "forbidden" in str(prediction["input"].get("prompt", "")):
                prediction["status"] = "failed"
                prediction["error"] = "NSFW content detected. Try running it again."
            else:
                prediction["status"] = "succeeded"
                prediction["output"] = self._output(prediction)
        return JSONResponse(_public(prediction))

    def _output(self, prediction: dict[str, Any]) -> Any:
        kind = prediction["_kind"]
        if kind == "image":
            n = int(prediction["input"].get("num_outputs", 1))
            return [self.add_file(png_bytes("128x128"), "image/png") for _ in range(n)]
        if kind == "video":
            return self.add_file(mp4_bytes("320x180"), "video/mp4")
        data, _ = audio_bytes("mp3")
        return self.add_file(data, "application/octet-stream")

    async def cancel(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        prediction = self.predictions.get(request.path_params["pid"])
        if prediction is None:
            return problem(404, "Prediction not found")
        with self.lock:
            self.canceled.append(prediction["id"])
        if prediction["status"] in ("starting", "processing"):
            prediction["status"] = "canceled"
        return JSONResponse(_public(prediction))


def _public(prediction: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in prediction.items() if not k.startswith("_")}
