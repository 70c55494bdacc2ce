"""The outbox: jobs whose arq job Redis lost (flushed, restarted empty, or never enqueued after the
commit) are queued again and finish; running jobs are queued again only once their worker's
heartbeat has gone silent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
import redis
from sqlmodel import col, update

from app.jobs import outbox
from app.platform.arq_seam import job_key
from app.platform.redis_keys import queue_name
from app.platform.tables import Job, utcnow
from tests.builders import image_job
from tests.infra import (
    REDIS_URL,
    Stack,
    base_settings,
    open_resources,
    postgres_database,
    running_stack,
    running_workers,
    wait_for_job,
)

IMAGE = image_job("o")


@pytest.fixture
def queue_only_stack() -> Iterator[Stack]:
    """An API with no worker, on a database of its own: the outbox looks at every job in it."""
    with postgres_database() as url:
        settings = base_settings(url, outbox_grace_seconds=1)
        with running_stack(settings, embedded_worker=False) as stack:
            yield stack


def _forget_in_redis(namespace: str, job_ids: list[str]) -> None:
    """What a Redis restart without persistence does to these jobs."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for job_id in job_ids:
            client.delete(job_key(job_id))
            client.zrem(queue_name(namespace), job_id)
    finally:
        client.close()


async def test_lost_jobs_are_queued_again_and_finish(queue_only_stack: Stack) -> None:
    settings = queue_only_stack.settings
    token = queue_only_stack.new_key()
    async with queue_only_stack.client(token) as client:
        ids = [(await client.post("/v1/jobs", json=IMAGE)).json()["id"] for _ in range(4)]
    lost_queued, lost_running, alive_running = ids[:2], ids[2], ids[3]
    _forget_in_redis(settings.redis_namespace, ids)
    async with open_resources(settings) as res:
        async with res.sessionmaker() as session:
            # One "running" job whose worker died long ago, one whose worker still beats.
            await session.exec(
                update(Job)
                .where(col(Job.id) == lost_running)
                .values(status="running", heartbeat_at=utcnow() - timedelta(minutes=5))
            )
            await session.exec(
                update(Job)
                .where(col(Job.id) == alive_running)
                .values(status="running", heartbeat_at=utcnow())
            )
            await session.commit()
        # Committed just now: inside the grace period, nothing is touched yet.
        fresh = replace(settings, outbox_grace_seconds=3600)
        async with open_resources(fresh) as early:
            assert await outbox.recover_jobs(early) == outbox.Recovery(0, 0)
        await asyncio.sleep(1.1)
        assert await outbox.recover_jobs(res) == outbox.Recovery(queued=2, running=1)
        # Queued again once: a second pass finds them in Redis.
        assert await outbox.recover_jobs(res) == outbox.Recovery(0, 0)
        async with res.sessionmaker() as session:
            await session.exec(
                update(Job).where(col(Job.id) == alive_running).values(status="queued")
            )
            await session.commit()

    with running_workers(settings):
        async with queue_only_stack.client(token) as client:
            for job_id in [*lost_queued, lost_running]:
                job = await wait_for_job(client, job_id, timeout=30)
                assert job["status"] == "succeeded", job
            # The one that looked alive was put back to queued with no arq job: the worker's
            # own outbox pass (on start, then every 10 s) picks it up.
            job = await wait_for_job(client, alive_running, timeout=30)
            assert job["status"] == "succeeded", job
