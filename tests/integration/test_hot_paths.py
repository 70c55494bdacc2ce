"""The one-statement hot paths on PostgreSQL (app/jobs/transitions/one_statement.py) keep the
guarantees of the ORM paths they stand in for: each does its whole work or nothing, and says
which, so that the caller can fall back. Also the key cache: a change to a key takes effect at
once, on this API process and (through the Redis notice) on every other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from sqlmodel import col, select, update

from app.catalog.routing import Route
from app.jobs.intake import build_job, queued_jobs
from app.jobs.transitions import one_statement
from app.keys import service as keys
from app.platform.events import EventBus, EventHub
from app.platform.ids import new_id
from app.platform.redis_keys import keys_channel
from app.platform.resources import Resources, open_resources
from app.platform.tables import Job, KeyUsage, MediaObject, VirtualKey, transient_job, utcnow
from app.platform.vocabulary import JobType
from tests.builders import image_job
from tests.infra import ADMIN_KEY, REDIS_URL, Stack, base_settings, drop_namespace

IMAGE = image_job("hot")


@pytest.fixture
async def res(pg_url: str) -> AsyncIterator[Resources]:
    settings = base_settings(pg_url)
    async with open_resources(settings) as resources:
        yield resources
    drop_namespace(settings.redis_namespace)


async def _key(res: Resources, **changes: Any) -> VirtualKey:
    async with res.sessionmaker() as session:
        key, _ = await keys.create_key(session, "hot")
        for name, value in changes.items():
            setattr(key, name, value)
        session.add(key)
        await session.commit()
        return key


def _job(res: Resources, key: VirtualKey, **changes: Any) -> Job:
    spec = res.catalog.get("local-image")
    assert spec is not None
    job = build_job(key.id, Route("local-image", (spec,)), IMAGE["input"], IMAGE["input"])
    for name, value in changes.items():
        setattr(job, name, value)
    return job


async def _row(res: Resources, job_id: str) -> Job | None:
    async with res.sessionmaker() as session:
        return await session.get(Job, job_id)


async def _usage_bytes(res: Resources, key_id: str) -> int:
    async with res.sessionmaker() as session:
        rows = (await session.exec(select(KeyUsage).where(KeyUsage.key_id == key_id))).all()
    return sum(row.bytes for row in rows)


async def test_insert_queued_counts_the_keys_queued_jobs_up_to_the_cap(res: Resources) -> None:
    key = await _key(res)
    ahead = [await one_statement.insert_queued(res.engine, _job(res, key)) for _ in range(3)]
    assert ahead == [0, 1, 2]
    async with res.sessionmaker() as session:
        assert await queued_jobs(session, key.id) == 3  # the ORM path's count agrees
    for _ in range(one_statement.FAIR_COUNT_CAP):
        await one_statement.insert_queued(res.engine, _job(res, key))
    assert (
        await one_statement.insert_queued(res.engine, _job(res, key))
        == one_statement.FAIR_COUNT_CAP
    )
    stored = await _row(res, (job := _job(res, key)).id)
    assert stored is None
    await one_statement.insert_queued(res.engine, job)
    stored = await _row(res, job.id)
    assert stored is not None and stored.status == "queued"
    assert stored.input == IMAGE["input"] and stored.targets == ["local-image"]


@pytest.mark.parametrize(
    "changes",
    [
        {"max_concurrent_jobs": 5},
        {"max_bytes": 10**9},
        {"max_objects": 10},
        {"revoked_at": utcnow()},
        {"deleted_at": utcnow()},
    ],
    ids=["concurrency-limit", "byte-quota", "object-quota", "revoked", "deleted"],
)
async def test_insert_queued_leaves_limited_revoked_and_deleted_keys_to_the_orm_path(
    res: Resources, changes: dict[str, Any]
) -> None:
    key = await _key(res, **changes)
    job = _job(res, key)
    assert await one_statement.insert_queued(res.engine, job) is None
    assert await _row(res, job.id) is None  # nothing was written


async def test_start_attempt_starts_queued_and_lost_jobs_only(res: Resources) -> None:
    key = await _key(res)
    job = _job(res, key)
    await one_statement.insert_queued(res.engine, job)
    started = await one_statement.start_attempt(res.engine, job.id)
    assert started is not None
    first, owner = started
    assert (first.status, first.attempts, first.tries) == ("running", 1, 1)
    assert owner.id == key.id and first.started_at is not None
    again = await one_statement.start_attempt(res.engine, job.id)  # its worker was lost
    assert again is not None and again[0].attempts == 2 and again[0].started_at == first.started_at
    assert await one_statement.finish(res.engine, job.id, 2, "succeeded") is not None
    assert (
        await one_statement.start_attempt(res.engine, job.id) is None
    )  # ended: the ORM path skips

    late = _job(res, key, deadline_at=utcnow() - timedelta(seconds=1))
    await one_statement.insert_queued(res.engine, late)
    assert await one_statement.start_attempt(res.engine, late.id) is None  # the ORM path cancels it
    row = await _row(res, late.id)
    assert row is not None and row.status == "queued" and row.attempts == 0


async def test_finish_and_progress_are_fenced_by_attempt(res: Resources) -> None:
    key = await _key(res)
    job = _job(res, key)
    await one_statement.insert_queued(res.engine, job)
    await one_statement.start_attempt(res.engine, job.id)
    await one_statement.start_attempt(res.engine, job.id)  # attempt 2 took over
    assert not await one_statement.set_progress(res.engine, job.id, 1, 40)
    assert await one_statement.finish(res.engine, job.id, 1, "failed", error_code="x") is None
    assert await one_statement.set_progress(res.engine, job.id, 2, 40)
    assert await one_statement.set_progress(res.engine, job.id, 2, 20)  # never moves back
    row = await _row(res, job.id)
    assert row is not None and (row.status, row.progress) == ("running", 40)
    done = await one_statement.finish(res.engine, job.id, 2, "failed", error_code="timeout")
    assert done is not None and (done.status, done.error_code) == ("failed", "timeout")
    assert done.error_message == "" and done.finished_at is not None and done.progress == 40


async def test_the_heartbeat_is_fenced_by_attempt(res: Resources) -> None:
    key = await _key(res)
    job = _job(res, key)
    await one_statement.insert_queued(res.engine, job)
    assert not await one_statement.beat(res.engine, job.id, 1)  # queued: nobody runs it
    await one_statement.start_attempt(res.engine, job.id)
    started = await _row(res, job.id)
    assert started is not None and started.heartbeat_at is not None
    assert await one_statement.beat(res.engine, job.id, 1)
    beaten = await _row(res, job.id)
    assert beaten is not None and beaten.heartbeat_at is not None
    assert beaten.heartbeat_at > started.heartbeat_at
    await one_statement.start_attempt(res.engine, job.id)  # attempt 2 took over
    assert not await one_statement.beat(res.engine, job.id, 1)
    assert await one_statement.beat(res.engine, job.id, 2)


async def _record(res: Resources, job: Job, attempt: int, index: int = 0) -> MediaObject | None:
    return await one_statement.record_output(
        res.engine,
        job_id=job.id,
        key_id=job.key_id,
        attempt=attempt,
        variant="output",
        index=index,
        storage_key=f"{job.key_id}/{job.id}/{attempt}-{index}.png",
        content_type="image/png",
        size=1000,
        sha256="0" * 64,
        expires_at=None,
    )


async def test_record_output_records_row_and_usage_together_or_nothing(res: Resources) -> None:
    key = await _key(res)
    job = _job(res, key)
    await one_statement.insert_queued(res.engine, job)
    await one_statement.start_attempt(res.engine, job.id)
    media = await _record(res, job, 1)
    assert media is not None and media.kind == "image"
    assert await _usage_bytes(res, key.id) == 1000
    # The same (job, variant, index) again: a re-run's replacement is the ORM path's work.
    assert await _record(res, job, 1) is None
    # A superseded attempt records nothing.
    await one_statement.start_attempt(res.engine, job.id)
    assert await _record(res, job, 1, index=1) is None
    assert await _usage_bytes(res, key.id) == 1000
    async with res.sessionmaker() as session:
        rows = (await session.exec(select(MediaObject).where(MediaObject.job_id == job.id))).all()
    assert [(m.id, m.bytes) for m in rows] == [(media.id, 1000)]


@pytest.mark.parametrize("changes", [{"max_bytes": 10**9}, {"deleted_at": utcnow()}])
async def test_record_output_leaves_quota_and_deleted_keys_to_the_orm_path(
    res: Resources, changes: dict[str, Any]
) -> None:
    key = await _key(res)
    job = _job(res, key)
    await one_statement.insert_queued(res.engine, job)
    await one_statement.start_attempt(res.engine, job.id)
    async with res.sessionmaker() as session:
        await session.exec(update(VirtualKey).where(col(VirtualKey.id) == key.id).values(**changes))
        await session.commit()
    assert await _record(res, job, 1) is None
    assert await _usage_bytes(res, key.id) == 0


def test_transient_job_is_the_job_the_orm_builds() -> None:
    now = utcnow()
    values: dict[str, Any] = {
        "id": new_id("job"),
        "key_id": "key_1",
        "type": JobType.IMAGE,
        "model": "m",
        "provider": "local",
        "provider_model": "m",
        "targets": ["m"],
        "input": {"prompt": "x"},
        "created_at": now,
    }
    fast, slow = transient_job(**values), Job(**values)
    assert fast.model_dump() == slow.model_dump()
    fast.targets.append("n")  # defaults are not shared between rows
    assert transient_job(**{**values, "targets": []}).targets == []
    with pytest.raises(TypeError):
        transient_job(nonsense=1)


async def test_a_changed_key_takes_effect_at_once(api_only_stack: Stack) -> None:
    stack = api_only_stack  # no worker: the job stays queued
    token = stack.new_key()
    async with stack.client(token) as client, stack.client(ADMIN_KEY) as admin:
        assert (await client.post("/v1/jobs", json=IMAGE)).status_code == 202  # now cached
        key_id = (await client.get("/v1/usage")).json()["key_id"]
        patched = await admin.patch(f"/admin/keys/{key_id}", json={"max_concurrent_jobs": 1})
        assert patched.status_code == 200, patched.text
        refused = await client.post("/v1/jobs", json=IMAGE)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert (await admin.delete(f"/admin/keys/{key_id}")).status_code == 200
        gone = await client.get("/v1/jobs")
        assert gone.status_code == 401 and gone.json()["error"]["code"] == "invalid_api_key"


async def test_key_cache_drops_a_key_on_another_processs_notice(pg_url: str) -> None:
    """The notice path alone: a cache fed by an event hub on real Redis, as in each API process."""
    settings = base_settings(pg_url)
    redis = Redis.from_url(REDIS_URL)
    cache = keys.KeyCache(60)
    bus = EventBus(redis, settings.redis_namespace)
    hub = EventHub(redis, bus, listeners={keys_channel(settings.redis_namespace): cache.on_notice})
    cache.live = hub.connected.is_set
    key = VirtualKey(id="key_a", name="a", prefix="mg_a", key_hash="h")
    try:
        generation = cache.generation
        cache.put("h", key, generation)
        assert cache.get("h") is None  # not before the hub listens: a notice could be missed
        await hub.start()
        await asyncio.wait_for(hub.connected.wait(), 5)
        cache.put("h", key, cache.generation)
        assert cache.get("h") is key
        await keys.announce_change(redis, settings.redis_namespace, "key_a")
        for _ in range(100):
            if cache.get("h") is None:
                break
            await asyncio.sleep(0.02)
        assert cache.get("h") is None
        # A row read before a notice is not cached after it.
        stale = cache.generation
        cache.on_notice(b"key_b")
        cache.put("h", key, stale)
        assert cache.get("h") is None
    finally:
        await hub.stop()
        await redis.aclose()


async def test_driver_connection_errors_are_outages_or_the_statements_fault(
    res: Resources,
) -> None:
    """The hot paths' errors are classified as the ORM's are: a server that cannot be reached is
    an outage (the worker retries, the API answers 503), a bad value is the statement's fault."""
    from app.platform.database import create_engine, driver_connection
    from app.platform.errors import unavailable_part
    from tests.builders import free_port

    nowhere = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x", timeout=1)
    try:
        with pytest.raises(Exception) as refused:
            async with driver_connection(nowhere):
                pass
        assert unavailable_part(refused.value) == "database"
    finally:
        await nowhere.dispose()
    with pytest.raises(Exception) as bad:
        async with driver_connection(res.engine) as conn:
            await conn.execute("SELECT $1::int", "not a number")
    assert unavailable_part(bad.value) is None


async def test_a_statement_cut_off_midway_does_not_poison_the_pool(pg_url: str) -> None:
    """A connection whose statement was cut off (a task cancelled by a lost lease or a shutdown)
    or whose protocol went astray (the PostgreSQL stop test once met asyncpg's "another operation
    is in progress") is never handed to the next caller, and the latter is an outage (the worker
    retries the job), not an unknown error that fails it."""
    from app.platform.database import create_engine, driver_connection
    from app.platform.errors import unavailable_part

    engine = create_engine(pg_url, pool_size=1)  # the next caller gets the same connection
    try:

        async def slow() -> None:
            async with driver_connection(engine) as conn:
                await conn.execute("SELECT pg_sleep(5)")

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with driver_connection(engine) as conn:
            assert await conn.fetchval("SELECT 1") == 1
        with pytest.raises(Exception) as astray:
            async with driver_connection(engine):
                raise asyncpg.InternalClientError("another operation (2) is in progress")
        assert unavailable_part(astray.value) == "database"
        async with driver_connection(engine) as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await engine.dispose()
