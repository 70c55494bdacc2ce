"""Every part of arq we rely on beyond its documented API, in this one module, each with a test
of the behaviour we count on (tests/integration/test_arq_seam.py), so an arq upgrade that
changes one breaks here, loudly:

- the names of a job's keys in Redis (its data, its result, its in-progress lock);
- the wire format of a job's data (`serialize_job`), which our enqueue script writes itself;
- aborting a job by id (`Job` with `_queue_name`);
- the worker's polling loop (`Worker._poll_iteration`), which we keep alive through a Redis
  outage, and its bookkeeping at a job's end (`Worker.finish_job`), skipped for a job another
  worker took over."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import Job as ArqJob
from arq.jobs import serialize_job
from arq.worker import Worker
from redis.exceptions import RedisError

log = logging.getLogger("mediagate.worker")

SUPERSEDED_JOBS = "superseded_jobs"
"""The worker context's set of job ids whose attempt here was superseded."""


def job_key(job_id: str) -> str:
    """Where arq keeps a queued job's data."""
    return job_key_prefix + job_id


def result_key(job_id: str) -> str:
    """Where arq keeps a job's result (a job with one is not queued again)."""
    return result_key_prefix + job_id


def in_progress_key(job_id: str) -> str:
    """arq's lock on a job a worker is running."""
    return in_progress_key_prefix + job_id


def job_data(
    function: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    enqueue_ms: int,
    serializer: Callable[[dict[str, Any]], bytes],
) -> bytes:
    """A job's data as arq's `enqueue_job` writes it (first try, no result yet)."""
    return serialize_job(function, args, kwargs, None, enqueue_ms, serializer=serializer)


async def abort(
    redis: ArqRedis, queue: str, job_id: str, deserializer: Callable[[bytes], dict[str, Any]]
) -> bool:
    """Ask arq to abort the job: a queued one is skipped, a running one cancelled. True if that
    happened at once; False: it happens on the worker's next poll."""
    job = ArqJob(job_id, redis, _queue_name=queue, _deserializer=deserializer)
    try:
        return await job.abort(timeout=0.05, poll_delay=0.05)
    except TimeoutError:
        return False


class ResilientWorker(Worker):
    """arq's worker, with three changes. arq ends its run on the first Redis error of its polling
    loop; ours waits for Redis to come back (running jobs carry on meanwhile) and polls again.
    arq's in-progress lock lasts the longest job timeout (an hour): a worker killed between
    taking a job and our task's lease would hold it that long. Ours lasts one lease from the
    start; every task renews it while it runs (`workers.lease`). And a job whose attempt here was
    superseded (another worker took it over past our lease; the task adds its id to the
    context's SUPERSEDED_JOBS) is left as it is in Redis: arq would delete the lock and the
    queued job that the other worker holds."""

    def __init__(self, *args: Any, lease_seconds: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_progress_timeout_s = lease_seconds

    async def finish_job(self, job_id: str, *args: Any, **kwargs: Any) -> None:
        superseded: set[str] = self.ctx.get(SUPERSEDED_JOBS, set())
        if job_id in superseded:
            superseded.discard(job_id)
            return
        await super().finish_job(job_id, *args, **kwargs)

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        # Any Redis error: a connection lost mid-transaction surfaces as a WatchError, too.
        except (RedisError, ConnectionError, TimeoutError) as exc:
            log.warning("worker.redis_unavailable error=%s", type(exc).__name__)
            await asyncio.sleep(1.0)
