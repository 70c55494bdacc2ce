"""Cancel: a queued job never runs; a running job is stopped; a finished one answers 409."""

from __future__ import annotations

import asyncio

from app.platform.database import create_engine, create_sessionmaker
from tests.builders import image_job
from tests.infra import Stack, media_rows, wait_for_job
from workers.worker import build_worker

IMAGE = image_job("c")


async def test_cancel_queued_job_never_runs(api_only_stack: Stack) -> None:
    key = api_only_stack.new_key()
    async with api_only_stack.client(key) as client:
        job = (await client.post("/v1/jobs", json=IMAGE)).json()
        resp = await client.post(f"/v1/jobs/{job['id']}/cancel")
        assert resp.status_code == 200 and resp.json()["status"] == "canceled"
        # Now a worker drains the queue: the canceled job must not run.
        worker = build_worker(api_only_stack.settings, handle_signals=False, burst=True)
        try:
            await asyncio.wait_for(worker.main(), 30)
        finally:
            await worker.close()
        after = (await client.get(f"/v1/jobs/{job['id']}")).json()
    assert after["status"] == "canceled" and after["attempts"] == 0
    assert after["started_at"] is None and after["outputs"] == []


async def test_cancel_running_job_stops_it(slow_stack: Stack) -> None:
    key = slow_stack.new_key()
    async with slow_stack.client(key) as client:
        job = (await client.post("/v1/jobs", json=IMAGE)).json()
        await wait_for_job(client, job["id"], until=frozenset({"running"}))
        resp = await client.post(f"/v1/jobs/{job['id']}/cancel")
        assert resp.status_code == 200 and resp.json()["status"] == "canceled"
        await asyncio.sleep(2.5)  # longer than the job would have taken
        after = (await client.get(f"/v1/jobs/{job['id']}")).json()
        history = await client.get(f"/v1/jobs/{job['id']}/events")
    assert after["status"] == "canceled" and after["outputs"] == []
    assert await media_rows(slow_stack.settings.database_url, job["id"]) == 0
    assert history.text.rstrip().split("event: ")[-1].startswith("job.canceled")
    assert "job.succeeded" not in history.text


async def test_cancel_finished_job_is_409(stack: Stack) -> None:
    key = stack.new_key()
    async with stack.client(key) as client:
        job = (await client.post("/v1/jobs", json=IMAGE)).json()
        await wait_for_job(client, job["id"])
        resp = await client.post(f"/v1/jobs/{job['id']}/cancel")
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "job_not_cancelable"


async def test_job_whose_workers_keep_dying_fails_with_worker_lost(api_only_stack: Stack) -> None:
    from sqlalchemy import update

    from app.platform.tables import Job

    settings = api_only_stack.settings
    key = api_only_stack.new_key()
    async with api_only_stack.client(key) as client:
        job = (await client.post("/v1/jobs", json=IMAGE)).json()
        # As if every earlier attempt had died with its worker after starting.
        engine = create_engine(settings.database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                tries = settings.max_tries_for("image")
                await session.exec(
                    update(Job)
                    .where(Job.id == job["id"])  # type: ignore[arg-type]
                    .values(status="running", attempts=tries, tries=tries)
                )
                await session.commit()
        finally:
            await engine.dispose()
        worker = build_worker(settings, handle_signals=False, burst=True)
        try:
            await asyncio.wait_for(worker.main(), 30)
        finally:
            await worker.close()
        after = (await client.get(f"/v1/jobs/{job['id']}")).json()
    assert after["status"] == "failed"
    assert after["error"]["code"] == "worker_lost"
    assert after["outputs"] == []
