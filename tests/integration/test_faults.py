"""Fault tests on servers the tests own: a worker SIGKILLed during 200 jobs, a private Redis
restarted empty under load, a private PostgreSQL stopped during submits, S3 errors injected into
uploads, and a flaky provider. Each prints its counts (run with -s to see them)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import col, func, select

from app.platform.migrate import upgrade
from app.platform.resources import Resources
from app.platform.settings import Settings
from app.platform.tables import Job, KeyUsage, MediaObject
from storage.base import StorageError
from storage.s3 import S3Config, open_s3_store
from tests.builders import image_job
from tests.emulators.base import serve
from tests.emulators.s3proxy import S3FaultProxy
from tests.infra import (
    Stack,
    base_settings,
    open_resources,
    postgres_database,
    running_stack,
    running_workers,
    s3_changes,
    wait_for_job,
    worker_log,
)
from tests.servers import private_postgres, private_redis

IMAGE = image_job("f")


async def _statuses(res: Resources, job_ids: list[str]) -> dict[str, int]:
    async with res.sessionmaker() as session:
        rows = await session.exec(
            select(Job.status, func.count()).where(col(Job.id).in_(job_ids)).group_by(Job.status)
        )
        return {status: int(count) for status, count in rows.all()}


async def _wait_all_done(res: Resources, job_ids: list[str], seconds: float) -> dict[str, int]:
    deadline = time.monotonic() + seconds
    while True:
        counts = await _statuses(res, job_ids)
        if counts.get("queued", 0) + counts.get("running", 0) == 0:
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs still unfinished after {seconds}s: {counts}")
        await asyncio.sleep(0.25)


async def _submit(client: httpx.AsyncClient, body: dict[str, Any] = IMAGE) -> httpx.Response:
    return await client.post("/v1/jobs", json=body)


@pytest.fixture
async def res_for(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Open resources for a settings object the test makes (closed at the end)."""
    stack = contextlib.AsyncExitStack()

    async def opener(settings: Settings) -> Resources:
        return await stack.enter_async_context(open_resources(settings))

    yield opener
    await stack.aclose()


async def test_kill_9_a_worker_during_200_jobs(pg_url: str, s3_endpoint: str, res_for: Any) -> None:
    bucket = f"kill9-{secrets.token_hex(4)}"
    settings = base_settings(
        pg_url,
        job_lease_seconds=2,
        local_latency_seconds=0.3,
        **s3_changes(s3_endpoint, bucket),
    )
    res: Resources = await res_for(settings)
    with running_stack(settings, embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            key_id = (await client.get("/v1/usage")).json()["key_id"]
            body = {**IMAGE, "input": {**IMAGE["input"], "n": 2}}
            answers = []
            for _ in range(10):
                answers += await asyncio.gather(*(_submit(client, body) for _ in range(20)))
        assert {a.status_code for a in answers} == {202}
        job_ids = [a.json()["id"] for a in answers]

        with running_workers(settings, MEDIAGATE_WORKER_CONCURRENCY="12") as [first]:
            deadline = time.monotonic() + 60
            while (await _statuses(res, job_ids)).get("succeeded", 0) < 40:
                assert time.monotonic() < deadline, "the first worker made no progress"
                await asyncio.sleep(0.1)
            first.kill()  # SIGKILL: no cleanup at all
            first.wait(10)
        at_kill = await _statuses(res, job_ids)
        with running_workers(settings, MEDIAGATE_WORKER_CONCURRENCY="12"):
            counts = await _wait_all_done(res, job_ids, seconds=120)

    async with res.sessionmaker() as session:
        media = (
            await session.exec(
                select(MediaObject).where(
                    col(MediaObject.job_id).in_(job_ids), col(MediaObject.deleted_at).is_(None)
                )
            )
        ).all()
        usage = (await session.exec(select(KeyUsage).where(KeyUsage.key_id == key_id))).all()
        retried = (
            await session.exec(
                select(func.count()).where(col(Job.id).in_(job_ids), col(Job.attempts) > 1)
            )
        ).one()
    in_bucket = {info.key: info.size async for info in res.store.list_objects(f"{key_id}/")}
    print(
        f"\nkill -9 during 200 jobs: at the kill {at_kill}; in the end {counts}; "
        f"{retried} jobs ran twice; {len(media)} media rows; {len(in_bucket)} objects"
    )
    assert counts == {"succeeded": 200}
    pairs = [(m.job_id, m.variant, m.index) for m in media]
    assert len(pairs) == len(set(pairs)) == 400  # two outputs per job, no duplicates
    assert len({m.storage_key for m in media}) == 400
    assert {m.storage_key: m.bytes for m in media} == in_bucket
    assert sum(u.bytes for u in usage) == sum(in_bucket.values())
    assert sum(u.objects for u in usage) == 400


@pytest.fixture
def own_database() -> Iterator[str]:
    """A database of its own: the outbox (1 s grace here) looks at every job in it."""
    with postgres_database() as url:
        yield url


async def test_redis_restarted_empty_under_load(own_database: str, res_for: Any) -> None:
    with private_redis() as redis_server:
        settings = base_settings(
            own_database,
            redis_url=redis_server.url,
            outbox_grace_seconds=1,
            job_lease_seconds=3,
            local_latency_seconds=0.5,
        )
        res: Resources = await res_for(settings)
        with (
            running_stack(settings, embedded_worker=False) as stack,
            running_workers(settings) as [worker_proc],
        ):
            token = stack.new_key()
            accepted: list[str] = []
            refused: list[httpx.Response] = []
            async with stack.client(token) as client:

                async def burst(count: int) -> None:
                    for answer in await asyncio.gather(*(_submit(client) for _ in range(count))):
                        if answer.status_code == 202:
                            accepted.append(answer.json()["id"])
                        else:
                            refused.append(answer)

                await burst(30)
                await asyncio.sleep(0.6)  # some running, most still queued in Redis
                redis_server.kill()
                await burst(10)
                ready = await client.get("/readyz")
                redis_server.start()  # empty: every queued arq job is gone
                await burst(30)
            try:
                counts = await _wait_all_done(res, accepted, seconds=90)
            except AssertionError as exc:
                log = worker_log(worker_proc)[-4000:]
                raise AssertionError(f"{exc}\nworker log:\n{log}") from None
    print(
        f"\nRedis restarted without persistence: {len(accepted)} accepted, "
        f"{len(refused)} refused with 503 while it was down; in the end {counts}"
    )
    assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("down")
    assert ready.json()["checks"]["database"] == "ok"
    assert len(accepted) == 60 and len(refused) == 10
    assert {r.status_code for r in refused} == {503}
    assert {r.json()["error"]["code"] for r in refused} == {"service_unavailable"}
    assert counts == {"succeeded": 60}


async def test_postgres_stopped_during_submits(res_for: Any) -> None:
    with private_postgres() as pg:
        pg.create_database("mediagate")
        url = pg.url("mediagate")
        await asyncio.to_thread(upgrade, url)
        settings = base_settings(
            url, local_latency_seconds=0.2, database_timeout_seconds=2, job_lease_seconds=3
        )
        with running_stack(settings, embedded_worker=True) as stack:
            token = stack.new_key()
            accepted: list[str] = []
            async with stack.client(token) as client:
                for _ in range(5):
                    accepted.append((await _submit(client)).json()["id"])
                pg.stop()
                refused = []
                for _ in range(5):
                    started = time.monotonic()
                    refused.append((await _submit(client), time.monotonic() - started))
                ready = await client.get("/readyz")
                listing = await client.get("/v1/jobs")
                pg.start()  # our processes keep running: no restart
                after = [await _submit(client) for _ in range(5)]
                accepted += [a.json()["id"] for a in after if a.status_code == 202]
            res: Resources = await res_for(settings)
            counts = await _wait_all_done(res, accepted, seconds=60)
    slowest = max(seconds for _, seconds in refused)
    print(
        f"\nPostgreSQL stopped: {len(refused)} submits refused with "
        f"{sorted({a.status_code for a, _ in refused})} (slowest {slowest:.2f}s); "
        f"after it came back {len(after)} submits answered "
        f"{sorted({a.status_code for a in after})}; "
        f"in the end {counts}"
    )
    assert {a.status_code for a, _ in refused} == {503}
    assert {a.json()["error"]["code"] for a, _ in refused} == {"service_unavailable"}
    assert slowest < 5
    assert listing.status_code == 503
    assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("down")
    assert ready.json()["checks"]["redis"] == "ok"
    assert [a.status_code for a in after] == [202] * 5
    assert counts == {"succeeded": 10}


MIB = 1024 * 1024


async def _chunks(total: int) -> AsyncIterator[bytes]:
    block = os.urandom(MIB)
    for start in range(0, total, MIB):
        yield block[: min(MIB, total - start)]


async def test_s3_errors_during_upload(s3_endpoint: str, pg_url: str, res_for: Any) -> None:
    with serve(S3FaultProxy(s3_endpoint)) as proxy:
        bucket = f"faults-{secrets.token_hex(4)}"
        config = S3Config(bucket=bucket, endpoint_url=proxy.url, access_key="t", secret_key="t")
        direct = S3Config(bucket=bucket, endpoint_url=s3_endpoint, access_key="t", secret_key="t")
        store, truth = await open_s3_store(config), await open_s3_store(direct)
        try:
            await truth.ensure_bucket()
            # Transient: botocore retries the failed parts, the upload completes.
            proxy.fail("UploadPart", times=2)
            proxy.fail("CompleteMultipartUpload", times=1, status=503, code="SlowDown")
            size = await store.put("big.bin", _chunks(20 * MIB), content_type="video/mp4")
            info = await truth.head("big.bin")
            assert size == 20 * MIB and info is not None and info.size == 20 * MIB
            transient = proxy.seen.count("UploadPart")

            # Lasting: the upload fails, is aborted, and leaves nothing behind.
            proxy.reset()
            proxy.fail("UploadPart", times=100)
            with pytest.raises(StorageError):
                await store.put("broken.bin", _chunks(20 * MIB), content_type="video/mp4")
            assert await truth.head("broken.bin") is None
            pending = await truth._client.list_multipart_uploads(Bucket=bucket)
            assert pending.get("Uploads", []) == []
        finally:
            await store.close()
            await truth.close()

        # Through the whole stack: outputs whose upload fails for a while still land, once.
        proxy.reset()
        settings = base_settings(pg_url, retry_base_seconds=0.1, **s3_changes(proxy.url, bucket))
        with running_stack(settings, embedded_worker=True) as stack:
            token = stack.new_key()
            proxy.fail("PutObject", times=4)  # more than botocore's 3 attempts: the job retries
            async with stack.client(token) as client:
                job_id = (await _submit(client)).json()["id"]
            res: Resources = await res_for(settings)
            counts = await _wait_all_done(res, [job_id], seconds=60)
            async with res.sessionmaker() as session:
                job = await session.get(Job, job_id)
                rows = (
                    await session.exec(select(MediaObject).where(MediaObject.job_id == job_id))
                ).all()
            stored = await res.store.head(rows[0].storage_key) if rows else None
    print(
        f"\nS3 faults: {transient} UploadPart requests for 3 parts with 2 injected failures; "
        f"a lasting failure aborted cleanly; a job whose PutObject failed 4 times: {counts}, "
        f"attempts {job.attempts if job else None}"
    )
    assert transient == 5
    assert counts == {"succeeded": 1} and job is not None and job.attempts == 2
    assert len(rows) == 1 and stored is not None and stored.size == rows[0].bytes


async def test_flaky_provider(upstream_stack: Stack, emu: dict[str, Any]) -> None:
    # Every second request to OpenAI's image endpoint fails with a 500.
    emu["openai"].fail(
        "/v1/images/generations", 500, {"error": {"message": "flaky"}}, times=1000, every=2
    )
    token = upstream_stack.new_key()
    body = {"type": "image", "model": "openai/dall-e-2", "input": {"prompt": "f"}}
    jobs = []
    async with upstream_stack.client(token) as client:
        for _ in range(12):  # one at a time, so that which requests fail is certain
            job_id = (await _submit(client, body)).json()["id"]
            jobs.append(await wait_for_job(client, job_id, timeout=30))
    statuses = [job["status"] for job in jobs]
    attempts = sum(job["attempts"] for job in jobs)
    print(
        f"\nflaky provider (every 2nd request a 500): {statuses.count('succeeded')} of 12 "
        f"succeeded in {attempts} attempts"
    )
    assert statuses == ["succeeded"] * 12
    # Requests alternate pass/fail and each job ends on a pass: so every job after the first
    # starts on a failing request and needs exactly two attempts.
    assert [job["attempts"] for job in jobs] == [1] + [2] * 11
