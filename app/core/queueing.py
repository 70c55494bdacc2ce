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

from datetime import UTC, datetime, timedelta

from arq.connections import ArqRedis

from app.core.contract import GENERATE_TASK

PRIORITIES = ("high", "normal", "low")
HEAD_START = {"high": timedelta(minutes=10), "normal": timedelta(minutes=5), "low": timedelta()}
FAIR_WINDOW = timedelta(minutes=10)
FAIR_STEP = timedelta(seconds=5)
# arq keeps a job's data until its score plus a day; scores in the past shorten that, so say it.
JOB_EXPIRES = timedelta(days=7)


def queue_time(priority: str, queued_ahead: int, now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    penalty = min(FAIR_WINDOW, FAIR_STEP * max(0, queued_ahead))
    return now - FAIR_WINDOW - HEAD_START.get(priority, HEAD_START["normal"]) + penalty


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


async def queue_length(redis: ArqRedis, queue: str) -> int:
    """Jobs waiting in arq's queue (due now, deferred, or running)."""
    return int(await redis.zcard(queue))
