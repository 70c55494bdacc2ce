"""Every change of a job's state goes through this package. Here: the changes a service makes
inside its own unit of work (a new job that commits with what the request holds, a cancel by its
owner or its key's deletion, a retry, a deletion). The writes of a worker's attempt, a late
job's end and the submit's common case are the job store's (`app.platform.job_store`): two
stores of one contract, `orm_store.OrmJobStore` and `one_statement.OneStatementJobStore`, the
process's one chosen by `store.job_store` where its resources are opened."""

from __future__ import annotations

from sqlmodel import col, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.platform.tables import Job, utcnow
from app.platform.vocabulary import ACTIVE_STATUSES, JobStatus


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
