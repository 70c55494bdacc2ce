"""MiniMax's API as documented: `image_generation` (URLs), `video_generation` -> task polled at
`query/video_generation` through Preparing/Queueing/Processing to Success (file_id) or Fail, and
`files/retrieve` -> download_url. Errors come in HTTP 200 bodies as `base_resp.status_code`:
1004 bad key, 1026 sensitive input (`forbidden` in the prompt), 1027 sensitive output
(`forbidden-output`), 2013 invalid parameters."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.emulators.base import Emulator, mp4_bytes, png_bytes

STEPS = ("Preparing", "Queueing", "Processing", "Success")


def base(code: int = 0, message: str = "success") -> dict[str, Any]:
    return {"status_code": code, "status_msg": message}


class MiniMaxEmulator(Emulator):
    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, dict[str, Any]] = {}
        self.file_urls: dict[str, str] = {}

    def routes(self) -> list[Route]:
        return [
            Route("/v1/image_generation", self.image, methods=["POST"]),
            Route("/v1/video_generation", self.video, methods=["POST"]),
            Route("/v1/query/video_generation", self.query, methods=["GET"]),
            Route("/v1/files/retrieve", self.retrieve, methods=["GET"]),
        ]

    def _denied(self, request: Request) -> JSONResponse | None:
        if self.authorized(request):
            return None
        return JSONResponse({"base_resp": base(1004, "authorized error, invalid api key")})

    async def image(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        body = await request.json()
        prompt = body.get("prompt")
        if body.get("model") != "image-01" or not prompt or not 1 <= body.get("n", 1) <= 9:
            return JSONResponse({"base_resp": base(2013, "invalid params")})
        if "forbidden" in prompt:
            return JSONResponse({"base_resp": base(1026, "input new_sensitive")})
        has_ratio = "aspect_ratio" in body
        has_size = "width" in body and "height" in body
        if has_ratio == has_size:
            return JSONResponse({"base_resp": base(2013, "aspect_ratio or width/height")})
        size = "256x256" if has_ratio else f"{body['width'] // 4}x{body['height'] // 4}"
        urls = [self.add_file(png_bytes(size), "image/jpeg") for _ in range(int(body["n"]))]
        return JSONResponse(
            {
                "id": self.new_id("img"),
                "data": {"image_urls": urls},
                "metadata": {"success_count": len(urls), "failed_count": 0},
                "base_resp": base(),
            }
        )

    async def video(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        body = await request.json()
        prompt = body.get("prompt", "")
        if body.get("model") != "MiniMax-Hailuo-02" or body.get("duration") not in (6, 10):
            return JSONResponse({"base_resp": base(2013, "invalid params")})
        if body.get("resolution") not in ("512P", "768P", "1080P"):
            return JSONResponse({"base_resp": base(2013, "invalid resolution")})
        if "forbidden" in prompt and "forbidden-output" not in prompt:
            return JSONResponse({"base_resp": base(1026, "input new_sensitive")})
        task_id = self.new_id("")
        with self.lock:
            self.created.append(task_id)
        self.tasks[task_id] = {"step": -1, "prompt": prompt, "held": self.held.is_set()}
        return JSONResponse({"task_id": task_id, "base_resp": base()})

    async def query(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        task_id = request.query_params.get("task_id", "")
        task = self.tasks.get(task_id)
        if task is None:
            return JSONResponse({"base_resp": base(2013, "invalid task_id")})
        held = task["held"] and self.held.is_set()
        if not (held and task["step"] >= 2):
            task["step"] = min(task["step"] + 1, len(STEPS) - 1)
        status = STEPS[task["step"]]
        if status == "Success" and "forbidden-output" in task["prompt"]:
            return JSONResponse(
                {"task_id": task_id, "status": "Fail", "base_resp": base(1027, "output sensitive")}
            )
        answer: dict[str, Any] = {"task_id": task_id, "status": status, "base_resp": base()}
        if status == "Success":
            file_id = task_id + "1"
            self.file_urls[file_id] = self.add_file(mp4_bytes("320x180"), "video/mp4")
            answer.update(file_id=file_id, video_width=1366, video_height=768)
        return JSONResponse(answer)

    async def retrieve(self, request: Request) -> Response:
        if denied := self._denied(request):
            return denied
        file_id = request.query_params.get("file_id", "")
        url = self.file_urls.get(file_id)
        if url is None:
            return JSONResponse({"base_resp": base(2013, "file not found")})
        file = {"file_id": file_id, "bytes": 0, "filename": "output.mp4", "download_url": url}
        return JSONResponse({"file": file, "base_resp": base()})
