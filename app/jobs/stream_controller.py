"""GET /v1/jobs/{id}/events: a job's events as Server-Sent Events, resumable with Last-Event-ID.

History comes from the job's Redis stream; live events from the process's shared EventHub. A
stream is one small ASGI app (`JobStream`), not a task group per client: it waits on one future
that the hub resolves, sends each event as bytes rendered once per process (`JobEvent.frames`),
and lets the hub's single ticker ask it to ping. What it keeps per stream is one coroutine, one
task waiting for the client to go away, and one timer for the lifetime cap. sse-starlette gives
the frame format (`ServerSentEvent`) and the signal that uvicorn is shutting down (`AppStatus`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, cast

import orjson
from litestar import Request, get
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, Parameter
from litestar.types import ASGIApp, Receive, Scope, Send
from sse_starlette import ServerSentEvent
from sse_starlette.sse import AppStatus

from app.http.dependencies import admit, bearer_token, event_hub, provide_key
from app.http.render import base_url
from app.jobs import service as job_service
from app.jobs.links import verify_stream
from app.jobs.snapshot import is_terminal, job_snapshot
from app.media.service import with_signed_links
from app.platform.errors import AuthenticationError, InvalidRequestError, NotFoundError
from app.platform.events import Closed, EventBus, EventHub, JobEvent, Subscription
from app.platform.limits import Hold, Holds
from app.platform.metrics import SSE_STREAMS
from app.platform.resources import Resources
from app.platform.settings import Settings
from app.platform.tables import VirtualKey
from app.platform.vocabulary import TERMINAL_EVENTS, ErrorCode

MAX_EVENT_ID = 2**63
"""Event ids are a job's Redis stream ids (64-bit); a resume point past them is a client's bug."""
SEND_TIMEOUT_SECONDS = 30.0
"""A client that takes longer than this to accept one frame is cut off (its stream resumes)."""
PING = ServerSentEvent(comment="ping").encode()
RETRY_MS = 1000
RETRY = f"retry: {RETRY_MS}\r\n".encode()
"""Sent with the first event, as a field of its frame: how soon a browser's EventSource
reconnects by itself when the connection drops (it then sends Last-Event-ID, and the stream
resumes right after that event). Not a frame of its own: a client such as httpx-sse delivers a
lone `retry:` as an event with empty data, which a client parsing every event's JSON chokes on."""
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"connection", b"keep-alive"),
    (b"x-accel-buffering", b"no"),  # nginx: do not buffer the stream
]


def server_should_exit() -> bool:
    """Whether uvicorn is shutting down: sse-starlette hooks uvicorn's exit handler and sets its
    AppStatus flag; the hub's ticker reads it and ends every stream cleanly."""
    return bool(AppStatus.should_exit)


def frame(event: JobEvent, base: str, settings: Settings, until: int | None = None) -> bytes:
    """The event as SSE bytes with links under `base`; rendered once per process and base (and,
    for streams read through a signed link, per the link's expiry `until`, which none of its
    links outlives)."""
    cache_key = base if until is None else f"{base}#{until}"
    cached = event.frames.get(cache_key)
    if cached is None:
        data = orjson.dumps(with_signed_links(base, settings, event.data, until)).decode()
        cached = ServerSentEvent(data=data, event=event.event, id=str(event.id)).encode()
        event.frames[cache_key] = cached
    return cached


class JobStream:
    """One client's stream: history after `after`, then live events, until the terminal one,
    the lifetime cap, the client leaving, or the server shutting down (the body then ends
    cleanly, and the client resumes elsewhere with Last-Event-ID). A batch's stream is one too:
    its id is the batch's, its events its jobs' endings, and `batch.completed` its terminal one."""

    def __init__(
        self,
        hub: EventHub,
        bus: EventBus,
        job_id: str,
        after: int,
        ending: tuple[str, dict[str, Any]] | None,
        base: str,
        settings: Settings,
        hold: Hold,
        terminal: frozenset[str] = TERMINAL_EVENTS,
        until: int | None = None,
    ) -> None:
        self.hold = hold
        """The key's hold on one of its streams, given back when the stream ends."""
        self.hub = hub
        self.bus = bus
        self.job_id = job_id
        self.last = after
        self.ending = ending
        """The terminal event as the database tells it, if it has ended (sent when the Redis
        stream no longer has it)."""
        self.base = base
        self.settings = settings
        self.terminal = terminal
        self.until = until
        """The signed link's expiry when the stream was opened through one."""
        self.hinted = False
        """Whether the retry hint went (with the first event)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.hold, SSE_STREAMS.track_inprogress():
            await self._stream(receive, send)

    async def _delivered_already(self) -> bool:
        """A reconnect after the last event of a stream that has ended: nothing more will come."""
        if self.ending is None or self.last <= 0:
            return False
        last = await self.bus.last_id(self.job_id)
        return last is not None and self.last >= last

    async def _stream(self, receive: Receive, send: Send) -> None:
        if await self._delivered_already():
            # 204 tells an EventSource (which reconnects by itself after any stream ends) to stop.
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        # The headers go at once (a client sees its stream open) and the retry hint with the
        # first event.
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        loop = asyncio.get_running_loop()
        # Subscribe before reading history so nothing published in between is missed.
        async with self.hub.subscribe(self.job_id) as sub:
            gone = asyncio.ensure_future(_until_disconnect(receive, sub))
            cap = loop.call_later(self.settings.sse_max_seconds, sub.close, Closed.EXPIRED)
            try:
                await self._follow(sub, send)
            except (TimeoutError, OSError):
                return  # a client too slow to take a frame, or a broken connection
            finally:
                cap.cancel()
                gone.cancel()
            if sub.closed is not Closed.DISCONNECTED:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send(self, send: Send, body: bytes) -> None:
        async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
            await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _emit(self, send: Send, events: list[JobEvent]) -> bool:
        """Send the events that follow the last one sent; True once the terminal one went."""
        for event in events:
            if event.id <= self.last:
                continue
            self.last = event.id
            body = frame(event, self.base, self.settings, self.until)
            if not self.hinted:
                self.hinted, body = True, RETRY + body
            await self._send(send, body)
            if event.event in self.terminal:
                return True
        return False

    async def _catch_up(self, send: Send) -> bool:
        return await self._emit(send, await self.bus.history(self.job_id, self.last))

    async def _follow(self, sub: Subscription, send: Send) -> None:
        if await self._catch_up(send):
            return
        if self.ending is not None:
            # The stream expired or Redis lost it; the database still knows how it ended.
            event, data = self.ending
            await self._emit(send, [JobEvent(self.last + 1, event, self.job_id, data)])
            return
        while True:
            live = await sub.next()
            if sub.closed is not None:
                return
            if sub.resync:
                sub.resync = False
                if await self._catch_up(send):
                    return
            if live and live[0].id > self.last + 1:
                live = await self.bus.history(self.job_id, self.last)  # a gap: read it back
            if await self._emit(send, live):
                return
            if sub.ping:
                sub.ping = False
                await self._send(send, PING)


async def _until_disconnect(receive: Receive, sub: Subscription) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    sub.close(Closed.DISCONNECTED)


def resume_point(last_event_id: str | None, after: int | None) -> int:
    raw = last_event_id if last_event_id not in (None, "") else after
    if raw is None:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequestError(
            "Last-Event-ID must be an event id (an integer).", param="Last-Event-ID"
        ) from None
    if not 0 <= value < MAX_EVENT_ID:
        param = "Last-Event-ID" if last_event_id not in (None, "") else "after"
        raise InvalidRequestError(f"{param} must be between 0 and {MAX_EVENT_ID - 1}.", param=param)
    return value


_LINK_EXPIRY = "mediagate.stream_link_expiry"
"""Where a request opened through a signed stream link keeps the link's expiry (ASGI scope)."""


def link_expiry(request: Request[Any, Any, Any]) -> int | None:
    """The expiry of the signed link the request came through; None: it came with a key."""
    value: int | None = cast(dict[str, Any], request.scope).get(_LINK_EXPIRY)
    return value


async def provide_stream_key(
    request: Request[Any, Any, Any],
    resources: Resources,
    exp: Annotated[str | None, Parameter(description="a signed link's expiry")] = None,
    sig: Annotated[str | None, Parameter(description="a signed link's signature")] = None,
) -> VirtualKey:
    """The caller's key from its Authorization header, or, for a signed stream link (`exp` and
    `sig`: the job's `urls.stream`, which needs no header), the job's own key, if it may still
    be used. A tampered or expired link, or one whose key was revoked or deleted, opens nothing."""
    if sig is None or bearer_token(request.headers) is not None:
        return await provide_key(request, resources)
    job_id = request.path_params["job_id"]
    settings = resources.settings
    if not verify_stream(settings.signing_secret, job_id, exp, sig, time.time()):
        raise AuthenticationError(
            "This stream link is not valid (altered, or expired): get the job again for a fresh "
            "urls.stream.",
            code=ErrorCode.INVALID_STREAM_LINK,
        )
    cast(dict[str, Any], request.scope)[_LINK_EXPIRY] = int(str(exp))
    key = await job_service.owner(resources, job_id)
    if key is None:
        raise NotFoundError(f"No job found with id {job_id!r}.", param="job_id")
    if key.revoked_at is not None or key.deleted_at is not None:
        raise AuthenticationError(
            "The API key this link was made for has been revoked.",
            code=ErrorCode.INVALID_STREAM_LINK,
        )
    await admit(request.scope, resources, key)
    return key


@get(
    "/v1/jobs/{job_id:str}/events",
    tags=["jobs"],
    summary="Stream a job's events (SSE)",
    description=(
        "With the key's Authorization header, or with no header at all through the job's "
        "signed `urls.stream` link (`exp`, `sig`), as `new EventSource(job.urls.stream)` opens "
        "it. Reconnecting with Last-Event-ID resumes right after that event; once the job's "
        "last event was delivered, a reconnect gets 204 (EventSource then stops)."
    ),
    media_type="text/event-stream",
    dependencies={"key": Provide(provide_stream_key)},
    responses={
        200: ResponseSpec(
            data_container=str,
            media_type="text/event-stream",
            description="`id:` per-job sequence, `event:` job.*, `data:` the job object",
            generate_examples=False,
        ),
        204: ResponseSpec(
            data_container=None,
            description="The job has ended and its last event was delivered already",
            generate_examples=False,
        ),
    },
)
async def job_events(
    request: Request[Any, Any, Any],
    job_id: str,
    key: VirtualKey,
    resources: Resources,
    after: int | None = None,
    last_event_id: Annotated[
        str | None, HeaderParameter(name="Last-Event-ID", required=False)
    ] = None,
) -> ASGIApp:
    start = resume_point(last_event_id, after)
    until = link_expiry(request)
    # A stream through a signed link takes a slot of the key's link streams, not of its own.
    streams: Holds = request.app.state.link_streams if until else request.app.state.streams
    # Refused (429) before anything else once the key is at its cap.
    hold = streams.take(key.id, key.max_streams)
    try:
        view = await job_service.read(resources, key.id, job_id)
    except BaseException:
        hold.release()
        raise
    settings = resources.settings
    snapshot = job_snapshot(view.job, view.outputs)
    status = snapshot["status"]
    return JobStream(
        event_hub(request),
        resources.bus,
        view.job.id,
        start,
        (f"job.{status}", snapshot) if is_terminal(status) else None,
        base_url(request, settings),
        settings,
        hold,
        until=until,
    )
