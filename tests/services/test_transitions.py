"""Every change of a job's state (app/jobs/transitions), in process: attempts fence each other,
an owner's cancel is final, a late job ends unstarted, a fallback moves to the next target."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import col, update

from app.jobs import intake, transitions
from app.jobs.queries import get_job
from app.keys import spend
from app.media import lifecycle
from app.platform.errors import NotFoundError
from app.platform.resources import Resources
from app.platform.tables import Job, VirtualKey, utcnow
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


async def test_a_taken_over_attempt_changes_nothing(res: Resources, new_key: KeyFactory) -> None:
    job = await queued(res, await new_key())
    async with res.sessionmaker() as session:
        first = await transitions.start_attempt(session, job.id)
        await session.commit()
    assert first is not None and (first.status, first.attempts, first.tries) == (
        JobStatus.RUNNING,
        1,
        1,
    )
    # Its worker is cut off past its lease; another takes the job over.
    async with res.sessionmaker() as session:
        second = await transitions.start_attempt(session, job.id)
        await session.commit()
    assert second is not None and second.attempts == 2
    async with res.sessionmaker() as session:
        assert not await transitions.hold(session, job.id, 1)
        assert not await transitions.set_progress(session, job.id, 1, 90)
        assert not await transitions.set_task(session, job.id, 1, "stale-task")
        assert not await transitions.finish(session, job.id, 1, JobStatus.FAILED)
        assert await transitions.set_progress(session, job.id, 2, 40)
        assert await transitions.set_progress(session, job.id, 2, 10)  # still mine; stays at 40
        await session.commit()
    now = await read(res, job.id)
    assert (now.status, now.progress, now.provider_task_id) == (JobStatus.RUNNING, 40, None)
    async with res.sessionmaker() as session:
        assert await transitions.finish(session, job.id, 2, JobStatus.SUCCEEDED)
        await session.commit()
    done = await read(res, job.id)
    assert (done.status, done.progress) == (JobStatus.SUCCEEDED, 100)
    assert done.finished_at is not None
    async with res.sessionmaker() as session:  # an ended job takes no new attempt
        assert await transitions.start_attempt(session, job.id) is None


async def test_an_owner_cancel_is_final(res: Resources, new_key: KeyFactory) -> None:
    job = await queued(res, await new_key())
    async with res.sessionmaker() as session:
        attempt = await transitions.start_attempt(session, job.id)
        await session.commit()
    assert attempt is not None
    async with res.sessionmaker() as session:
        assert await transitions.cancel(session, job.id)
        assert not await transitions.cancel(session, job.id)  # already ended
        await session.commit()
    async with res.sessionmaker() as session:
        # The running attempt's writes now match nothing: it cannot flip the job back.
        assert not await transitions.finish(session, job.id, 1, JobStatus.SUCCEEDED)
        assert await transitions.start_attempt(session, job.id) is None
    canceled = await read(res, job.id)
    assert canceled.status == JobStatus.CANCELED
    assert canceled.cancel_requested_at is not None and canceled.finished_at is not None


async def test_a_late_job_ends_unstarted(res: Resources, new_key: KeyFactory) -> None:
    key = await new_key()
    late = await queued(res, key, deadline_seconds=60)
    on_time = await queued(res, key, deadline_seconds=3600)
    async with res.sessionmaker() as session:
        past = utcnow() - timedelta(seconds=1)
        await session.exec(update(Job).where(col(Job.id) == late.id).values(deadline_at=past))
        await session.commit()
    async with res.sessionmaker() as session:
        assert await transitions.cancel_if_late(session, on_time.id) is None
        ended = await transitions.cancel_if_late(session, late.id)
        await session.commit()
    assert ended is not None
    assert (ended.status, ended.error_code) == (JobStatus.CANCELED, ErrorCode.DEADLINE_EXCEEDED)
    assert ended.started_at is None and ended.attempts == 0


async def test_fall_back_moves_to_the_next_target(res: Resources, new_key: KeyFactory) -> None:
    from app.catalog import routing

    async with res.sessionmaker() as session:
        await routing.put_alias(session, res.catalog, "house", ["openai/dall-e-2", "local-image"])
        await session.commit()
    job = await queued(res, await new_key(), model="house")
    assert (job.provider, job.targets) == ("openai", ["openai/dall-e-2", "local-image"])
    async with res.sessionmaker() as session:
        attempt = await transitions.start_attempt(session, job.id)
        await session.commit()
    assert attempt is not None
    spec = res.catalog.get("local-image")
    assert spec is not None
    async with res.sessionmaker() as session:
        assert await transitions.set_task(session, job.id, 1, "upstream-1")
        moved = await transitions.fall_back(session, job.id, 1, 1, spec, dict(INPUT))
        await session.commit()
    assert moved
    now = await read(res, job.id)
    assert (now.provider, now.target_index, now.tries, now.provider_task_id) == (
        "local",
        1,
        0,
        None,
    )


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
        await transitions.start_attempt(session, job.id)
        await transitions.finish(
            session, job.id, 1, JobStatus.FAILED, error_code=ErrorCode.PROVIDER_ERROR
        )
        await session.commit()
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
    async with res.sessionmaker() as session:
        second = await transitions.start_attempt(session, job.id)
    assert second is not None and second.attempts == 2


async def test_every_charged_attempt_counts_once(res: Resources, new_key: KeyFactory) -> None:
    """The first attempt got its outputs (billed) and was then taken over: its end records
    nothing, its charge is recorded on its own; the second attempt's end adds its charge."""
    key = await new_key()
    job = await queued(res, key)
    async with res.sessionmaker() as session:
        await transitions.start_attempt(session, job.id)
        await transitions.start_attempt(session, job.id)  # taken over
        await session.commit()
    async with res.sessionmaker() as session:
        assert not await transitions.finish(session, job.id, 1, JobStatus.SUCCEEDED, charged=7)
        await transitions.charge(session, job.id, 7)  # what settle_charges does
        assert await transitions.finish(session, job.id, 2, JobStatus.SUCCEEDED, charged=5)
        await session.commit()
        assert (await read(res, job.id)).cost_micros == 12
        report = (await spend.reports(session, [key]))[key.id]
    assert report["today"] == report["this_month"] == report["lifetime"] == 0.000012
