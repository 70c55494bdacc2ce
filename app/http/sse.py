"""Server-Sent Events for a stream of events kept in Redis (a job's, or a batch's): history after
the resume point, then live events from the process's shared EventHub, until the terminal one.
A stream is one small ASGI app (`EventStream`), not a task group per client: it waits on one
future that the hub resolves, sends each event as bytes its owner renders (once per process,
`JobEvent.frames`), and lets the hub's single ticker ask it to ping. What it keeps per stream is
one coroutine, one task waiting for the client to go away, and one timer for the lifetime cap.
sse-starlette gives the frame format (`ServerSentEvent`) and the signal that uvicorn is shutting
down (`AppStatus`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from litestar.types import Receive, Scope, Send
from sse_starlette import ServerSentEvent
from sse_starlette.sse import AppStatus

from app.platform.errors import InvalidRequestError
from app.platform.events import Closed, EventBus, EventHub, JobEvent, Subscription
from app.platform.limits import Hold
from app.platform.metrics import SSE_STREAMS
from app.platform.vocabulary import TERMINAL_EVENTS

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


class EventStream:
    """One client's stream: history after `after`, then live events, until the terminal one,
    the lifetime cap, the client leaving, or the server shutting down (the body then ends
    cleanly, and the client resumes elsewhere with Last-Event-ID). A batch's stream is one too:
    its id is the batch's, its events its jobs' endings, and `batch.completed` its terminal one."""

    def __init__(
        self,
        hub: EventHub,
        bus: EventBus,
        stream_id: str,
        after: int,
        ending: tuple[str, dict[str, Any]] | None,
        render: Callable[[JobEvent], bytes],
        max_seconds: float,
        hold: Hold,
        terminal: frozenset[str] = TERMINAL_EVENTS,
    ) -> None:
        self.hold = hold
        """The key's hold on one of its streams, given back when the stream ends."""
        self.hub = hub
        self.bus = bus
        self.stream_id = stream_id
        self.last = after
        self.ending = ending
        """The terminal event as the database tells it, if it has ended (sent when the Redis
        stream no longer has it)."""
        self.render = render
        """An event as its SSE frame (`ServerSentEvent`), as the stream's owner shows it."""
        self.max_seconds = max_seconds
        self.terminal = terminal
        self.hinted = False
        """Whether the retry hint went (with the first event)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with self.hold, SSE_STREAMS.track_inprogress():
            await self._stream(receive, send)

    async def _delivered_already(self) -> bool:
        """A reconnect after the last event of a stream that has ended: nothing more will come."""
        if self.ending is None or self.last <= 0:
            return False
        last = await self.bus.last_id(self.stream_id)
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
        async with self.hub.subscribe(self.stream_id) as sub:
            gone = asyncio.ensure_future(_until_disconnect(receive, sub))
            cap = loop.call_later(self.max_seconds, sub.close, Closed.EXPIRED)
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
            body = self.render(event)
            if not self.hinted:
                self.hinted, body = True, RETRY + body
            await self._send(send, body)
            if event.event in self.terminal:
                return True
        return False

    async def _catch_up(self, send: Send) -> bool:
        return await self._emit(send, await self.bus.history(self.stream_id, self.last))

    async def _follow(self, sub: Subscription, send: Send) -> None:
        if await self._catch_up(send):
            return
        if self.ending is not None:
            # The stream expired or Redis lost it; the database still knows how it ended.
            event, data = self.ending
            await self._emit(send, [JobEvent(self.last + 1, event, self.stream_id, data)])
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
                live = await self.bus.history(self.stream_id, self.last)  # a gap: read it back
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
