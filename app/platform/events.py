"""Job progress events over Redis: one stream per job (history, resume) and one pub/sub channel
that a single hub per API process reads and fans out in memory, so Redis connections do not grow
with the number of SSE clients.

Every event has an id that increases by one per job; after a terminal event nothing more is
accepted for that job (a late progress report from a canceled job's worker is dropped), and once
an attempt has published, nothing from an earlier attempt is (a worker that was partitioned past
its lease cannot make progress jump back after the takeover).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from app.platform.lua import Lua, Part
from app.platform.redis_keys import events_channel, events_meta_key, events_stream_key
from app.platform.vocabulary import TERMINAL_EVENTS, EventType

log = logging.getLogger("mediagate.events")

EVENT_NAMES = tuple(EventType)
STREAM_MAXLEN = 1000

# Atomic: the fence (terminal marker, attempt), sequence number, append, expiry and fan-out
# notice in one step. `$attempt` is the publishing attempt; 0 for events not from an attempt.
# A refused event returns at once: an epilogue (a domain's part, after this) runs only for an
# accepted one, and may read `seq` and this part's names.
_PUBLISH = Lua(
    """
if redis.call('HGET', $meta, 'terminal') then
  return false
end
local attempt = tonumber($attempt)
if attempt > 0 then
  local current = tonumber(redis.call('HGET', $meta, 'attempt') or '0')
  if attempt < current then
    return false
  end
  if attempt > current then
    redis.call('HSET', $meta, 'attempt', attempt)
  end
end
local seq = redis.call('HINCRBY', $meta, 'seq', 1)
redis.call('XADD', $stream, 'MAXLEN', '~', $maxlen, seq .. '-0', 'event', $event, 'data', $data)
if $terminal == '1' then
  redis.call('HSET', $meta, 'terminal', $event)
end
redis.call('EXPIRE', $stream, $ttl)
redis.call('EXPIRE', $meta, $ttl)
redis.call('PUBLISH', $channel, $job_id .. '\\n' .. seq .. '\\n' .. $event .. '\\n' .. $data)
""",
    keys=("stream", "meta"),
    args=("event", "data", "terminal", "ttl", "channel", "maxlen", "job_id", "attempt"),
)
_RETURN = Lua("return seq\n")


@dataclass(frozen=True, slots=True)
class JobEvent:
    id: int
    event: str
    stream_id: str
    """The id of the stream the event is in: its job's, or a domain's stream of jobs' events."""
    data: dict[str, Any]
    """The job object at that moment (outputs without URLs; the API adds fresh ones)."""
    frames: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)
    """The event as SSE bytes, per base URL of its links: rendered by the first stream that sends
    it, reused by every other stream of the process."""

    @property
    def terminal(self) -> bool:
        return self.event in TERMINAL_EVENTS


class EventBus:
    """Publishes and reads back job events; shared by the API and the workers."""

    def __init__(self, redis: Redis, namespace: str, *, ttl_seconds: int = 86_400) -> None:
        self._redis = redis
        self._ns = namespace
        self._ttl = ttl_seconds
        self._scripts: dict[tuple[Lua | None, Lua | None], tuple[Lua, AsyncScript]] = {}
        """Each combination of parts, composed and registered once."""

    @property
    def namespace(self) -> str:
        return self._ns

    @property
    def ttl_seconds(self) -> int:
        return self._ttl

    @property
    def channel(self) -> str:
        return events_channel(self._ns)

    async def publish(
        self,
        job_id: str,
        event: str,
        data: dict[str, Any],
        *,
        attempt: int = 0,
        prelude: Part | None = None,
        epilogue: Part | None = None,
    ) -> int | None:
        """Append an event; returns its id, or None when it was refused: the job already had its
        terminal event, or `attempt` (a worker's) is older than one that has published.
        `prelude` runs first, whether or not the event is accepted (it must not `return`);
        `epilogue` runs once it is: each a domain's part of the same atomic script (one round
        trip), with its own named keys and arguments (`app.platform.lua`)."""
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown event {event!r}")
        given: dict[str, Any] = {
            "stream": events_stream_key(self._ns, job_id),
            "meta": events_meta_key(self._ns, job_id),
            "event": event,
            "data": orjson.dumps(data),
            "terminal": "1" if event in TERMINAL_EVENTS else "0",
            "ttl": self._ttl,
            "channel": self.channel,
            "maxlen": STREAM_MAXLEN,
            "job_id": job_id,
            "attempt": attempt,
        }
        if prelude is not None:
            given.update(prelude[1])
        if epilogue is not None:
            given.update(epilogue[1])
        parts = (None if prelude is None else prelude[0], None if epilogue is None else epilogue[0])
        found = self._scripts.get(parts)
        if found is None:
            script = _PUBLISH + _RETURN if epilogue is None else _PUBLISH + epilogue[0] + _RETURN
            if prelude is not None:
                script = prelude[0] + script
            found = self._scripts[parts] = (script, self._redis.register_script(script.text))
        script, registered = found
        keys, args = script.values(given)
        seq = await registered(keys=keys, args=args)
        return None if seq is None else int(seq)

    async def reopen(self, job_id: str) -> None:
        """A job that ended runs again (the operator retried it): its stream takes events again,
        numbered on from the last (a follower resuming with Last-Event-ID misses nothing)."""
        deleted = self._redis.hdel(events_meta_key(self._ns, job_id), "terminal")
        await cast(Awaitable[int], deleted)

    async def last_id(self, stream_id: str) -> int | None:
        """The id of the stream's newest event (a job's, or a stream of jobs' events); None
        when Redis holds no stream for it (expired or lost)."""
        meta = events_meta_key(self._ns, stream_id)
        seq = await cast(Awaitable[Any], self._redis.hget(meta, "seq"))
        return None if seq is None else int(seq)

    async def history(self, stream_id: str, after: int = 0) -> list[JobEvent]:
        entries = await self._redis.xrange(
            events_stream_key(self._ns, stream_id), min=f"{after + 1}-0", max="+"
        )
        return [_from_entry(stream_id, entry_id, fields) for entry_id, fields in entries]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _from_entry(stream_id: str, entry_id: bytes | str, fields: dict[Any, Any]) -> JobEvent:
    seq = int(_text(entry_id).split("-", 1)[0])
    event = _text(fields.get(b"event", fields.get("event", b"")))
    data = orjson.loads(fields.get(b"data", fields.get("data", b"{}")))
    return JobEvent(seq, event, stream_id, data)


def parse_notice(raw: bytes | str) -> JobEvent:
    stream_id, seq, event, data = _text(raw).split("\n", 3)
    return JobEvent(int(seq), event, stream_id, orjson.loads(data))


def notice_stream(raw: bytes) -> str:
    """The stream (a job's, or a stream of jobs' events) a notice is about, read without parsing
    the rest (most notices a process reads are for streams nobody follows there)."""
    return raw[: raw.index(b"\n")].decode()


Listener = Callable[[bytes | None], None]


class Closed(StrEnum):
    DISCONNECTED = "disconnected"
    EXPIRED = "expired"
    SHUTDOWN = "shutdown"


class Subscription:
    """One follower of one job: events the hub pushed since the follower last looked, and flags
    for what else it must do. The follower waits on one future; nothing here wakes on a timer."""

    __slots__ = ("_waiter", "closed", "pending", "ping", "resync")

    MAX_PENDING = 1000

    def __init__(self) -> None:
        self.pending: list[JobEvent] = []
        self.resync = False
        """Set when the hub may have missed notices; the follower re-reads the stream."""
        self.ping = False
        self.closed: Closed | None = None
        self._waiter: asyncio.Future[None] | None = None

    def push(self, event: JobEvent) -> None:
        if len(self.pending) >= self.MAX_PENDING:
            self.pending.clear()
            self.resync = True  # a slow client: it catches up from the stream
        else:
            self.pending.append(event)
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self, why: Closed) -> None:
        if self.closed is None:
            self.closed = why
        self.wake()

    async def next(self, within: float | None = None) -> list[JobEvent]:
        """The pushed events (maybe none: woken for a flag, or `within` seconds ran out)."""
        if not self.pending and self.closed is None and not self.resync and not self.ping:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                if within is None:
                    await self._waiter
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._waiter, within)
            finally:
                self._waiter = None
        events, self.pending = self.pending, []
        return events


class EventHub:
    """One pub/sub reader per process, fanning notices out to in-memory subscriptions; and one
    ticker that asks every follower to ping its client, and closes them all once `should_exit`
    says the server is shutting down."""

    TICK_SECONDS = 0.5

    def __init__(
        self,
        redis: Redis,
        bus: EventBus,
        *,
        ping_seconds: float = 15.0,
        should_exit: Callable[[], bool] = lambda: False,
        listeners: Mapping[str, Listener] | None = None,
    ) -> None:
        self._redis = redis
        self._bus = bus
        self._ping_seconds = ping_seconds
        self._should_exit = should_exit
        self._listeners = dict(listeners or {})
        """Other channels read on the same connection: channel -> what a message there (or
        None, after a reconnect that may have missed some) is handed to."""
        self._subs: dict[str, set[Subscription]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="mediagate-event-hub"),
            asyncio.create_task(self._tick(), name="mediagate-event-ticker"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.close_all(Closed.SHUTDOWN)

    def close_all(self, why: Closed) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close(why)

    @contextlib.asynccontextmanager
    async def subscribe(self, stream_id: str) -> AsyncIterator[Subscription]:
        sub = Subscription()
        self._subs.setdefault(stream_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(stream_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[stream_id]

    def dispatch(self, raw: bytes) -> None:
        subs = self._subs.get(notice_stream(raw))
        if not subs:
            return
        event = parse_notice(raw)  # parsed once, shared by every follower
        for sub in subs:
            sub.push(event)

    def _resync_all(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.resync = True
                sub.wake()

    def _ping_all(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.ping = True
                sub.wake()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self._ping_seconds
        while True:
            await asyncio.sleep(self.TICK_SECONDS)
            if self._should_exit():
                self.close_all(Closed.SHUTDOWN)
            if self._ping_seconds > 0 and loop.time() >= next_ping:
                next_ping = loop.time() + self._ping_seconds
                self._ping_all()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._bus.channel, *self._listeners)
                self._resync_all()
                for listener in self._listeners.values():
                    listener(None)
                self.connected.set()
                backoff = 0.1
                events = self._bus.channel.encode()
                others = {name.encode(): fn for name, fn in self._listeners.items()}
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None or message.get("type") != "message":
                        continue
                    channel = message["channel"]
                    if channel != events:
                        others[channel](message["data"])
                        continue
                    try:
                        self.dispatch(message["data"])
                    except (ValueError, orjson.JSONDecodeError):
                        log.warning("events.bad_notice")
            except Exception as exc:  # RedisError, OSError, or anything else: keep the hub alive
                self.connected.clear()
                for listener in self._listeners.values():
                    listener(None)
                log.warning("events.hub_disconnected error=%s", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
