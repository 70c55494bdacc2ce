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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from app.platform.redis_keys import events_channel, events_meta_key, events_stream_key
from app.platform.vocabulary import TERMINAL_EVENTS, BatchEvent, EventType

log = logging.getLogger("mediagate.events")

EVENT_NAMES = tuple(EventType)
STREAM_MAXLEN = 1000
BATCH_STREAM_MAXLEN = 2 * 1000 + 10
"""A batch's stream holds an ending per job (up to 1,000, twice for jobs an operator retried)."""

# Atomic: the fence (terminal marker, attempt), sequence number, append, expiry and fan-out
# notice in one step. ARGV[8] is the publishing attempt; 0 for events not from an attempt.
# A job of a batch (ARGV[9], its id; KEYS[3] and KEYS[4] the batch's stream and meta) appends its
# terminal event to the batch's stream too, numbered there, exactly once (the job's terminal
# marker fences it); the batch's last job appends `batch.completed` (ARGV[11]) after it.
_PUBLISH_LUA = """
if redis.call('HGET', KEYS[2], 'terminal') then
  return false
end
local attempt = tonumber(ARGV[8])
if attempt > 0 then
  local current = tonumber(redis.call('HGET', KEYS[2], 'attempt') or '0')
  if attempt < current then
    return false
  end
  if attempt > current then
    redis.call('HSET', KEYS[2], 'attempt', attempt)
  end
end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], seq .. '-0', 'event', ARGV[1], 'data', ARGV[2])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[2], 'terminal', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[7] .. '\\n' .. seq .. '\\n' .. ARGV[1] .. '\\n' .. ARGV[2])
if ARGV[3] == '1' and ARGV[9] ~= '' and not redis.call('HGET', KEYS[4], 'terminal') then
  local bseq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[10], bseq .. '-0',
             'event', ARGV[1], 'data', ARGV[2])
  redis.call('PUBLISH', ARGV[5], ARGV[9] .. '\\n' .. bseq .. '\\n' .. ARGV[1] .. '\\n' .. ARGV[2])
  local ended = redis.call('HINCRBY', KEYS[4], 'ended', 1)
  local total = tonumber(redis.call('HGET', KEYS[4], 'total') or '0')
  if total > 0 and ended >= total then
    bseq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
    local done = '{"id":"' .. ARGV[9] .. '"}'
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[10], bseq .. '-0',
               'event', ARGV[11], 'data', done)
    redis.call('HSET', KEYS[4], 'terminal', ARGV[11])
    redis.call('PUBLISH', ARGV[5], ARGV[9] .. '\\n' .. bseq .. '\\n' .. ARGV[11] .. '\\n' .. done)
  end
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  redis.call('EXPIRE', KEYS[4], ARGV[4])
end
return seq
"""


@dataclass(frozen=True, slots=True)
class JobEvent:
    id: int
    event: str
    job_id: str
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
        self._publish = redis.register_script(_PUBLISH_LUA)
        # The batch keys of an event that is not a batch job's ending (the script ignores them).
        self._no_batch = [events_stream_key(namespace, "-"), events_meta_key(namespace, "-")]
        self._preluded: dict[str, AsyncScript] = {}

    @property
    def channel(self) -> str:
        return events_channel(self._ns)

    async def publish(
        self, job_id: str, event: str, data: dict[str, Any], *, attempt: int = 0
    ) -> int | None:
        """Append an event; returns its id, or None when it was refused: the job already had its
        terminal event, or `attempt` (a worker's) is older than one that has published."""
        keys, args = self._publish_args(job_id, event, data, attempt)
        seq = await self._publish(keys=keys, args=args)
        return None if seq is None else int(seq)

    async def publish_after(
        self,
        prelude: str,
        keys: Sequence[Any],
        args: Sequence[Any],
        job_id: str,
        event: str,
        data: dict[str, Any],
    ) -> int | None:
        """Run `prelude` (Lua; its own keys and arguments start at KEYS[5] and ARGV[12]) and then
        publish the event, as one atomic script and one round trip. The prelude runs whether or
        not the event is accepted; it must not `return`."""
        script = self._preluded.get(prelude)
        if script is None:
            script = self._preluded[prelude] = self._redis.register_script(
                prelude + "\n" + _PUBLISH_LUA
            )
        own_keys, own_args = self._publish_args(job_id, event, data, 0)
        seq = await script(keys=[*own_keys, *keys], args=[*own_args, *args])
        return None if seq is None else int(seq)

    def _publish_args(
        self, job_id: str, event: str, data: dict[str, Any], attempt: int
    ) -> tuple[list[Any], list[Any]]:
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown event {event!r}")
        terminal = event in TERMINAL_EVENTS
        batch = (data.get("batch_id") or "") if terminal else ""
        keys = [events_stream_key(self._ns, job_id), events_meta_key(self._ns, job_id)]
        if batch:
            keys += [events_stream_key(self._ns, batch), events_meta_key(self._ns, batch)]
        else:
            keys += self._no_batch
        args = [
            event,
            orjson.dumps(data),
            "1" if terminal else "0",
            self._ttl,
            self.channel,
            STREAM_MAXLEN,
            job_id,
            attempt,
            batch,
            BATCH_STREAM_MAXLEN,
            BatchEvent.COMPLETED,
        ]
        return keys, args

    async def open_batch(self, batch_id: str, total: int) -> None:
        """Say how many jobs the batch has, so its last job's end closes its stream (kept if
        already said: a stream that Redis lost is told again when someone follows it)."""
        meta = events_meta_key(self._ns, batch_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(meta, "total", str(total))
            pipe.expire(meta, self._ttl)
            await pipe.execute()

    async def reopen(self, job_id: str) -> None:
        """A job that ended runs again (the operator retried it): its stream takes events again,
        numbered on from the last (a follower resuming with Last-Event-ID misses nothing)."""
        deleted = self._redis.hdel(events_meta_key(self._ns, job_id), "terminal")
        await cast(Awaitable[int], deleted)

    async def last_id(self, job_id: str) -> int | None:
        """The id of the job's newest event; None when Redis holds no stream for it (expired or
        lost)."""
        seq = await cast(Awaitable[Any], self._redis.hget(events_meta_key(self._ns, job_id), "seq"))
        return None if seq is None else int(seq)

    async def history(self, job_id: str, after: int = 0) -> list[JobEvent]:
        entries = await self._redis.xrange(
            events_stream_key(self._ns, job_id), min=f"{after + 1}-0", max="+"
        )
        return [_from_entry(job_id, entry_id, fields) for entry_id, fields in entries]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _from_entry(job_id: str, entry_id: bytes | str, fields: dict[Any, Any]) -> JobEvent:
    seq = int(_text(entry_id).split("-", 1)[0])
    event = _text(fields.get(b"event", fields.get("event", b"")))
    data = orjson.loads(fields.get(b"data", fields.get("data", b"{}")))
    return JobEvent(seq, event, job_id, data)


def parse_notice(raw: bytes | str) -> JobEvent:
    job_id, seq, event, data = _text(raw).split("\n", 3)
    return JobEvent(int(seq), event, job_id, orjson.loads(data))


def notice_job(raw: bytes) -> str:
    """The job a notice is about, read without parsing the rest (most notices a process reads
    are for jobs nobody follows there)."""
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
    async def subscribe(self, job_id: str) -> AsyncIterator[Subscription]:
        sub = Subscription()
        self._subs.setdefault(job_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(job_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[job_id]

    def dispatch(self, raw: bytes) -> None:
        subs = self._subs.get(notice_job(raw))
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
