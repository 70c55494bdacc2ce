"""Every change of a job's state goes through this package: a new job (`add_queued`, or
`one_statement.insert_queued`), its attempts, progress and end, a cancel by its owner or its
key's deletion, a late job's end, and its deletion. `one_statement` holds the same transitions
as single PostgreSQL statements for the hot paths (each keeping its twin's guarantees).

Workers' transitions are fenced by attempt: `start_attempt` counts a new attempt under the
row lock, and every later write of that attempt is conditional, in the same statement, on the job
still running *that* attempt. A job canceled by its owner is never flipped back, and an attempt
that another worker took over (its worker was partitioned or paused past its lease) changes
nothing: its writes match no row, and the attempt stops."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Update, case
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.keys import spend
from app.platform.tables import Job, utcnow
from app.platform.vocabulary import ACTIVE_STATUSES, TERMINAL_STATUSES, ErrorCode, JobStatus
from providers.registry import ModelSpec


async def add_queued(session: AsyncSession, job: Job) -> Job:
    """A new job, queued (the caller commits, then enqueues it)."""
    session.add(job)
    await session.flush()
    return job


async def cancel(session: AsyncSession, job_id: str) -> bool:
    """The owner cancels: a queued or running job ends `canceled` (its worker's fenced writes
    then match nothing). False if the job had already ended."""
    now = utcnow()
    result = await session.exec(
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status).in_(ACTIVE_STATUSES))
        .values(status=JobStatus.CANCELED, finished_at=now, cancel_requested_at=now)
    )
    return bool(result.rowcount)


async def cancel_all_of_key(session: AsyncSession, key_id: str) -> None:
    """The key is being deleted: every unfinished job of it ends `canceled`."""
    now = utcnow()
    await session.exec(
        update(Job)
        .where(col(Job.key_id) == key_id, col(Job.status).in_(ACTIVE_STATUSES))
        .values(status=JobStatus.CANCELED, finished_at=now, cancel_requested_at=now)
    )


async def requeue(session: AsyncSession, job_id: str) -> bool:
    """The operator retries a failed job: queued again on the target it failed on, with a fresh
    count of tries (its attempts keep counting). False if the job is not failed."""
    result = await session.exec(
        update(Job)
        .where(col(Job.id) == job_id, col(Job.status) == JobStatus.FAILED)
        .values(
            status=JobStatus.QUEUED,
            finished_at=None,
            error_code=None,
            error_message=None,
            progress=0,
            tries=0,
            provider_task_id=None,
        )
    )
    return bool(result.rowcount)


async def mark_deleted(session: AsyncSession, job_id: str) -> None:
    """Deleted by its owner (cancel it first): it answers 404 from now on."""
    await session.exec(update(Job).where(col(Job.id) == job_id).values(deleted_at=utcnow()))


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
    charged: int = 0,
) -> bool:
    """Move the attempt's job to a terminal status, adding what the attempt was `charged` to
    the job and its key's spend; False if it no longer runs this attempt (nothing changes)."""
    values: dict[str, object] = {"status": status, "finished_at": utcnow()}
    if status == JobStatus.SUCCEEDED:
        values["progress"] = 100
    if error_code is not None:
        values.update(error_code=error_code, error_message=(error_message or "")[:2000])
    return await _charged(session, update(Job).where(*_mine(job_id, attempt)), values, charged)


async def charge(session: AsyncSession, job_id: str, amount: int) -> None:
    """Add what a provider charged to the job and its key's spend, whoever holds the job now:
    an attempt that got outputs but did not end the job (its storage failed, it was canceled,
    its lease was lost) was billed all the same."""
    await _charged(session, update(Job).where(col(Job.id) == job_id), {}, amount)


async def _charged(
    session: AsyncSession, statement: Update, values: dict[str, object], amount: int
) -> bool:
    """Run the job's update with `amount` added to its cost, and to its key's spend of the day;
    False if it matched no row (and nothing was charged)."""
    result = await session.exec(
        statement.values(**values, cost_micros=Job.cost_micros + amount).returning(col(Job.key_id))
    )
    key_id = result.scalar_one_or_none()
    if key_id is not None:
        await spend.add_charge(session, key_id, amount, spend.day_of())
    return key_id is not None
