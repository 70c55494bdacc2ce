"""The database is the outbox: a job row is committed before its arq job is enqueued, so Redis may
lose an arq job (a restart without persistence, a flush, an enqueue that failed after the commit)
but never the job. `recover_jobs` finds unfinished jobs that Redis no longer knows and queues
them again; workers run it on start and every few seconds. Running jobs are left alone while
their worker's heartbeat is fresh, so a live worker never has its job run twice."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import col, or_, select

from app.jobs import service as job_service
from app.jobs.queue import enqueue_generation
from app.platform.arq_seam import job_key
from app.platform.resources import Resources
from app.platform.tables import Job, utcnow
from app.platform.vocabulary import JobStatus

log = logging.getLogger("mediagate.outbox")

BATCH = 500


@dataclass(frozen=True, slots=True)
class Recovery:
    queued: int
    """Queued jobs whose arq job was missing, enqueued again."""
    running: int
    """Running jobs whose worker stopped (no heartbeat) and whose arq job was missing."""


async def _missing_in_redis(res: Resources, job_ids: list[str]) -> set[str]:
    async with res.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.exists(job_key(job_id))
        found = await pipe.execute()
    return {job_id for job_id, exists in zip(job_ids, found, strict=True) if not exists}


async def recover_jobs(res: Resources) -> Recovery:
    """Queue again every unfinished job that Redis lost; returns how many of each."""
    now = utcnow()
    committed_before = now - timedelta(seconds=res.settings.outbox_grace_seconds)
    silent_since = now - timedelta(seconds=res.settings.job_lease_seconds)
    async with res.sessionmaker() as session:
        rows = (
            await session.exec(
                select(Job.id, Job.status, Job.priority)
                .where(
                    col(Job.deleted_at).is_(None),
                    or_(
                        (col(Job.status) == JobStatus.QUEUED)
                        & (col(Job.created_at) < committed_before),
                        (col(Job.status) == JobStatus.RUNNING)
                        & (col(Job.heartbeat_at).is_(None) | (col(Job.heartbeat_at) < silent_since))
                        & (col(Job.created_at) < committed_before),
                    ),
                )
                .order_by(col(Job.created_at))
                .limit(BATCH)
            )
        ).all()
    if not rows:
        return Recovery(0, 0)
    found = {job_id: (status, priority) for job_id, status, priority in rows}
    missing = await _missing_in_redis(res, list(found))
    counts = {"queued": 0, "running": 0}
    for job_id in sorted(missing):
        status, priority = found[job_id]
        # arq refuses a job id it already holds, so a race with another worker's run is harmless.
        if await enqueue_generation(res.redis, job_id, priority, queued_ahead=0):
            counts[status] += 1
            log.warning("job.requeued job_id=%s status=%s", job_id, status)
    return Recovery(counts["queued"], counts["running"])


async def cancel_late_jobs(res: Resources) -> int:
    """End queued jobs whose deadline passed while every worker was busy (a worker would end
    each one as it picked it up; this does not wait for that)."""
    async with res.sessionmaker() as session:
        late_ids = (
            await session.exec(
                select(Job.id)
                .where(
                    col(Job.status) == JobStatus.QUEUED,
                    col(Job.deadline_at).is_not(None),
                    col(Job.deadline_at) <= utcnow(),
                )
                .limit(BATCH)
            )
        ).all()
    canceled = 0
    for job_id in late_ids:
        if await job_service.cancel_if_late(res, job_id) is not None:
            canceled += 1
    return canceled
