"""A small client of mediagate's HTTP API, for the command line: submits with an Idempotency-Key
(a retry after a timeout or a dropped connection never creates a second job), reads our JSON
errors, follows a job's SSE stream and picks it up again with Last-Event-ID when the connection
drops, and downloads outputs. It knows the API only as a client does: over HTTP."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import orjson
from httpx_sse import SSEError, connect_sse

from app.platform.vocabulary import TERMINAL_EVENTS
from providers.base import extension_for

TERMINAL = tuple(TERMINAL_EVENTS)
RETRIES = 5
"""Attempts at one request (or at resuming a stream) before giving up."""


JOB_ID = re.compile(r"job_[0-9A-Za-z]{1,64}")
"""What our job ids look like: the only server-supplied text a file name is made of."""
MAX_OUTPUTS = 10_000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: object) -> str:
    """A server's string fit for a terminal: control characters (escape sequences that could
    move the cursor, retitle the window or hide text) removed."""
    return _CONTROL.sub("", str(text))


class ClientError(Exception):
    """What went wrong, in words for a person (the API's own message where it sent one)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    event: str
    job: dict[str, Any]


def _error_of(response: httpx.Response) -> ClientError:
    try:
        error = response.json()["error"]
        message, code = clean(error["message"]), error.get("code")
    except (ValueError, KeyError, TypeError):
        message, code = f"HTTP {response.status_code}", None
    return ClientError(
        message, status=response.status_code, code=None if code is None else clean(code)
    )


class Client:
    def __init__(
        self,
        url: str,
        key: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not key:
            raise ClientError(
                "No API key: pass --key or set MEDIAGATE_API_KEY (create one with "
                "`mediagate keys create --name me`)."
            )
        self.url = url.rstrip("/")
        self._sleep = sleep
        self.reconnects = 0
        """How many times a stream was picked up again after its connection dropped."""
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, retried on a dropped connection, a timeout, a 5xx or a 429 (after its
        Retry-After); any other error answer raises ClientError with the API's message."""
        for attempt in range(RETRIES):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt == RETRIES - 1:
                    raise ClientError(f"Cannot reach {self.url}: {exc}") from None
                self._sleep(min(0.5 * 2**attempt, 5.0))
                continue
            retryable = response.status_code >= 500 or response.status_code == 429
            if retryable and attempt < RETRIES - 1:
                wait = response.headers.get("retry-after")
                self._sleep(min(float(wait) if wait and wait.isdigit() else 2**attempt, 10.0))
                continue
            if response.status_code >= 400:
                raise _error_of(response)
            return response
        raise AssertionError("unreachable")

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/jobs under one Idempotency-Key for every retry: one job, however many tries."""
        headers = {"Idempotency-Key": f"cli-{uuid.uuid4()}"}
        job: dict[str, Any] = self.request("POST", "/v1/jobs", json=body, headers=headers).json()
        return job

    def job(self, job_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.request("GET", f"/v1/jobs/{job_id}").json()
        return found

    def jobs(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        data: list[dict[str, Any]] = self.request("GET", "/v1/jobs", params=params).json()["data"]
        return data

    def cancel(self, job_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.request("POST", f"/v1/jobs/{job_id}/cancel").json()
        return found

    def usage(self) -> dict[str, Any]:
        found: dict[str, Any] = self.request("GET", "/v1/usage").json()
        return found

    def follow(self, job_id: str) -> Iterator[Event]:
        """The job's events until its terminal one. A dropped connection (or a server that went
        away) is picked up again with Last-Event-ID: nothing is missed, nothing comes twice."""
        last = 0
        failures = 0
        while True:
            headers = {"Last-Event-ID": str(last)} if last else {}
            try:
                with connect_sse(
                    self.http,
                    "GET",
                    f"/v1/jobs/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(30.0, read=60.0),
                ) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        raise _error_of(source.response)
                    for sse in source.iter_sse():
                        if not sse.event or not sse.data:
                            continue  # a comment (ping)
                        failures = 0
                        event = Event(int(sse.id), sse.event, orjson.loads(sse.data))
                        if event.id <= last:
                            continue
                        last = event.id
                        yield event
                        if event.event in TERMINAL:
                            return
            except (httpx.TransportError, SSEError):
                pass
            # The stream ended before the job did: the connection dropped, or the server closed
            # it (shutdown, lifetime cap). Pick it up again after the last event seen.
            failures += 1
            if failures > RETRIES:
                raise ClientError(f"Lost the event stream of {job_id} and could not resume it.")
            self.reconnects += 1
            self._sleep(min(0.2 * 2 ** (failures - 1), 5.0))

    def _same_origin(self, url: str) -> bool:
        here, there = urlsplit(self.url), urlsplit(url)
        return (here.scheme, here.hostname, here.port) == (there.scheme, there.hostname, there.port)

    def download(self, job: dict[str, Any], folder: Path) -> list[Path]:
        """Save the job's outputs under `folder` as `<job id>-<index>.<ext>`, the name made only
        of an id of our pattern, an integer and an extension of our own list: a server cannot
        name a file elsewhere (`../`, an absolute path). The key goes only to the configured
        API's origin; an output URL elsewhere (a CDN) is fetched without it."""
        job_id = job.get("id")
        if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
            raise ClientError("The server sent a job id that is not one; nothing was saved.")
        outputs = job.get("outputs") or []
        for output in outputs:
            index = output.get("index") if isinstance(output, dict) else None
            if type(index) is not int or not 0 <= index < MAX_OUTPUTS:
                raise ClientError(
                    "The server sent an output index that is not one; nothing was saved."
                )
            if not isinstance(output.get("url"), str):
                raise ClientError("The server sent an output without a URL; nothing was saved.")
        folder.mkdir(parents=True, exist_ok=True)
        saved = []
        for output in outputs:
            ext = extension_for(str(output.get("content_type", "")))
            path = folder / f"{job_id}-{output['index']}.{ext}"
            url = urljoin(self.url + "/", output["url"])
            if self._same_origin(url):
                stream = self.http.stream("GET", url, follow_redirects=True)
            else:
                stream = httpx.stream("GET", url, follow_redirects=True, timeout=self.http.timeout)
            with stream as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_of(response)
                with path.open("wb") as file:
                    for chunk in response.iter_bytes():
                        file.write(chunk)
            saved.append(path)
        return saved
