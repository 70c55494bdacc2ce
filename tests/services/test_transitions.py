"""The changes of a job's state that services make in their own unit of work (app/jobs/transitions):
a key's deletion cancels its jobs, a deleted job is not found, only a failed job is retried. The
attempts' writes are the job store's, with a contract suite of their own
(tests/integration/test_job_store.py)."""

from __future__ import annotations

import pytest

from app.jobs import intake, transitions
from app.jobs.queries import get_job
from app.media import lifecycle
from app.platform.errors import NotFoundError
from app.platform.resources import Resources
from app.platform.tables import Job, VirtualKey
from app.platform.vocabulary import ErrorCode, JobStatus
from tests.services.conftest import KeyFactory

INPUT = {"prompt": "a lighthouse", "size": "256x256"}


async def queued(
    res: Resources, key: VirtualKey, model: str = "local-image", **options: object
) -> Job:
    async with res.sessionmaker() as session:
        job = await intake.create_job(session, key, res.catalog, "image", model, INPUT, **options)
        await session.commit()
    return job


async def read(res: Resources, job_id: str) -> Job:
    async with res.sessionmaker() as session:
        job = await session.get(Job, job_id)
    assert job is not None
    return job


async def test_deleting_a_key_cancels_its_jobs(res: Resources, new_key: KeyFactory) -> None:
    key, other = await new_key(), await new_key("other")
    mine, theirs = await queued(res, key), await queued(res, other)
    async with res.sessionmaker() as session:
        deleted = await lifecycle.delete_key(session, key.id)
        await session.commit()
    assert deleted.revoked_at is not None and deleted.purge_status == "pending"
    assert (await read(res, mine.id)).status == JobStatus.CANCELED
    assert (await read(res, theirs.id)).status == JobStatus.QUEUED


async def test_a_deleted_job_is_not_found(res: Resources, new_key: KeyFactory) -> None:
    key = await new_key()
    job = await queued(res, key)
    async with res.sessionmaker() as session:
        await transitions.mark_deleted(session, job.id)
        await session.commit()
    async with res.sessionmaker() as session:
        with pytest.raises(NotFoundError):
            await get_job(session, key.id, job.id)


async def test_only_a_failed_job_is_queued_again(res: Resources, new_key: KeyFactory) -> None:
    job = await queued(res, await new_key())
    async with res.sessionmaker() as session:
        assert not await transitions.requeue(session, job.id)  # queued: nothing to retry
    await res.jobs.start_attempt(job.id)
    await res.jobs.finish(job.id, 1, JobStatus.FAILED, error_code=ErrorCode.PROVIDER_ERROR)
    async with res.sessionmaker() as session:
        assert await transitions.requeue(session, job.id)
        await session.commit()
    again = await read(res, job.id)
    assert (again.status, again.error_code, again.finished_at, again.tries) == (
        JobStatus.QUEUED,
        None,
        None,
        0,
    )
    assert again.attempts == 1  # attempts keep counting
    second = await res.jobs.start_attempt(job.id)
    assert second is not None and second.job.attempts == 2
