"""Replicate: a prediction per job (`POST /models/{owner}/{name}/predictions`, or `/predictions`
with a version for `owner/name:version`), polled through starting/processing to
succeeded/failed/canceled; output files are downloaded at once (Replicate deletes them within the
hour); our cancel reaches the prediction's cancel endpoint."""

from __future__ import annotations

import base64
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx

from providers.base import (
    ContentPolicyError,
    GeneratedMedia,
    GenerationRequest,
    InputFile,
    ProviderError,
    ProviderRejectedError,
    ProviderRetryableError,
    RunHooks,
)
from providers.upstream import (
    HTTPProvider,
    PollSchedule,
    download,
    error_for_status,
    json_body,
)

NAME = "replicate"
PROGRESS = {"starting": 5, "processing": 50}
FALLBACK_TYPES = {"image": "image/png", "video": "video/mp4", "speech": "audio/mpeg"}
# Replicate reports a model's refusal only in the prediction's error text.
POLICY_WORDS = ("nsfw", "safety", "sensitive", "content policy", "flagged")


def replicate_error(response: httpx.Response) -> ProviderError:
    body = json_body(response)
    detail = str(body.get("detail") or body.get("title") or "")
    return error_for_status(NAME, response, detail)


def aspect_ratio(size: str) -> str:
    width, _, height = size.partition("x")
    w, h = int(width), int(height)
    divisor = math.gcd(w, h)
    return f"{w // divisor}:{h // divisor}"


def _data_url(file: InputFile) -> str:
    return f"data:{file.content_type};base64,{base64.b64encode(file.data).decode()}"


def prediction_input(request: GenerationRequest) -> dict[str, Any]:
    """Our parameters in the names most Replicate models use."""
    p = request.params
    fields: dict[str, Any]
    if request.type == "image":
        fields = {
            "prompt": p["prompt"],
            "num_outputs": p["n"],
            "aspect_ratio": aspect_ratio(str(p["size"])),
            "output_format": "png",
        }
        if "image" in request.files:
            fields["image"] = _data_url(request.files["image"])
    elif request.type == "video":
        fields = {"prompt": p["prompt"], "duration": p["seconds"]}
        if "input_reference" in request.files:
            fields["first_frame_image"] = _data_url(request.files["input_reference"])
    else:
        fields = {"text": p["input"], "voice_id": p["voice"]}
    if p.get("seed") is not None:
        fields["seed"] = p["seed"]
    return fields


def _failure(prediction: dict[str, Any]) -> ProviderError:
    text = str(prediction.get("error") or "the prediction failed")
    if any(word in text.lower() for word in POLICY_WORDS):
        return ContentPolicyError(f"replicate refused the request: {text[:300]}")
    return ProviderRetryableError(f"replicate: the prediction failed: {text[:300]}")


def _output_urls(output: Any) -> list[str]:
    if isinstance(output, str):
        return [output]
    if isinstance(output, list):
        return [str(item) for item in output if isinstance(item, str)]
    if isinstance(output, dict):
        return [str(v) for v in output.values() if isinstance(v, str) and v.startswith("http")]
    return []


class ReplicateProvider(HTTPProvider):
    name = NAME

    def error_from(self, response: httpx.Response) -> ProviderError:
        return replicate_error(response)

    async def _create(self, request: GenerationRequest) -> dict[str, Any]:
        model, _, version = request.model.partition(":")
        body: dict[str, Any] = {"input": prediction_input(request)}
        if version:
            body["version"] = version
            return await self._call("POST", "/predictions", json=body)
        return await self._call("POST", f"/models/{model}/predictions", json=body)

    async def generate(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        prediction_id = request.task_id
        if prediction_id is None:
            prediction = await self._create(request)
            prediction_id = str(prediction.get("id") or "")
            if not prediction_id:
                raise ProviderRetryableError("replicate accepted the prediction but gave no id")
            await hooks.task_started(prediction_id)
        else:
            prediction = await self._call("GET", f"/predictions/{prediction_id}")
        schedule = PollSchedule(self._config.poll_initial_seconds, self._config.poll_max_seconds)
        while True:
            status = prediction.get("status")
            if status == "succeeded":
                break
            if status == "failed":
                await hooks.task_started(None)
                raise _failure(prediction)
            if status in ("canceled", "aborted"):
                await hooks.task_started(None)
                raise ProviderRejectedError("replicate: the prediction was canceled upstream")
            await hooks.progress(PROGRESS.get(str(status), 10))
            await schedule.wait()
            prediction = await self._call("GET", f"/predictions/{prediction_id}")
        urls = _output_urls(prediction.get("output"))
        if not urls:
            raise ProviderRetryableError("replicate: the prediction succeeded with no output file")
        await hooks.progress(90)
        for url in urls:
            yield await download(
                self._client, NAME, url, fallback_type=FALLBACK_TYPES[request.type]
            )

    async def cancel(self, task_id: str) -> None:
        await self._call("POST", f"/predictions/{task_id}/cancel")
