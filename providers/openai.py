"""OpenAI: images (`/images/generations`, `/images/edits`), Sora videos (`/videos`, polled, then
`/videos/{id}/content`) and speech (`/audio/speech`)."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from providers.base import (
    ContentPolicyError,
    GeneratedMedia,
    GenerationRequest,
    ProviderError,
    ProviderInvalidRequestError,
    ProviderRetryableError,
    RunHooks,
    extension_for,
    iter_chunks,
    sniff_content_type,
)
from providers.upstream import (
    HTTPProvider,
    Makers,
    PollSchedule,
    download,
    error_for_status,
    json_body,
    stream_media,
)

NAME = "openai"
CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "moderation_blocked"})
SPEECH_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


def openai_error(response: httpx.Response) -> ProviderError:
    error = json_body(response).get("error")
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or "")
    if error.get("code") in CONTENT_POLICY_CODES:
        return ContentPolicyError(f"openai refused the request: {message}")
    return error_for_status(NAME, response, message)


def _failed_video(video: dict[str, Any]) -> ProviderError:
    error = video.get("error") if isinstance(video.get("error"), dict) else {}
    assert isinstance(error, dict)
    code, message = error.get("code"), str(error.get("message") or "the video failed")
    if code in CONTENT_POLICY_CODES:
        return ContentPolicyError(f"openai refused the video: {message}")
    if code in ("invalid_request", "invalid_request_error"):
        return ProviderInvalidRequestError(f"openai: {message}")
    return ProviderRetryableError(f"openai: the video failed ({code or 'unknown'}): {message}")


class OpenAIProvider(HTTPProvider):
    name = NAME

    def error_from(self, response: httpx.Response) -> ProviderError:
        return openai_error(response)

    def makers(self) -> Makers:
        return {"image": self._image, "video": self._video, "speech": self._speech}

    async def _image(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        p = request.params
        fields: dict[str, Any] = {"model": request.model, "prompt": p["prompt"], "n": p["n"]}
        fields["size"] = p["size"]
        for name in ("quality", "style"):
            if p.get(name):
                fields[name] = p[name]
        if request.model.startswith("dall-e"):
            # URLs expire within the hour: each is downloaded at once, below.
            fields["response_format"] = "url"
        await hooks.progress(5)
        if "image" in request.files:
            files = [
                (name, (f.filename, f.data, f.content_type))
                for name, f in request.files.items()
                if name in ("image", "mask")
            ]
            form = {k: str(v) for k, v in fields.items()}
            body = await self._call("POST", "/images/edits", data=form, files=files)
        else:
            body = await self._call("POST", "/images/generations", json=fields)
        data = body.get("data")
        if not isinstance(data, list) or not data:
            raise ProviderRetryableError("openai returned no images")
        await hooks.progress(50)
        for item in data:
            if item.get("b64_json"):
                raw = base64.b64decode(item["b64_json"])
                content_type = sniff_content_type(raw[:16]) or "image/png"
                yield GeneratedMedia(content_type, extension_for(content_type), iter_chunks(raw))
            elif item.get("url"):
                yield await download(self._client, NAME, item["url"], fallback_type="image/png")
            else:
                raise ProviderRetryableError("openai returned an image without url or b64_json")

    async def _video(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        video_id = request.task_id
        video: dict[str, Any] | None = None
        if video_id is not None:
            try:
                video = await self._call("GET", f"/videos/{video_id}")
            except ProviderInvalidRequestError:
                video_id = None  # gone upstream (expired or deleted): start afresh
        if video_id is None:
            video = await self._create_video(request)
            video_id = str(video["id"])
            await hooks.task_started(video_id)
        schedule = PollSchedule(self._config.poll_initial_seconds, self._config.poll_max_seconds)
        while True:
            assert video is not None
            status = video.get("status")
            if status == "completed":
                break
            if status == "failed":
                await hooks.task_started(None)
                raise _failed_video(video)
            await hooks.progress(int(video.get("progress") or 0))
            await schedule.wait()
            video = await self._call("GET", f"/videos/{video_id}")
        await hooks.progress(95)
        yield await download(
            self._client,
            NAME,
            self._config.url(f"/videos/{video_id}/content?variant=video"),
            fallback_type="video/mp4",
            headers=self._auth,
        )

    async def _create_video(self, request: GenerationRequest) -> dict[str, Any]:
        p = request.params
        fields = {
            "model": request.model,
            "prompt": p["prompt"],
            "seconds": str(p["seconds"]),
            "size": p["size"],
        }
        reference = request.files.get("input_reference")
        if reference is None:
            return await self._call("POST", "/videos", json=fields)
        file = (reference.filename, reference.data, reference.content_type)
        return await self._call("POST", "/videos", data=fields, files={"input_reference": file})

    async def _speech(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        p = request.params
        fields: dict[str, Any] = {
            "model": request.model,
            "input": p["input"],
            "voice": p["voice"],
            "response_format": p["format"],
        }
        for name in ("speed", "instructions"):
            if p.get(name) is not None:
                fields[name] = p[name]
        await hooks.progress(5)
        response = await self._send(
            "POST", self._config.url("/audio/speech"), json=fields, stream=True
        )
        if response.status_code >= 400:
            await response.aread()
            await response.aclose()
            raise openai_error(response)
        yield await stream_media(NAME, response, SPEECH_TYPES.get(p["format"], "audio/mpeg"))

    async def cancel(self, task_id: str) -> None:
        # OpenAI's video API has no cancel; deleting a video is the nearest thing it offers.
        # Best effort: our job is canceled whatever the upstream says.
        with contextlib.suppress(ProviderError):
            await self._call("DELETE", f"/videos/{task_id}")
