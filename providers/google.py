"""Google's Gemini API: Imagen (`models/{model}:predict`, images answered in base64) and Veo
(`models/{model}:predictLongRunning`, an operation polled until `done`).

Imagen may answer fewer images than asked, the rest filtered (`raiFilteredReason`): the job keeps
what came, and none at all is a content refusal. A Veo operation that is `done` with no samples
and `raiMediaFilteredReasons` is a refusal (Google does not charge it), never a success. Veo's
download link needs the key and redirects to signed storage: the key goes to Google's host only,
never past the redirect; Google deletes the video after two days, so it is copied at once.
Errors are `{"error": {"code", "message", "status", "details"}}`; 429 `RESOURCE_EXHAUSTED`
waits as its `RetryInfo` says."""

from __future__ import annotations

import base64
import binascii
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
    ProviderRetryableError,
    ProviderTimeoutError,
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
    json_body,
    parse_retry_after,
)

NAME = "google"
ASPECTS = {
    "1024x1024": "1:1",
    "896x1280": "3:4",
    "1280x896": "4:3",
    "768x1408": "9:16",
    "1408x768": "16:9",
    "1280x720": "16:9",
    "720x1280": "9:16",
    "1920x1080": "16:9",
}
RETRYABLE = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "INTERNAL", "ABORTED", "UNKNOWN"})
AUTH = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
REFUSED = "The provider refused the request under its content policy."


def _retry_delay(details: Any) -> float | None:
    """`RetryInfo.retryDelay` ("30s", "1.5s") from an error's details."""
    for item in details if isinstance(details, list) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            return parse_retry_after(str(item.get("retryDelay", "")).removesuffix("s"))
    return None


def _key_invalid(details: Any) -> bool:
    return any(
        isinstance(item, dict) and item.get("reason") == "API_KEY_INVALID"
        for item in (details if isinstance(details, list) else [])
    )


def status_error(error: dict[str, Any], http_status: int = 0) -> ProviderError:
    """The ProviderError a google.rpc.Status means."""
    status, details = str(error.get("status") or ""), error.get("details")
    message = f"google answered {error.get('code') or http_status} {status}: {error.get('message')}"
    if status in AUTH or _key_invalid(details) or http_status in (401, 403):
        return ProviderAuthError(message)
    if status == "DEADLINE_EXCEEDED" or http_status == 504:
        return ProviderTimeoutError(message)
    if status in RETRYABLE or http_status == 429 or http_status >= 500:
        return ProviderRetryableError(message, retry_after=_retry_delay(details))
    return ProviderInvalidRequestError(message)


def google_error(response: httpx.Response) -> ProviderError:
    error = json_body(response).get("error")
    error = error if isinstance(error, dict) else {}
    if response.status_code == 429 and error.get("status") is None:
        error = {**error, "status": "RESOURCE_EXHAUSTED"}
    found = status_error(error, response.status_code)
    if found.retry_after is None and (after := response.headers.get("retry-after")):
        found.retry_after = parse_retry_after(after)
    return found


def _image_part(request: GenerationRequest, name: str) -> dict[str, str] | None:
    file = request.files.get(name)
    if file is None:
        return None
    return {
        "bytesBase64Encoded": base64.b64encode(file.data).decode(),
        "mimeType": file.content_type,
    }


class GoogleProvider(HTTPProvider):
    name = NAME

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key}

    def error_from(self, response: httpx.Response) -> ProviderError:
        return google_error(response)

    def makers(self) -> Makers:
        return {"image": self._imagen, "video": self._veo}

    async def _imagen(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        p = request.params
        parameters: dict[str, Any] = {
            "sampleCount": p["n"],
            "aspectRatio": ASPECTS.get(str(p["size"]), "1:1"),
            "includeRaiReason": True,
        }
        if p.get("seed") is not None:
            parameters["seed"] = p["seed"]
            parameters["addWatermark"] = False  # Imagen takes a seed only without its watermark
        await hooks.progress(5)
        body = await self._call(
            "POST",
            f"/models/{request.model}:predict",
            json={"instances": [{"prompt": p["prompt"]}], "parameters": parameters},
        )
        predictions = [x for x in body.get("predictions") or [] if isinstance(x, dict)]
        images = [x for x in predictions if x.get("bytesBase64Encoded")]
        if not images:
            if any(x.get("raiFilteredReason") for x in predictions) or not predictions:
                # Google answers an empty list when every image was filtered and no reason asked.
                raise ContentPolicyError("google filtered every image", public=REFUSED)
            raise ProviderRetryableError("google answered no images")
        await hooks.progress(80)
        for image in images:
            try:
                data = base64.b64decode(str(image["bytesBase64Encoded"]), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ProviderRetryableError("google answered an image that is not base64") from exc
            content_type = sniff_content_type(data[:16]) or str(
                image.get("mimeType") or "image/png"
            )
            yield GeneratedMedia(content_type, extension_for(content_type), iter_chunks(data))

    async def _veo(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        name = request.task_id
        if name is None:
            p = request.params
            instance: dict[str, Any] = {"prompt": p["prompt"]}
            if (image := _image_part(request, "input_reference")) is not None:
                instance["image"] = image
            width, _, height = str(p["size"]).partition("x")
            parameters: dict[str, Any] = {
                "aspectRatio": ASPECTS.get(str(p["size"]), "16:9"),
                "durationSeconds": p["seconds"],
                "resolution": f"{min(int(width), int(height))}p",
            }
            if p.get("seed") is not None:
                parameters["seed"] = p["seed"]
            started = await self._call(
                "POST",
                f"/models/{request.model}:predictLongRunning",
                json={"instances": [instance], "parameters": parameters},
            )
            name = str(started.get("name") or "")
            if not name:
                raise ProviderRetryableError("google accepted the video but named no operation")
            await hooks.task_started(name)
        schedule = PollSchedule(self._config.poll_initial_seconds, self._config.poll_max_seconds)
        percent = 10
        while True:
            operation = await self._call("GET", f"/{name}")
            if operation.get("done"):
                break
            await hooks.progress(percent)
            percent = min(90, percent + 10)
            await schedule.wait()
        await hooks.task_started(None)  # done: nothing left upstream to resume or cancel
        if isinstance(operation.get("error"), dict):
            raise status_error(operation["error"])
        answer = (operation.get("response") or {}).get("generateVideoResponse") or {}
        samples = [s for s in answer.get("generatedSamples") or [] if isinstance(s, dict)]
        uris = [str((s.get("video") or {}).get("uri")) for s in samples if s.get("video")]
        if not uris:
            if answer.get("raiMediaFilteredReasons") or answer.get("raiMediaFilteredCount"):
                raise ContentPolicyError("google filtered the video (not charged)", public=REFUSED)
            raise ProviderRetryableError("google finished the video with no sample")
        await hooks.progress(95)
        for uri in uris:
            # The key to Google's link alone, never to the signed storage it redirects to.
            yield await download(
                self._client, NAME, uri, fallback_type="video/mp4", first_hop_headers=self._auth
            )

    async def cancel(self, task_id: str) -> None:
        return None  # the Gemini API offers no cancel for a Veo operation
