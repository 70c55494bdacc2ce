"""Where a job goes in the queue. arq serves the jobs whose score (a time) has come, lowest score
first; we give every job a score in the recent past, so that it is due at once, and place it:

    score = now - FAIR_WINDOW - head_start(priority) + min(FAIR_WINDOW, queued_ahead * FAIR_STEP)

- priority: `high` jobs get a 10-minute head start, `normal` 5 minutes, `low` none. A head start
  is bounded, so a low job is overtaken only by jobs submitted up to 10 minutes after it: it is
  never starved.
- fair share: each job a key already has queued pushes its next one back by FAIR_STEP (up to
  FAIR_WINDOW), so a key that submits 1,000 jobs gets a few served before another key's single
  job, not all of them.

Every score stays at or before now, so an idle pool never waits. Retries (arq's `Retry`) come
back at `now + delay`, behind the fresh jobs of the last few minutes: a short extra backoff.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from arq.connections import ArqRedis

from app.platform.arq_seam import job_data, job_key, result_key
from app.platform.errors import InvalidRequestError
from app.platform.events import EventBus
from app.platform.lua import Lua
from app.platform.tables import VirtualKey
from app.platform.tasks import GENERATE_TASK, serialize
from app.platform.tracing import job_kwargs
from app.platform.vocabulary import ErrorCode, EventType, Priority

PRIORITIES = tuple(Priority)
"""Highest first."""
HEAD_START = {
    Priority.HIGH: timedelta(minutes=10),
    Priority.NORMAL: timedelta(minutes=5),
    Priority.LOW: timedelta(),
}
FAIR_WINDOW = timedelta(minutes=10)
FAIR_STEP = timedelta(seconds=5)
FAIR_COUNT_CAP = int(FAIR_WINDOW / FAIR_STEP)
"""Queued jobs of a key beyond this many no longer move its next job back, so the count stops
there: a submit costs the same with 100 or 100,000 jobs queued."""
# arq keeps a job's data until its score plus a day; scores in the past shorten that, so say it.
JOB_EXPIRES = timedelta(days=7)


def allowed_priority(key: VirtualKey, priority: Priority | str, default_max: Priority) -> Priority:
    """The priority the job gets: at most what an admin allowed the key (else the deployment's
    default), since any tenant choosing `high` would make it mean nothing. Asking above it is a
    400; the default `normal` of a key held to `low` simply runs at `low`."""
    priority = Priority(priority)
    allowed = Priority(key.max_priority or default_max)
    if priority == Priority.NORMAL and allowed == Priority.LOW:
        return Priority.LOW
    if PRIORITIES.index(priority) < PRIORITIES.index(allowed):
        raise InvalidRequestError(
            f"This key may submit jobs at priority '{allowed}' at most; ask an admin to raise "
            "its max_priority.",
            param="priority",
            code=ErrorCode.PRIORITY_NOT_ALLOWED,
        )
    return priority


def queue_time(priority: str, queued_ahead: int, now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    penalty = min(FAIR_WINDOW, FAIR_STEP * max(0, queued_ahead))
    return (
        now
        - FAIR_WINDOW
        - HEAD_START.get(Priority(priority), HEAD_START[Priority.NORMAL])
        + penalty
    )


async def enqueue_generation(
    redis: ArqRedis, job_id: str, priority: str, queued_ahead: int
) -> bool:
    """Hand the (committed) job to arq under its own id; False if arq already holds it."""
    arq_job = await redis.enqueue_job(
        GENERATE_TASK,
        job_id,
        _job_id=job_id,
        _defer_until=queue_time(priority, queued_ahead),
        _expires=JOB_EXPIRES,
    )
    return arq_job is not None


# What arq's `enqueue_job` does (a job that exists or has a result is not queued again; else its
# data with an expiry, and its id in the queue at its score), as a prelude to the `job.queued`
# event: one round trip instead of arq's three (WATCH, EXISTS, MULTI/EXEC) plus the event's.
_ENQUEUE_PRELUDE = Lua(
    """
if redis.call('EXISTS', $arq_job, $arq_result) == 0 then
  redis.call('PSETEX', $arq_job, $expires_ms, $arq_data)
  redis.call('ZADD', $queue, $score, $arq_id)
end
""",
    keys=("arq_job", "arq_result", "queue"),
    args=("arq_data", "expires_ms", "arq_id", "score"),
)


async def enqueue_new(
    redis: ArqRedis,
    bus: EventBus,
    queue: str,
    job_id: str,
    priority: str,
    queued_ahead: int,
    snapshot: dict[str, Any],
) -> None:
    """Queue a new (committed) job for arq as `enqueue_generation` does, and publish its
    `job.queued` event, in one atomic step."""
    now_ms = int(time.time() * 1000)
    score = int(queue_time(priority, queued_ahead).timestamp() * 1000)
    kwargs = job_kwargs()
    data = job_data(GENERATE_TASK, (job_id,), kwargs, now_ms, serialize)
    expires_ms = int(JOB_EXPIRES.total_seconds() * 1000)
    prelude = {
        "arq_job": job_key(job_id),
        "arq_result": result_key(job_id),
        "queue": queue,
        "arq_data": data,
        "expires_ms": expires_ms,
        "arq_id": job_id,
        "score": score,
    }
    await bus.publish(job_id, EventType.QUEUED, snapshot, prelude=(_ENQUEUE_PRELUDE, prelude))


async def queue_length(redis: ArqRedis, queue: str) -> int:
    """Jobs waiting in arq's queue (due now, deferred, or running)."""
    return int(await redis.zcard(queue))


async def place_in_queue(
    redis: ArqRedis, queue: str, job_id: str, throughput: float
) -> dict[str, Any] | None:
    """A queued job's approximate place: how many jobs arq serves before it (those queued ahead
    of it by score, which counts the ones running too), and when it should start at the pool's
    recent throughput (jobs a second; none measured yet: no ETA). None: not in the queue."""
    rank = await redis.zrank(queue, job_id)
    if rank is None:
        return None
    position = int(rank) + 1
    eta = round(position / throughput) if throughput > 0 else None
    return {"position": position, "eta_seconds": eta}
