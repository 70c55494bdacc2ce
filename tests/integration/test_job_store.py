"""The job store's contract (app/platform/job_store.py), every scenario against each store a
process can run on: the ORM store on SQLite, the ORM store on PostgreSQL (as behind PgBouncer)
and the one-statement store on PostgreSQL. Keeping the stores in step is this suite: a scenario
that one store answers differently fails here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import col, select, update

from app.catalog.routing import Route
from app.jobs import transitions
from app.jobs.intake import build_job, queued_jobs
from app.jobs.queue import FAIR_COUNT_CAP
from app.jobs.transitions.one_statement import OneStatementJobStore
from app.jobs.transitions.orm_store import OrmJobStore
from app.keys import service as keys
from app.keys import spend
from app.platform.job_store import (
    JobStore,
    KeyGone,
    NotThisAttempt,
    Output,
    OverQuota,
)
from app.platform.resources import Resources
from app.platform.tables import Job, KeyUsage, MediaObject, VirtualKey, as_utc, utcnow
from app.platform.vocabulary import ErrorCode, JobStatus
from tests.builders import image_job
from tests.infra import base_settings, drop_namespace, open_resources

IMAGE = image_job("contract")
STORES = ["sqlite-orm", "postgresql-orm", "postgresql-one-statement"]


@dataclass
class Case:
    res: Resources
    store: JobStore
    name: str

    async def key(self, **limits: Any) -> VirtualKey:
        async with self.res.sessionmaker() as session:
            key, _ = await keys.insert_key(session, "contract", limits)
            await session.commit()
        return key

    def job(self, key: VirtualKey, **changes: Any) -> Job:
        spec = self.res.catalog.get("local-image")
        assert spec is not None
        job = build_job(key.id, Route("local-image", (spec,)), IMAGE["input"], IMAGE["input"])
        for name, value in changes.items():
            setattr(job, name, value)
        return job

    async def queued(self, key: VirtualKey | None = None, **changes: Any) -> Job:
        job = self.job(key or await self.key(), **changes)
        async with self.res.sessionmaker() as session:
            await transitions.add_queued(session, job)
            await session.commit()
        return job

    async def running(self, key: VirtualKey | None = None) -> Job:
        job = await self.queued(key)
        assert await self.store.start_attempt(job.id) is not None
        return job

    async def row(self, job_id: str) -> Job:
        async with self.res.sessionmaker() as session:
            job = await session.get(Job, job_id)
        assert job is not None
        return job

    async def change_key(self, key_id: str, **values: Any) -> None:
        async with self.res.sessionmaker() as session:
            await session.exec(
                update(VirtualKey).where(col(VirtualKey.id) == key_id).values(**values)
            )
            await session.commit()

    async def usage(self, key_id: str) -> tuple[int, int]:
        async with self.res.sessionmaker() as session:
            rows = (await session.exec(select(KeyUsage).where(KeyUsage.key_id == key_id))).all()
        return sum(r.bytes for r in rows), sum(r.objects for r in rows)

    async def media(self, job_id: str) -> list[MediaObject]:
        async with self.res.sessionmaker() as session:
            rows = await session.exec(
                select(MediaObject)
                .where(MediaObject.job_id == job_id)
                .order_by(col(MediaObject.index))
            )
            return list(rows.all())


def output(job: Job, attempt: int, index: int = 0, size: int = 1000, ext: str = "png") -> Output:
    return Output(
        job_id=job.id,
        key_id=job.key_id,
        attempt=attempt,
        variant="output",
        index=index,
        storage_key=f"{job.key_id}/{job.id}/{attempt}-{index}.{ext}",
        content_type="image/png",
        size=size,
        sha256="0" * 64,
        expires_at=None,
    )


@pytest.fixture(params=STORES)
async def case(request: pytest.FixtureRequest, pg_url: str, sqlite_url: str) -> AsyncIterator[Case]:
    name: str = request.param
    settings = base_settings(sqlite_url if name.startswith("sqlite") else pg_url)
    async with open_resources(settings) as res:
        store: JobStore
        if name == "postgresql-one-statement":
            store = OneStatementJobStore(res.engine, res.sessionmaker)
        else:
            store = OrmJobStore(res.engine, res.sessionmaker)
        yield Case(res, store, name)
    drop_namespace(settings.redis_namespace)


def test_each_database_gets_the_store_its_processes_use(pg_url: str, sqlite_url: str) -> None:
    from app.jobs.transitions.store import job_store
    from app.platform.database import create_engine, create_sessionmaker

    for url, pgbouncer, kind in [
        (sqlite_url, False, OrmJobStore),
        (pg_url, True, OrmJobStore),
        (pg_url, False, OneStatementJobStore),
    ]:
        engine = create_engine(url)
        store = job_store(
            engine, create_sessionmaker(engine), base_settings(url, database_pgbouncer=pgbouncer)
        )
        assert type(store) is kind


# -- the submit's common case ------------------------------------------------------------------


async def test_insert_queued_counts_the_keys_queued_jobs_up_to_the_cap(case: Case) -> None:
    key = await case.key()
    ahead = [await case.store.insert_queued(case.job(key)) for _ in range(3)]
    assert ahead == [0, 1, 2]
    async with case.res.sessionmaker() as session:
        assert await queued_jobs(session, key.id) == 3  # the checked path's count agrees
    for _ in range(FAIR_COUNT_CAP):
        await case.store.insert_queued(case.job(key))
    job = case.job(key)
    assert await case.store.insert_queued(job) == FAIR_COUNT_CAP
    stored = await case.row(job.id)
    assert (stored.status, stored.attempts, stored.progress) == (JobStatus.QUEUED, 0, 0)
    assert stored.input == IMAGE["input"] and stored.targets == ["local-image"]


@pytest.mark.parametrize(
    "changes",
    [
        {"max_concurrent_jobs": 5},
        {"max_bytes": 10**9},
        {"max_objects": 10},
        {"max_spend_micros_per_month": 10**6},
        {"revoked_at": utcnow()},
        {"deleted_at": utcnow()},
    ],
    ids=["concurrency", "bytes", "objects", "budget", "revoked", "deleted"],
)
async def test_insert_queued_leaves_limited_revoked_and_deleted_keys_to_the_checked_path(
    case: Case, changes: dict[str, Any]
) -> None:
    key = await case.key()
    await case.change_key(key.id, **changes)
    job = case.job(key)
    assert await case.store.insert_queued(job) is None
    async with case.res.sessionmaker() as session:
        assert await session.get(Job, job.id) is None  # nothing was written


# -- attempts -----------------------------------------------------------------------------------


async def test_start_attempt_starts_queued_and_lost_jobs_only(case: Case) -> None:
    key = await case.key()
    job = await case.queued(key)
    first = await case.store.start_attempt(job.id)
    assert first is not None and first.key.id == key.id
    assert (first.job.status, first.job.attempts, first.job.tries) == (JobStatus.RUNNING, 1, 1)
    assert first.job.started_at is not None and first.job.heartbeat_at is not None
    again = await case.store.start_attempt(job.id)  # its worker was lost
    assert again is not None and (again.job.attempts, again.job.tries) == (2, 2)
    assert again.job.started_at is not None and first.job.started_at is not None
    assert as_utc(again.job.started_at) == as_utc(first.job.started_at)  # SQLite's are naive
    assert await case.store.finish(job.id, 2, JobStatus.SUCCEEDED) is not None
    assert await case.store.start_attempt(job.id) is None  # ended

    assert await case.store.start_attempt("job_nonexistent") is None


async def test_a_late_job_is_not_started_but_ended(case: Case) -> None:
    key = await case.key()
    late = await case.queued(key, deadline_at=utcnow() - timedelta(seconds=1))
    on_time = await case.queued(key, deadline_at=utcnow() + timedelta(hours=1))
    assert await case.store.start_attempt(late.id) is None
    row = await case.row(late.id)
    assert (row.status, row.attempts, row.started_at) == (JobStatus.QUEUED, 0, None)
    assert await case.store.cancel_if_late(on_time.id) is None
    ended = await case.store.cancel_if_late(late.id)
    assert ended is not None and ended.attempts == 0 and ended.started_at is None
    assert (ended.status, ended.error_code) == (JobStatus.CANCELED, ErrorCode.DEADLINE_EXCEEDED)
    assert await case.store.cancel_if_late(late.id) is None  # once
    assert await case.store.start_attempt(on_time.id) is not None


async def test_a_deleted_job_is_not_started(case: Case) -> None:
    job = await case.queued()
    async with case.res.sessionmaker() as session:
        await session.exec(update(Job).where(col(Job.id) == job.id).values(deleted_at=utcnow()))
        await session.commit()
    assert await case.store.start_attempt(job.id) is None


async def test_the_hold_is_fenced_by_attempt(case: Case) -> None:
    job = await case.queued()
    assert not await case.store.hold(job.id, 1)  # queued: nobody runs it
    await case.store.start_attempt(job.id)
    started = await case.row(job.id)
    assert await case.store.hold(job.id, 1)
    held = await case.row(job.id)
    assert held.heartbeat_at is not None and started.heartbeat_at is not None
    assert as_utc(held.heartbeat_at) >= as_utc(started.heartbeat_at)
    await case.store.start_attempt(job.id)  # attempt 2 took over
    assert not await case.store.hold(job.id, 1)
    assert await case.store.hold(job.id, 2)


async def test_progress_rises_only_and_only_for_the_running_attempt(case: Case) -> None:
    job = await case.running()
    assert await case.store.set_progress(job.id, 1, 40)
    assert await case.store.set_progress(job.id, 1, 20)  # still its job; never moves back
    assert (await case.row(job.id)).progress == 40
    assert not await case.store.set_progress(job.id, 2, 60)  # no attempt 2
    assert (await case.row(job.id)).progress == 40


async def test_a_taken_over_attempt_changes_nothing(case: Case) -> None:
    key = await case.key()
    job = await case.running(key)
    assert await case.store.set_task(job.id, 1, "upstream-1")
    await case.store.start_attempt(job.id)  # its worker was cut off; attempt 2 took over
    spec = case.res.catalog.get("local-image")
    assert spec is not None
    before = await case.row(job.id)
    assert not await case.store.hold(job.id, 1)
    assert not await case.store.set_progress(job.id, 1, 90)
    assert not await case.store.set_task(job.id, 1, "stale-task")
    assert not await case.store.fall_back(job.id, 1, 0, spec, {"prompt": "x"})
    assert await case.store.discard_outputs(job.id, 1, "quota") is None
    with pytest.raises(NotThisAttempt):
        await case.store.record_output(output(job, 1))
    assert await case.store.finish(job.id, 1, JobStatus.FAILED, charged=7) is None
    after = await case.row(job.id)
    assert after.model_dump() == before.model_dump()
    assert await case.media(job.id) == [] and await case.usage(key.id) == (0, 0)
    assert await case.store.set_progress(job.id, 2, 40)
    done = await case.store.finish(job.id, 2, JobStatus.SUCCEEDED)
    assert done is not None and (done.status, done.progress) == (JobStatus.SUCCEEDED, 100)
    assert done.finished_at is not None and done.cost_micros == 0


async def test_an_owner_cancel_is_final(case: Case) -> None:
    job = await case.running()
    async with case.res.sessionmaker() as session:
        assert await transitions.cancel(session, job.id)
        assert not await transitions.cancel(session, job.id)  # already ended
        await session.commit()
    # The running attempt's writes now match nothing: it cannot flip the job back.
    assert not await case.store.hold(job.id, 1)
    assert await case.store.finish(job.id, 1, JobStatus.SUCCEEDED) is None
    assert await case.store.start_attempt(job.id) is None
    canceled = await case.row(job.id)
    assert (canceled.status, canceled.attempts) == (JobStatus.CANCELED, 1)
    assert canceled.cancel_requested_at is not None and canceled.finished_at is not None


async def test_fall_back_moves_to_the_target_with_a_fresh_count(case: Case) -> None:
    job = await case.running()
    assert await case.store.set_task(job.id, 1, "upstream-1")
    spec = case.res.catalog.get("local-image")
    assert spec is not None
    assert await case.store.fall_back(job.id, 1, 1, spec, {"prompt": "moved"})
    now = await case.row(job.id)
    assert (now.target_index, now.tries, now.provider_task_id, now.input) == (
        1,
        0,
        None,
        {"prompt": "moved"},
    )
    assert (now.status, now.attempts) == (JobStatus.RUNNING, 1)


# -- the end and its charge ----------------------------------------------------------------------


async def test_finish_records_the_end_and_the_charge_once(case: Case) -> None:
    key = await case.key()
    job = await case.running(key)
    assert await case.store.set_progress(job.id, 1, 30)
    failed = await case.store.finish(
        job.id, 1, JobStatus.FAILED, error_code="timeout", error_message="x" * 3000, charged=5
    )
    assert failed is not None and (failed.status, failed.error_code) == ("failed", "timeout")
    assert failed.error_message == "x" * 2000 and failed.progress == 30
    assert failed.cost_micros == 5 and failed.finished_at is not None
    assert await case.store.finish(job.id, 1, JobStatus.SUCCEEDED, charged=5) is None  # once
    plain = await case.running(key)
    ended = await case.store.finish(plain.id, 1, JobStatus.FAILED, error_code="x")
    assert ended is not None and ended.error_message == ""
    async with case.res.sessionmaker() as session:
        report = (await spend.reports(session, [key]))[key.id]
    assert report["today"] == report["lifetime"] == 0.000005


async def test_every_charged_attempt_counts_once(case: Case) -> None:
    """The first attempt got its outputs (billed) and was then taken over: its end records
    nothing, its charge is recorded on its own; the second attempt's end adds its charge."""
    key = await case.key()
    job = await case.running(key)
    await case.store.start_attempt(job.id)  # taken over
    assert await case.store.finish(job.id, 1, JobStatus.SUCCEEDED, charged=7) is None
    await case.store.charge(job.id, 7)  # what Bill.settle does
    assert await case.store.finish(job.id, 2, JobStatus.SUCCEEDED, charged=5) is not None
    assert (await case.row(job.id)).cost_micros == 12
    async with case.res.sessionmaker() as session:
        report = (await spend.reports(session, [key]))[key.id]
    assert report["today"] == report["this_month"] == report["lifetime"] == 0.000012


# -- outputs --------------------------------------------------------------------------------------


async def test_record_output_records_row_and_usage_together(case: Case) -> None:
    key = await case.key()
    job = await case.running(key)
    first = await case.store.record_output(output(job, 1))
    assert first.replaced is None and first.media.kind == "image" and first.media.bytes == 1000
    second = await case.store.record_output(output(job, 1, index=1, size=500))
    assert second.replaced is None
    assert await case.usage(key.id) == (1500, 2)
    rows = await case.media(job.id)
    assert [(m.id, m.index, m.bytes) for m in rows] == [
        (first.media.id, 0, 1000),
        (second.media.id, 1, 500),
    ]


async def test_a_re_run_replaces_the_earlier_attempts_output(case: Case) -> None:
    key = await case.key()
    job = await case.running(key)
    earlier = await case.store.record_output(output(job, 1, size=1000))
    await case.store.start_attempt(job.id)  # the first worker died after recording
    again = await case.store.record_output(output(job, 2, size=400, ext="webp"))
    assert again.replaced == earlier.media.storage_key  # the caller deletes it
    rows = await case.media(job.id)
    assert [(m.storage_key, m.bytes) for m in rows] == [(again.media.storage_key, 400)]
    assert await case.usage(key.id) == (400, 1)  # never counted twice


async def test_record_output_checks_the_quota_and_the_key(case: Case) -> None:
    key = await case.key(max_bytes=1500)
    job = await case.running(key)
    await case.store.record_output(output(job, 1, size=1000))
    with pytest.raises(OverQuota):
        await case.store.record_output(output(job, 1, index=1, size=600))
    assert await case.usage(key.id) == (1000, 1)
    await case.store.record_output(output(job, 1, index=1, size=500))  # just fits

    gone = await case.key()
    doomed = await case.running(gone)
    await case.change_key(gone.id, deleted_at=utcnow())
    with pytest.raises(KeyGone):
        await case.store.record_output(output(doomed, 1))
    assert await case.media(doomed.id) == []


async def test_discard_outputs_marks_them_deleted_and_says_which(case: Case) -> None:
    key = await case.key()
    job = await case.running(key)
    recorded = [await case.store.record_output(output(job, 1, index=i)) for i in range(2)]
    storage_keys = await case.store.discard_outputs(job.id, 1, "quota")
    assert sorted(storage_keys or []) == sorted(r.media.storage_key for r in recorded)
    rows = await case.media(job.id)
    assert all(m.deleted_at is not None for m in rows) and len(rows) == 2


@pytest.mark.parametrize("call", ["hold", "set_progress", "finish"])
async def test_a_write_that_finds_no_job_says_so(case: Case, call: str) -> None:
    writes: dict[str, Callable[[], Awaitable[object]]] = {
        "hold": lambda: case.store.hold("job_none", 1),
        "set_progress": lambda: case.store.set_progress("job_none", 1, 5),
        "finish": lambda: case.store.finish("job_none", 1, JobStatus.FAILED),
    }
    assert await writes[call]() in (False, None)
    assert await case.store.read("job_none") is None
