"""What every HTTP provider shares: its configuration, sending a request with transport errors
translated into the ProviderError tree, mapping HTTP statuses, polling with backoff, and streaming
an output file down from the upstream before its URL expires."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from providers.base import (
    GeneratedMedia,
    GenerationRequest,
    ProviderAuthError,
    ProviderError,
    ProviderInvalidRequestError,
    ProviderRetryableError,
    ProviderTimeoutError,
    RunHooks,
    extension_for,
    sniffed,
)

DOWNLOAD_CHUNK = 256 * 1024

Makers = Mapping[str, Callable[[GenerationRequest, RunHooks], AsyncIterator[GeneratedMedia]]]
"""A provider's media types and, for each, the method that makes it."""


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One provider's account and manners. `base_url` is overridable so tests use an emulator."""

    api_key: str
    base_url: str
    poll_initial_seconds: float = 2.0
    poll_max_seconds: float = 30.0

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


class PollSchedule:
    """Waits between status polls: starting at `initial`, growing by half each time to `maximum`."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._next = initial
        self._maximum = maximum

    async def wait(self) -> None:
        await asyncio.sleep(self._next)
        self._next = min(self._maximum, self._next * 1.5)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or an empty dict when it is not one."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def error_for_status(provider: str, response: httpx.Response, detail: str) -> ProviderError:
    """The ProviderError an HTTP error status means; `detail` is the upstream's own message."""
    status = response.status_code
    message = (
        f"{provider} answered {status}: {detail}" if detail else f"{provider} answered {status}"
    )
    if status in (401, 403):
        return ProviderAuthError(message)
    if status == 429:
        return ProviderRetryableError(
            message, retry_after=parse_retry_after(response.headers.get("retry-after"))
        )
    if status in (408, 504):
        return ProviderTimeoutError(message)
    if status >= 500:
        return ProviderRetryableError(
            message, retry_after=parse_retry_after(response.headers.get("retry-after"))
        )
    return ProviderInvalidRequestError(message)


async def send(
    client: httpx.AsyncClient,
    provider: str,
    method: str,
    url: str,
    *,
    stream: bool = False,
    follow_redirects: bool = False,
    **kwargs: Any,
) -> httpx.Response:
    """One request, with transport failures translated (retryable: the request may be repeated)."""
    request = client.build_request(method, url, **kwargs)
    try:
        return await client.send(request, stream=stream, follow_redirects=follow_redirects)
    except httpx.TimeoutException as exc:
        raise ProviderTimeoutError(f"{provider} did not answer in time") from exc
    except httpx.HTTPError as exc:
        raise ProviderRetryableError(
            f"{provider} could not be reached ({type(exc).__name__})"
        ) from exc


async def _read_stream(provider: str, response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
            yield chunk
    except httpx.HTTPError as exc:
        raise ProviderRetryableError(f"{provider}: the download broke off") from exc
    finally:
        await response.aclose()


async def stream_media(
    provider: str, response: httpx.Response, fallback_type: str
) -> GeneratedMedia:
    """Wrap a streaming response as an output. The content type comes from the first bytes when
    they say, else the header, else `fallback_type`: providers do not always label files."""
    declared = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if declared in ("", "application/octet-stream", "binary/octet-stream"):
        declared = fallback_type
    media = GeneratedMedia(declared, extension_for(declared), _read_stream(provider, response))
    return await sniffed(media)


async def download(
    client: httpx.AsyncClient,
    provider: str,
    url: str,
    *,
    fallback_type: str,
    headers: Mapping[str, str] | None = None,
    first_hop_headers: Mapping[str, str] | None = None,
) -> GeneratedMedia:
    """Stream an output file down from the provider (its URLs expire, ours must not).
    `first_hop_headers` (a key) go to `url` alone; a redirect from it is followed without them,
    since it leads to someone else's storage."""
    if first_hop_headers:
        first = await send(client, provider, "GET", url, stream=True, headers=first_hop_headers)
        if first.is_redirect:
            await first.aclose()
            url = str(first.url.join(first.headers.get("location", "")))
        else:
            return await _checked(provider, first, fallback_type)
    response = await send(
        client, provider, "GET", url, stream=True, follow_redirects=True, headers=headers
    )
    return await _checked(provider, response, fallback_type)


async def _checked(provider: str, response: httpx.Response, fallback_type: str) -> GeneratedMedia:
    if response.status_code >= 400:
        await response.aread()
        await response.aclose()
        # An expired or not-yet-ready link: a later attempt asks the provider for a fresh one.
        raise ProviderRetryableError(
            f"{provider}: downloading an output failed with {response.status_code}",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    return await stream_media(provider, response, fallback_type)


class HTTPProvider:
    """The part every HTTP provider shares: its client and account, and one JSON call with errors
    translated. Subclasses say how their API reports errors (`error_from`, `check`)."""

    name = "upstream"

    def __init__(self, client: httpx.AsyncClient, config: UpstreamConfig) -> None:
        self._client = client
        self._config = config
        self._auth = self.auth_headers(config.api_key)

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """How this API takes its key (a bearer token unless it says otherwise)."""
        return {"Authorization": f"Bearer {api_key}"}

    def error_from(self, response: httpx.Response) -> ProviderError:
        """The error an HTTP error status means for this API."""
        return error_for_status(self.name, response, "")

    def check(self, body: dict[str, Any]) -> None:
        """Raise the error a successful (2xx) answer may still report."""

    def makers(self) -> Makers:
        """What this API makes, by media type: the method that makes it."""
        return {}

    async def generate(
        self, request: GenerationRequest, hooks: RunHooks
    ) -> AsyncIterator[GeneratedMedia]:
        make = self.makers().get(request.type)
        if make is None:
            raise ProviderInvalidRequestError(f"{self.name} cannot make {request.type}")
        async for media in make(request, hooks):
            yield media

    async def _send(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request to this API with its key (and `headers`), errors not yet looked at."""
        return await send(
            self._client,
            self.name,
            method,
            url,
            headers={**self._auth, **(headers or {})},
            **kwargs,
        )

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._send(method, self._config.url(path), **kwargs)
        if response.status_code >= 400:
            raise self.error_from(response)
        body = json_body(response)
        self.check(body)
        return body

    async def aclose(self) -> None:
        return None  # the shared client is closed by its owner
