"""MiniMax: `image-01` (`/v1/image_generation`) and Hailuo video (`/v1/video_generation` -> task,
polled at `/v1/query/video_generation`, file fetched through `/v1/files/retrieve`).

MiniMax answers most errors with HTTP 200 and `base_resp.status_code` != 0; those codes are mapped
here (1026/1027: the input or the output was judged sensitive)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx

from providers.base import (
    ContentPolicyError,
    GeneratedMedia,
    GenerationRequest,
    ProviderAuthError,
    ProviderError,
    ProviderInvalidRequestError,
    ProviderRejectedError,
    ProviderRetryableError,
    ProviderTimeoutError,
    RunHooks,
)
from providers.upstream import (
    HTTPProvider,
    Makers,
    PollSchedule,
    download,
    error_for_status,
    json_body,
)

NAME = "minimax"
RETRYABLE = {1000: "unknown error", 1002: "rate limited", 1013: "internal error", 1024: "busy"}
AUTH = {1004: "authentication failed", 2049: "invalid API key"}
CONTENT = {1026: "the input was judged sensitive", 1027: "the output was judged sensitive"}
PROGRESS = {"Preparing": 5, "Queueing": 10, "Processing": 50}


def base_error(body: dict[str, Any]) -> ProviderError | None:
    """The error a `base_resp` reports, or None when it reports success."""
    base = body.get("base_resp")
    if not isinstance(base, dict):
        return None
    code = int(base.get("status_code") or 0)
    if code == 0:
        return None
    message = f"minimax error {code}: {base.get('status_msg') or ''}".rstrip(": ")
    if code in CONTENT:
        reason = f"The provider refused the request: {CONTENT[code]}."
        return ContentPolicyError(f"minimax refused the request ({code})", public=reason)
    if code in AUTH:
        return ProviderAuthError(message)
    if code == 1001:
        return ProviderTimeoutError(message)
    if code in RETRYABLE:
        return ProviderRetryableError(message)
    if code == 1008:
        return ProviderRejectedError(f"{message} (insufficient balance)")
    return ProviderInvalidRequestError(message)


def resolution_for(size: str) -> str:
    """Hailuo takes a resolution class, named by the shorter side."""
    width, _, height = size.partition("x")
    short = min(int(width), int(height))
    return "512P" if short <= 512 else "768P" if short <= 768 else "1080P"


def data_url(content_type: str, data: bytes) -> str:
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


class MiniMaxProvider(HTTPProvider):
    name = NAME

    def error_from(self, response: httpx.Response) -> ProviderError:
        return base_error(json_body(response)) or error_for_status(NAME, response, "")

    def check(self, body: dict[str, Any]) -> None:
        error = base_error(body)  # MiniMax reports most errors in HTTP 200 bodies
        if error is not None:
            raise error

    def makers(self) -> Makers:
        return {"image": self._image, "video": self._video}

    async def _image(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        p = request.params
        fields: dict[str, Any] = {
            "model": request.model,
            "prompt": p["prompt"],
            "n": p["n"],
            "response_format": "url",
        }
        if p.get("aspect_ratio"):
            fields["aspect_ratio"] = p["aspect_ratio"]
        else:
            width, _, height = str(p["size"]).partition("x")
            fields["width"], fields["height"] = int(width), int(height)
        if p.get("seed") is not None:
            fields["seed"] = p["seed"]
        reference = request.files.get("image")
        if reference is not None:
            fields["subject_reference"] = [
                {
                    "type": "character",
                    "image_file": data_url(reference.content_type, reference.data),
                }
            ]
        await hooks.progress(5)
        body = await self._call("POST", "/v1/image_generation", json=fields)
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        assert isinstance(data, dict)
        urls = data.get("image_urls") or []
        if not urls:
            raise ProviderRetryableError("minimax returned no images")
        await hooks.progress(50)
        for url in urls:
            yield await download(self._client, NAME, str(url), fallback_type="image/jpeg")

    async def _video(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        task_id = request.task_id
        if task_id is None:
            p = request.params
            fields: dict[str, Any] = {
                "model": request.model,
                "prompt": p["prompt"],
                "duration": p["seconds"],
                "resolution": resolution_for(str(p["size"])),
            }
            reference = request.files.get("input_reference")
            if reference is not None:
                fields["first_frame_image"] = data_url(reference.content_type, reference.data)
            body = await self._call("POST", "/v1/video_generation", json=fields)
            task_id = str(body.get("task_id") or "")
            if not task_id:
                raise ProviderRetryableError("minimax accepted the video but gave no task_id")
            await hooks.task_started(task_id)
        schedule = PollSchedule(self._config.poll_initial_seconds, self._config.poll_max_seconds)
        while True:
            try:
                task = await self._call(
                    "GET", "/v1/query/video_generation", params={"task_id": task_id}
                )
            except ProviderError as exc:
                if not exc.retryable:
                    await hooks.task_started(None)  # a rejected task will never finish
                raise
            status = task.get("status")
            if status == "Success":
                break
            if status == "Fail":
                await hooks.task_started(None)
                raise ProviderRetryableError("minimax: the video task failed")
            await hooks.progress(PROGRESS.get(str(status), 10))
            await schedule.wait()
        file = await self._call("GET", "/v1/files/retrieve", params={"file_id": task["file_id"]})
        url = (file.get("file") or {}).get("download_url")
        if not url:
            raise ProviderRetryableError("minimax gave no download_url for the video")
        await hooks.progress(95)
        yield await download(self._client, NAME, str(url), fallback_type="video/mp4")

    async def cancel(self, task_id: str) -> None:
        return None  # MiniMax's video API offers no cancel
