"""Waiting without polling: `Prefer: wait=N` on POST /v1/jobs and `?wait=N` on GET, woken by the
job's events; and a queued job's place in the queue with an ETA from the pool's throughput."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from app.platform.liveness import Heartbeat, beat
from tests.builders import image_job
from tests.infra import REDIS_URL, base_settings, running_stack


async def test_prefer_wait_answers_with_the_finished_job(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=True) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            answer = await client.post(
                "/v1/jobs", json=image_job("w"), headers={"Prefer": "wait=30"}
            )
    assert answer.status_code == 200, answer.text
    assert answer.headers["preference-applied"] == "wait=30"
    assert "retry-after" not in answer.headers
    job = answer.json()
    assert job["status"] == "succeeded" and len(job["outputs"]) == 1


async def test_prefer_wait_past_n_seconds_is_a_202(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            began = time.monotonic()
            answer = await client.post(
                "/v1/jobs", json=image_job("w"), headers={"Prefer": "wait=1"}
            )
            took = time.monotonic() - began
    assert answer.status_code == 202 and answer.json()["status"] == "queued"
    assert answer.headers["retry-after"] and 0.9 <= took < 5


async def test_get_with_wait_answers_when_the_status_changes(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            job = (await client.post("/v1/jobs", json=image_job("w"))).json()
            began = time.monotonic()
            waiting = asyncio.create_task(client.get(f"/v1/jobs/{job['id']}?wait=20"))
            await asyncio.sleep(0.5)
            assert not waiting.done()
            await client.post(f"/v1/jobs/{job['id']}/cancel")
            answer = await waiting
            took = time.monotonic() - began
            bad = await client.get(f"/v1/jobs/{job['id']}?wait=-1")
    assert answer.status_code == 200 and answer.json()["status"] == "canceled"
    assert took < 5  # the cancel's event woke it, not the 20 s
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "wait"


async def test_a_queued_job_shows_its_place_and_eta(pg_url: str) -> None:
    settings = base_settings(pg_url)
    with running_stack(settings, embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            ids = [
                (await client.post("/v1/jobs", json=image_job(f"q{i}"))).json()["id"]
                for i in range(3)
            ]
            before = (await client.get(f"/v1/jobs/{ids[2]}")).json()["queue"]
            # A worker that has been ending half a job a second (its heartbeat says so).
            redis = Redis.from_url(REDIS_URL)
            now = time.time()
            heartbeat = Heartbeat("w-eta", "host", 1, 4, 0, now - 600, now, throughput=0.5)
            await beat(redis, settings.redis_namespace, heartbeat, 5.0)
            await redis.aclose()
            after = (await client.get(f"/v1/jobs/{ids[2]}")).json()["queue"]
            first = (await client.get(f"/v1/jobs/{ids[0]}")).json()["queue"]
    assert before == {"position": 3, "eta_seconds": None}  # no throughput measured yet
    assert after == {"position": 3, "eta_seconds": 6}
    assert first["position"] == 1
