"""Limits kept in Redis, each one Lua script so that checking and counting are one atomic step
(never check-then-increment): a key's requests per minute (a sliding window), a provider's
concurrency across the whole worker pool (a semaphore whose holders expire unless renewed, so a
dead worker's slot comes back by itself), and failed sign-ins per address (counted before the
token is looked at, given back when it was good)."""

from __future__ import annotations

import hashlib
import secrets
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from app.platform.errors import QuotaExceededError
from app.platform.redis_keys import auth_failures_key, provider_slots_key, rate_limit_key
from app.platform.vocabulary import ErrorCode

# KEYS[1] the key's window; ARGV now_ms, window_ms, limit, member. Returns {wait, remaining,
# reset}: wait is 0 when the request was admitted (and counted), else the milliseconds until the
# oldest request in the window leaves it; remaining, the requests the window still allows; reset,
# the milliseconds until the oldest request counted leaves (one more request is free then).
_SLIDING_WINDOW = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local admitted = count < limit
if admitted then
    redis.call('ZADD', key, now, ARGV[4])
    redis.call('PEXPIRE', key, window)
    count = count + 1
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local reset = math.max(1, tonumber(oldest[2]) + window - now)
if admitted then
    return {0, limit - count, reset}
end
return {reset, 0, reset}
"""

_SLIDING_WINDOW_SHA = hashlib.sha1(_SLIDING_WINDOW.encode()).hexdigest()


async def _run(redis: Redis, script: str, sha: str, key: str, *args: str) -> Any:
    """Run a one-key script by its hash, sending its text only when Redis does not know it yet
    (the first time, or after a restart)."""
    try:
        return await redis.evalsha(sha, 1, key, *args)  # type: ignore[misc]
    except NoScriptError:
        return await redis.eval(script, 1, key, *args)  # type: ignore[misc]


# KEYS[1] the provider's holders; ARGV now_ms, lease_ms, cap, holder. 1 when the holder has (or
# already had) a slot, else 0.
_ACQUIRE = """
local key, now, lease, cap = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZSCORE', key, ARGV[4]) or redis.call('ZCARD', key) < cap then
    redis.call('ZADD', key, now + lease, ARGV[4])
    redis.call('PEXPIRE', key, lease * 2)
    return 1
end
return 0
"""
_ACQUIRE_SHA = hashlib.sha1(_ACQUIRE.encode()).hexdigest()


RATE_LIMIT_HEADERS = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
]
"""OpenAI's names for where a key stands in its requests-per-minute window."""


@dataclass(frozen=True)
class RateWindow:
    """Where a key stands in its requests-per-minute window, as the answer's
    `x-ratelimit-*-requests` headers tell it (OpenAI's names)."""

    limit: int
    remaining: int
    reset_ms: int
    """Until the oldest request counted leaves the window: one more request is free then."""
    refused_ms: int = 0
    """Not 0: the request was refused, and may be tried again after this long."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        seconds = f"{self.reset_ms / 1000:.3f}".rstrip("0").rstrip(".")
        values = (str(self.limit), str(self.remaining), f"{seconds}s")
        return [
            (name.encode(), value.encode())
            for name, value in zip(RATE_LIMIT_HEADERS, values, strict=True)
        ]


async def admit_request(redis: Redis, namespace: str, key_id: str, per_minute: int) -> RateWindow:
    """Count one request of the key (one atomic step) and say where the key stands; a window
    with `refused_ms` was not counted (see `refuse`)."""
    now = int(time.time() * 1000)
    member = f"{now}-{secrets.token_hex(6)}"
    args = (rate_limit_key(namespace, key_id), str(now), "60000", str(per_minute), member)
    # It runs on every request: the script's hash goes, not its text.
    answer = await _run(redis, _SLIDING_WINDOW, _SLIDING_WINDOW_SHA, *args)
    refused_ms, remaining, reset_ms = (int(n) for n in answer)
    return RateWindow(per_minute, remaining, reset_ms, refused_ms)


def refuse(window: RateWindow) -> None:
    """429 `rate_limit_exceeded` (with Retry-After) when the window refused the request."""
    if window.refused_ms > 0:
        seconds = max(1, -(-window.refused_ms // 1000))
        raise QuotaExceededError(
            f"This key is limited to {window.limit} requests per minute. Retry in {seconds} s.",
            code=ErrorCode.RATE_LIMIT_EXCEEDED,
            retry_after=seconds,
        )


async def acquire_slot(
    redis: Redis,
    namespace: str,
    caps: Mapping[str, int],
    provider: str,
    holder: str,
    lease_seconds: int,
) -> bool:
    """Take (or renew) one of the provider's slots for `holder`; True if the provider has no cap."""
    cap = caps.get(provider)
    if cap is None:
        return True
    now = int(time.time() * 1000)
    got = await _run(
        redis,
        _ACQUIRE,
        _ACQUIRE_SHA,
        provider_slots_key(namespace, provider),
        str(now),
        str(lease_seconds * 1000),
        str(cap),
        holder,
    )
    return bool(int(got))


async def release_slot(redis: Redis, namespace: str, provider: str, holder: str) -> None:
    await redis.zrem(provider_slots_key(namespace, provider), holder)


class ServerSlots:
    """The ComfyUI pool's slots per server (`providers.comfyui_pool.Slots`), counted across
    every worker process as the providers' slots are: a server is given no more jobs at once
    than it has slots, and a crashed worker's claim lapses by itself."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self._redis = redis
        self._ns = namespace

    async def acquire(self, server: str, capacity: int, holder: str, ttl: float) -> bool:
        name = f"comfyui:{server}"
        return await acquire_slot(self._redis, self._ns, {name: capacity}, name, holder, int(ttl))

    async def release(self, server: str, holder: str) -> None:
        await release_slot(self._redis, self._ns, f"comfyui:{server}", holder)


class SignIn(StrEnum):
    """Who is being guessed at: each is counted apart, so tenants' failures never lock the
    operator's dashboard sign-in, nor the other way round."""

    TENANT = "tenant"
    ADMIN = "admin"
    DASHBOARD = "dashboard"


# KEYS[1] the address's counter this minute. Counts the attempt and returns the count, in one
# step (with the counter's expiry): concurrent guesses cannot all pass one check.
_ATTEMPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], 120) end
return count
"""
_ATTEMPT_SHA = hashlib.sha1(_ATTEMPT.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Attempt:
    """One sign-in attempt, counted as a failure until `succeeded()` gives it back (to the same
    minute's counter it was counted in)."""

    redis: Redis
    counter: str

    async def succeeded(self) -> None:
        await self.redis.decr(self.counter)


async def attempt(
    redis: Redis,
    namespace: str,
    scope: SignIn,
    address: str,
    limit: int | None,
    what: str = "authentications",
) -> Attempt | None:
    """Count one attempt of `address` to sign in as `scope` this minute (a fixed window), or
    refuse it (429, the token not even looked at) when the address is past `limit` failed ones.
    None: no limit, nothing counted."""
    if limit is None:
        return None
    counter = auth_failures_key(namespace, f"{scope}:{address}", int(time.time() // 60))
    count = await _run(redis, _ATTEMPT, _ATTEMPT_SHA, counter)
    if int(count) > limit:
        raise QuotaExceededError(
            f"Too many failed {what} from this address (limit {limit} a minute). Retry in a "
            "minute.",
            code=ErrorCode.TOO_MANY_FAILED_AUTHENTICATIONS,
            retry_after=60,
        )
    return Attempt(redis, counter)


class Holds:
    """How many of one kind of long-held thing (open event streams, requests waiting for their
    job) each key holds in this process, with a cap per key: past it, 429 at once. A hold is
    released exactly once, by `release()` or, should its holder be dropped without that, when
    the hold is garbage-collected."""

    def __init__(self, cap: int | None, what: str, code: ErrorCode) -> None:
        self.cap = cap
        self.what = what
        self.code = code
        self.held: dict[str, int] = {}

    def take(self, key_id: str, cap: int | None = None) -> Hold:
        """One more hold of the key's, under `cap` (the key's own) or else the default cap."""
        count = self.held.get(key_id, 0)
        limit = cap if cap is not None else self.cap
        if limit is not None and count >= limit:
            raise QuotaExceededError(
                f"This key already has {count} {self.what} open here, its limit is {limit}. "
                "Close one, or retry shortly.",
                code=self.code,
                retry_after=5,
            )
        self.held[key_id] = count + 1
        return Hold(self, key_id)

    def _release(self, key_id: str) -> None:
        count = self.held.get(key_id, 0) - 1
        if count > 0:
            self.held[key_id] = count
        else:
            self.held.pop(key_id, None)


class Hold:
    __slots__ = ("__weakref__", "_finalizer")

    def __init__(self, holds: Holds, key_id: str) -> None:
        self._finalizer = weakref.finalize(self, holds._release, key_id)

    def release(self) -> None:
        self._finalizer()

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
