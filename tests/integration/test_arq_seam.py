"""What we rely on in arq beyond its documented API (app/platform/arq_seam.py), one test a
behaviour, against real Redis and arq's own worker: an arq upgrade that changes any of it fails
here, by name, rather than somewhere in the job lifecycle."""

from __future__ import annotations

import asyncio
import inspect
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from arq import func
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.jobs import Job as ArqJob
from arq.worker import Worker

from app.jobs.queue import enqueue_new
from app.platform import arq_seam
from app.platform.events import EventBus
from app.platform.tasks import GENERATE_TASK, deserialize, serialize
from tests.builders import free_port
from tests.infra import REDIS_URL, drop_namespace, new_namespace


@pytest.fixture
async def redis() -> AsyncIterator[ArqRedis]:
    pool = await create_pool(
        RedisSettings.from_dsn(REDIS_URL), job_serializer=serialize, job_deserializer=deserialize
    )
    yield pool
    await pool.aclose()


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = new_namespace()
    yield ns
    drop_namespace(ns)


def _worker(
    redis: ArqRedis, queue: str, seen: list[Any], *, supersede: bool = False, **options: Any
) -> arq_seam.ResilientWorker:
    async def task(ctx: dict[str, Any], job_id: str, trace: Any = None) -> str:
        seen.append(
            {
                "job_id": job_id,
                "locked_ms": await redis.pttl(arq_seam.in_progress_key(ctx["job_id"])),
                "data_kept": await redis.exists(arq_seam.job_key(ctx["job_id"])),
            }
        )
        if supersede:
            ctx[arq_seam.SUPERSEDED_JOBS].add(ctx["job_id"])
        return "done"

    async def startup(ctx: dict[str, Any]) -> None:
        ctx[arq_seam.SUPERSEDED_JOBS] = set()

    return arq_seam.ResilientWorker(
        functions=[func(task, name=GENERATE_TASK)],
        redis_pool=redis,
        queue_name=queue,
        burst=True,
        handle_signals=False,
        poll_delay=0.01,
        keep_result=0,
        allow_abort_jobs=True,
        job_serializer=serialize,
        job_deserializer=deserialize,
        on_startup=startup,
        lease_seconds=7,
        **options,
    )


async def test_our_enqueue_writes_the_job_arq_reads_and_keys_it_as_arq_does(
    redis: ArqRedis, namespace: str
) -> None:
    """`job_data` is arq's wire format and `job_key`/`result_key` its names: arq reads the job
    our script wrote, and its own enqueue sees it there (and does not queue it twice)."""
    queue = f"{namespace}:queue"
    job_id = f"job_{secrets.token_hex(6)}"
    await enqueue_new(redis, EventBus(redis, namespace), queue, job_id, "normal", 0, {"id": job_id})
    info = await ArqJob(job_id, redis, _queue_name=queue, _deserializer=deserialize).info()
    assert info is not None and (info.function, list(info.args)) == (GENERATE_TASK, [job_id])
    assert await redis.exists(arq_seam.job_key(job_id))
    assert await redis.enqueue_job(GENERATE_TASK, job_id, _job_id=job_id, _queue_name=queue) is None

    done = f"job_{secrets.token_hex(6)}"
    await redis.set(arq_seam.result_key(done), b"x", ex=60)  # a result: never queued again
    await enqueue_new(redis, EventBus(redis, namespace), queue, done, "normal", 0, {"id": done})
    assert await redis.zscore(queue, done) is None
    await redis.delete(arq_seam.job_key(job_id), arq_seam.result_key(done))


async def test_a_running_job_holds_arqs_lock_for_one_lease(redis: ArqRedis, namespace: str) -> None:
    """`in_progress_key` is arq's lock, and ResilientWorker makes it last one lease, not the
    job timeout; a finished job's data is gone (arq's finish_job ran)."""
    queue = f"{namespace}:queue"
    job_id = f"job_{secrets.token_hex(6)}"
    await redis.enqueue_job(GENERATE_TASK, job_id, _job_id=job_id, _queue_name=queue)
    seen: list[Any] = []
    worker = _worker(redis, queue, seen, job_timeout=3600)
    assert worker.in_progress_timeout_s == 7
    await worker.main()
    assert len(seen) == 1 and seen[0]["job_id"] == job_id
    assert 0 < seen[0]["locked_ms"] <= 7000
    assert not await redis.exists(arq_seam.job_key(job_id), arq_seam.in_progress_key(job_id))


async def test_a_superseded_jobs_redis_state_is_left_to_its_new_worker(
    redis: ArqRedis, namespace: str
) -> None:
    """`finish_job` is where arq deletes a finished job's data and lock; for a job in the
    context's SUPERSEDED_JOBS ours skips it."""
    queue = f"{namespace}:queue"
    job_id = f"job_{secrets.token_hex(6)}"
    await redis.enqueue_job(GENERATE_TASK, job_id, _job_id=job_id, _queue_name=queue)
    seen: list[Any] = []
    worker = _worker(redis, queue, seen, supersede=True)
    # arq's burst run ends when the queue is empty; the kept job would keep it running.
    task = asyncio.create_task(worker.main())
    for _ in range(200):
        if seen:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    await worker.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert seen and await redis.exists(arq_seam.job_key(job_id))
    assert await redis.zscore(queue, job_id) is not None
    await redis.delete(arq_seam.job_key(job_id), arq_seam.in_progress_key(job_id), queue)


async def test_an_aborted_queued_job_is_never_run(redis: ArqRedis, namespace: str) -> None:
    """`abort` (arq's Job with `_queue_name`): without a worker it is not done at once, and the
    worker that next polls skips the job."""
    queue = f"{namespace}:queue"
    job_id = f"job_{secrets.token_hex(6)}"
    await redis.enqueue_job(GENERATE_TASK, job_id, _job_id=job_id, _queue_name=queue)
    assert await arq_seam.abort(redis, queue, job_id, deserialize) is False
    seen: list[Any] = []
    await _worker(redis, queue, seen).main()
    assert seen == []


async def test_the_polling_loop_outlives_a_redis_outage() -> None:
    """`_poll_iteration` is arq's loop body; ours returns (after a pause) where arq's raises."""
    assert inspect.iscoroutinefunction(Worker._poll_iteration)
    nowhere = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    worker = _worker(nowhere, "nowhere:queue", [])
    try:
        await asyncio.wait_for(worker._poll_iteration(), 10)  # no exception
    finally:
        await nowhere.aclose()
