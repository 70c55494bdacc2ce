"""fal's queue (`queue.fal.run`): a request submitted per job to `POST /{owner}/{app}[/{path}]`,
then followed at the status, result and cancel URLs fal answers with (they hold the owner and
app only, not the path, so they are kept as the job's task rather than rebuilt).

The status stream (`{status_url}/stream`, Server-Sent Events) tells each change as it happens;
when it breaks off, a status poll is the source of truth and the stream is opened again.
`X-Fal-Queue-Priority` carries the job's priority (fal has `normal` and `low`) and
`X-Fal-Request-Timeout` the job's remaining time, so fal does not start work we would throw
away. A model's refusal is a 422 whose detail has type `content_policy_violation` (not retried);
images fal's safety checker blacked out (`has_nsfw_concepts`) are dropped, and all of them
dropped is a refusal. Outputs live on fal's CDN for fal's chosen time, so they are copied at
once; our key goes to fal's queue host only, never to the CDN."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from httpx_sse import SSEError, aconnect_sse

from providers.base import (
    ContentPolicyError,
    GeneratedMedia,
    GenerationRequest,
    ProviderAuthError,
    ProviderError,
    ProviderQuotaError,
    ProviderRejectedError,
    ProviderRetryableError,
    ProviderTimeoutError,
    RunHooks,
)
from providers.upstream import (
    HTTPProvider,
    PollSchedule,
    UpstreamConfig,
    download,
    error_for_status,
    json_body,
)

NAME = "fal"
FALLBACK_TYPES = {"image": "image/png", "video": "video/mp4", "speech": "audio/wav"}
QUEUE_PRIORITY = {"low": "low"}
"""Our priorities as fal's: `low` is fal's low; `high` and `normal` are its normal."""
REFUSED = "The provider refused the request under its content policy."
TASK_FIELDS = ("status_url", "response_url", "cancel_url")


def _details(body: dict[str, Any]) -> list[dict[str, Any]]:
    detail = body.get("detail")
    if isinstance(detail, list):
        return [item for item in detail if isinstance(item, dict)]
    return []


def _detail_text(body: dict[str, Any]) -> str:
    """The upstream's own words, for the worker log only (they may quote the prompt back: the
    `input` of each detail is left out)."""
    detail = body.get("detail")
    if isinstance(detail, str):
        return detail[:300]
    parts = [
        f"{item.get('type')} at {'.'.join(str(p) for p in item.get('loc') or [])}: "
        f"{str(item.get('msg') or '')[:120]}"
        for item in _details(body)
    ]
    return "; ".join(parts)[:300]


def fal_error(response: httpx.Response) -> ProviderError:
    """The ProviderError a fal answer means: model errors as `{"detail": [{loc, msg, type}]}`,
    platform errors as `{"detail": "..."}`, and `X-Fal-Retryable` (or the older
    `X-Fal-Needs-Retry`) saying whether a 5xx is worth another try."""
    body = json_body(response)
    status = response.status_code
    text = _detail_text(body)
    message = f"fal answered {status}: {text}" if text else f"fal answered {status}"
    types = {str(item.get("type")) for item in _details(body)}
    if "content_policy_violation" in types:
        return ContentPolicyError(message, public=REFUSED)
    if status == 403 and "balance" in text.lower():
        # "User is locked. Reason: Exhausted balance": the account, not the key.
        return ProviderQuotaError(message)
    if status in (401, 403):
        return ProviderAuthError(message)
    if status == 504 and response.headers.get("x-fal-request-timeout-type") == "user":
        return ProviderTimeoutError(f"fal did not start the request before our deadline: {text}")
    retryable = (
        response.headers.get("x-fal-retryable") or response.headers.get("x-fal-needs-retry") or ""
    ).lower()
    if status >= 500 and retryable == "false":
        return ProviderRejectedError(message)
    return error_for_status(NAME, response, text)


def image_size(size: str) -> dict[str, int]:
    width, _, height = size.partition("x")
    return {"width": int(width), "height": int(height)}


def aspect(size: str) -> str:
    width, _, height = size.partition("x")
    return "9:16" if int(height) > int(width) else ("1:1" if width == height else "16:9")


def arguments(request: GenerationRequest) -> dict[str, Any]:
    """Our parameters in the names fal's media models share (FLUX, Kling, Hailuo, Kokoro)."""
    p = request.params
    fields: dict[str, Any]
    if request.type == "image":
        fields = {
            "prompt": p["prompt"],
            "num_images": p["n"],
            "image_size": image_size(str(p["size"])),
            "output_format": "png",
            "enable_safety_checker": True,
        }
    elif request.type == "video":
        fields = {
            "prompt": p["prompt"],
            "duration": str(p["seconds"]),
            "aspect_ratio": aspect(str(p["size"])),
        }
    else:
        fields = {"prompt": p["input"], "voice": p["voice"]}
        if p.get("speed") is not None:
            fields["speed"] = p["speed"]
    if p.get("seed") is not None:
        fields["seed"] = p["seed"]
    return fields


def output_urls(request: GenerationRequest, result: dict[str, Any]) -> list[str]:
    """The files a result names: `images[]` (less those the safety checker flagged), or the one
    `video`, `audio` or `audio_file`."""
    if request.type == "image":
        images = [i for i in result.get("images") or [] if isinstance(i, dict) and i.get("url")]
        flagged = result.get("has_nsfw_concepts")
        flags = flagged if isinstance(flagged, list) else []
        kept = [str(i["url"]) for n, i in enumerate(images) if not (n < len(flags) and flags[n])]
        if images and not kept:
            raise ContentPolicyError("fal's safety checker flagged every image", public=REFUSED)
        return kept
    keys = ("video",) if request.type == "video" else ("audio", "audio_file", "audio_url")
    for key in keys:
        found = result.get(key)
        if isinstance(found, dict) and found.get("url"):
            return [str(found["url"])]
        if isinstance(found, str) and found.startswith("http"):
            return [found]
    return []


class FalProvider(HTTPProvider):
    name = NAME

    def __init__(self, client: httpx.AsyncClient, config: UpstreamConfig) -> None:
        super().__init__(client, config)
        self._origin = httpx.URL(config.base_url).copy_with(path="/", query=None)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Key {api_key}"}

    def error_from(self, response: httpx.Response) -> ProviderError:
        return fal_error(response)

    def _ours(self, url: str) -> str:
        """A URL fal answered with, if it is on fal's queue host: the key goes nowhere else."""
        parsed = httpx.URL(url)
        if (parsed.scheme, parsed.netloc) != (self._origin.scheme, self._origin.netloc):
            raise ProviderRetryableError(f"fal answered a request URL off its queue host: {url}")
        return url

    async def _submit(self, request: GenerationRequest) -> dict[str, str]:
        headers = {"X-Fal-Queue-Priority": QUEUE_PRIORITY.get(request.priority, "normal")}
        if request.deadline_seconds is not None:
            # fal's start deadline: past it, fal drops the request instead of starting it late.
            headers["X-Fal-Request-Timeout"] = str(max(1, int(request.deadline_seconds)))
        response = await self._send(
            "POST", self._config.url(f"/{request.model}"), headers=headers, json=arguments(request)
        )
        if response.status_code >= 400:
            raise self.error_from(response)
        body = json_body(response)
        task = {key: str(body.get(key) or "") for key in TASK_FIELDS}
        if not all(task.values()):
            raise ProviderRetryableError("fal accepted the request but gave no status URLs")
        return {key: self._ours(url) for key, url in task.items()}

    async def _follow(self, task: dict[str, str], hooks: RunHooks) -> None:
        """Until fal says COMPLETED: a status poll, then the stream of changes; a broken stream
        is followed by a poll after the usual wait, and opened again."""
        schedule = PollSchedule(self._config.poll_initial_seconds, self._config.poll_max_seconds)
        while True:
            response = await self._send("GET", task["status_url"])
            if response.status_code == 404:
                await hooks.task_started(None)  # expired or never made: a retry submits anew
                raise ProviderRetryableError("fal does not know the request")
            if response.status_code >= 400:
                raise self.error_from(response)
            if await self._progressed(json_body(response), hooks):
                return
            if await self._stream(task, hooks):
                return
            await schedule.wait()

    async def _result(self, task: dict[str, str], hooks: RunHooks) -> dict[str, Any]:
        """The completed request's answer. An error fal wrote there (a model's failure or
        refusal, `detail` in its body) ends the request upstream, so the task is forgotten and a
        retry submits anew (fal does not bill a 5xx); a 429, a bare gateway error or a transport
        failure keeps it, to fetch the result again. So does success, until the outputs are
        stored."""
        response = await self._send("GET", task["response_url"])
        if response.status_code >= 400:
            error = self.error_from(response)
            if not error.retryable or (
                response.status_code != 429 and "detail" in json_body(response)
            ):
                await hooks.task_started(None)
            raise error
        return json_body(response)

    async def _progressed(self, status: dict[str, Any], hooks: RunHooks) -> bool:
        """Report a status; True once it is COMPLETED."""
        state = status.get("status")
        if state == "COMPLETED":
            return True
        if state == "IN_PROGRESS":
            await hooks.progress(30)
        else:
            position = status.get("queue_position")
            await hooks.progress(5 if isinstance(position, int) and position > 0 else 10)
        return False

    async def _stream(self, task: dict[str, str], hooks: RunHooks) -> bool:
        """Follow the status stream; True once it told COMPLETED, False when it ended or broke
        before (the caller polls)."""
        url = task["status_url"].rstrip("/") + "/stream"
        with contextlib.suppress(httpx.HTTPError, SSEError):
            async with aconnect_sse(self._client, "GET", url, headers=self._auth) as source:
                if source.response.status_code != 200:
                    return False
                async for event in source.aiter_sse():
                    try:
                        status = orjson.loads(event.data)
                    except orjson.JSONDecodeError:
                        continue
                    if isinstance(status, dict) and await self._progressed(status, hooks):
                        return True
        return False

    async def generate(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        task = _task(request.task_id)
        if task is None:
            task = await self._submit(request)
            await hooks.task_started(orjson.dumps(task).decode())
        await self._follow(task, hooks)
        urls = output_urls(request, await self._result(task, hooks))
        if not urls:
            raise ProviderRetryableError("fal completed the request with no output file")
        await hooks.progress(90)
        for url in urls:
            # fal's CDN files are public: fetched without our key.
            yield await download(
                self._client, NAME, url, fallback_type=FALLBACK_TYPES[request.type]
            )
        # Every output is stored: nothing is left upstream. Until then a retry (a download that
        # broke off) fetches the same result again instead of paying for a second request.
        await hooks.task_started(None)

    async def cancel(self, task_id: str) -> None:
        task = _task(task_id)
        if task is None:
            return
        response = await self._send("PUT", task["cancel_url"])
        # 202 CANCELLATION_REQUESTED; 400 ALREADY_COMPLETED and 404 NOT_FOUND leave nothing to stop.
        if response.status_code >= 400 and response.status_code not in (400, 404):
            raise self.error_from(response)


def _task(task_id: str | None) -> dict[str, str] | None:
    """The status, result and cancel URLs an earlier attempt recorded."""
    if not task_id:
        return None
    try:
        task = orjson.loads(task_id)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(task, dict) or not all(isinstance(task.get(k), str) for k in TASK_FIELDS):
        return None
    return {key: str(task[key]) for key in TASK_FIELDS}
