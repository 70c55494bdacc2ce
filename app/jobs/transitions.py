"""Worker-side job transitions, fenced by attempt: `start_attempt` counts a new attempt under the
row lock, and every later write of that attempt is conditional, in the same statement, on the job
still running *that* attempt. A job canceled by its owner is never flipped back, and an attempt
that another worker took over (its worker was partitioned or paused past its lease) changes
nothing: its writes match no row, and the attempt stops."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.media import usage
from app.platform.tables import Job, MediaObject, VirtualKey, utcnow
from app.platform.vocabulary import TERMINAL_STATUSES, ErrorCode, JobStatus
from providers.registry import ModelSpec


async def start_attempt(session: AsyncSession, job_id: str) -> Job | None:
    """Mark the job running and count the attempt; None if it is gone or already terminal."""
    job = (await session.exec(select(Job).where(Job.id == job_id).with_for_update())).first()
    if job is None or job.status in TERMINAL_STATUSES:
        return None
    job.status = JobStatus.RUNNING
    job.attempts += 1
    job.tries += 1
    job.heartbeat_at = utcnow()
    if job.started_at is None:
        job.started_at = job.heartbeat_at
    session.add(job)
    await session.flush()
    return job


async def cancel_if_late(session: AsyncSession, job_id: str) -> Job | None:
    """End a job that was not started before its deadline (it never reaches a provider); the
    canceled job, or None if it is not late (or not queued)."""
    now = utcnow()
    result = await session.exec(
        update(Job)
        .where(
            col(Job.id) == job_id,
            col(Job.status) == JobStatus.QUEUED,
            col(Job.deadline_at).is_not(None),
            col(Job.deadline_at) <= now,
        )
        .values(
            status=JobStatus.CANCELED,
            finished_at=now,
            error_code=ErrorCode.DEADLINE_EXCEEDED,
            error_message="The job was not started before its deadline.",
        )
    )
    if not result.rowcount:
        return None
    return await session.get(Job, job_id, populate_existing=True)


def _mine(job_id: str, attempt: int) -> tuple[Any, ...]:
    """The fence: the job runs, and runs this attempt."""
    return (
        col(Job.id) == job_id,
        col(Job.status) == JobStatus.RUNNING,
        col(Job.attempts) == attempt,
    )


async def hold(session: AsyncSession, job_id: str, attempt: int) -> bool:
    """Renew the attempt's heartbeat; False if the job no longer runs this attempt. Inside a
    transaction it is also the attempt's lock on the row (until commit), so whatever the caller
    records next cannot interleave with a takeover (`start_attempt` locks the same row)."""
    result = await session.exec(
        update(Job).where(*_mine(job_id, attempt)).values(heartbeat_at=utcnow())
    )
    return bool(result.rowcount)


async def set_progress(session: AsyncSession, job_id: str, attempt: int, progress: int) -> bool:
    """Raise the job's progress; False if the job no longer runs this attempt."""
    result = await session.exec(
        update(Job)
        .where(*_mine(job_id, attempt))
        .values(progress=case((col(Job.progress) < progress, progress), else_=col(Job.progress)))
    )
    return bool(result.rowcount)


async def set_task(session: AsyncSession, job_id: str, attempt: int, task_id: str | None) -> bool:
    """Remember (or forget) the job's upstream task; False if the job no longer runs this
    attempt."""
    result = await session.exec(
        update(Job).where(*_mine(job_id, attempt)).values(provider_task_id=task_id)
    )
    return bool(result.rowcount)


async def fall_back(
    session: AsyncSession,
    job_id: str,
    attempt: int,
    index: int,
    target: ModelSpec,
    job_input: dict[str, Any],
) -> bool:
    """Move a running job to its fallback target `index`: its own input, a fresh count of tries,
    no upstream task."""
    result = await session.exec(
        update(Job)
        .where(*_mine(job_id, attempt))
        .values(
            target_index=index,
            provider=target.provider,
            provider_model=target.provider_model,
            provider_task_id=None,
            tries=0,
            input=job_input,
        )
    )
    return bool(result.rowcount)


async def finish(
    session: AsyncSession,
    job_id: str,
    attempt: int,
    status: str,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
) -> bool:
    """Move the attempt's job to a terminal status; False if it no longer runs this attempt."""
    values: dict[str, object] = {"status": status, "finished_at": utcnow()}
    if status == JobStatus.SUCCEEDED:
        values["progress"] = 100
    if error_code is not None:
        values.update(error_code=error_code, error_message=(error_message or "")[:2000])
    result = await session.exec(update(Job).where(*_mine(job_id, attempt)).values(**values))
    return bool(result.rowcount)


async def over_quota(
    session: AsyncSession, key: VirtualKey, job_id: str, variant: str, index: int, size: int
) -> bool:
    """Would recording this output take the key over its storage quota? `key` is the row the
    caller locked (`keys.lock_key`), so concurrent jobs of one key decide one after another."""
    if key.max_bytes is None and key.max_objects is None:
        return False
    used_bytes, used_objects = await usage.totals(session, key.id)
    replaced = (
        await session.exec(
            select(MediaObject).where(
                MediaObject.job_id == job_id,
                MediaObject.variant == variant,
                MediaObject.index == index,
                col(MediaObject.deleted_at).is_(None),
            )
        )
    ).first()
    after_bytes = used_bytes + size - (replaced.bytes if replaced else 0)
    after_objects = used_objects + (0 if replaced else 1)
    return (key.max_bytes is not None and after_bytes > key.max_bytes) or (
        key.max_objects is not None and after_objects > key.max_objects
    )
