"""SSE: history for late subscribers, live events, resume by Last-Event-ID, close on terminal."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from httpx_sse import aconnect_sse

from tests.builders import image_job
from tests.infra import Stack, wait_for_job

IMAGE = image_job("sse")


async def _collect(
    client: httpx.AsyncClient,
    job_id: str,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
) -> list[tuple[int, str, dict[str, Any]]]:
    events = []
    async with aconnect_sse(
        client, "GET", f"/v1/jobs/{job_id}/events", headers=dict(headers or {}), params=params
    ) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for sse in source.aiter_sse():
            if not sse.data:
                continue  # a keep-alive comment (httpx-sse reports it with the last id)
            events.append((int(sse.id), sse.event, orjson.loads(sse.data)))
    return events  # the loop ends only when the server closes the stream


def _check_sequence(events: list[tuple[int, str, dict[str, Any]]], start: int = 1) -> None:
    ids = [e[0] for e in events]
    assert ids == list(range(start, start + len(ids))), ids


async def test_late_subscriber_gets_full_history_then_close(stack: Stack) -> None:
    key = stack.new_key()
    async with stack.client(key) as client:
        job = (await client.post("/v1/jobs", json=IMAGE)).json()
        await wait_for_job(client, job["id"])
        events = await asyncio.wait_for(_collect(client, job["id"]), 20)
    names = [e[1] for e in events]
    assert names[0] == "job.queued" and names[1] == "job.started"
    assert "job.output" in names and names[-1] == "job.succeeded"
    assert names.count("job.succeeded") == 1
    _check_sequence(events)
    final = events[-1][2]
    assert final["status"] == "succeeded" and final["outputs"][0]["url"].startswith("http")


async def test_live_events_and_resume_by_last_event_id(slow_stack: Stack) -> None:
    key = slow_stack.new_key()
    async with slow_stack.client(key) as client:
        job = (await client.post("/v1/jobs", json=IMAGE)).json()
        live = await asyncio.wait_for(_collect(client, job["id"]), 30)
        names = [e[1] for e in live]
        assert names[0] == "job.queued" and names[-1] == "job.succeeded"
        progress = [e[2]["progress"] for e in live if e[1] == "job.progress"]
        assert len(progress) >= 3 and progress == sorted(progress)
        _check_sequence(live)

        resumed = await asyncio.wait_for(
            _collect(client, job["id"], headers={"Last-Event-ID": "3"}), 20
        )
        assert [e[0] for e in resumed] == [e[0] for e in live if e[0] > 3]
        by_query = await asyncio.wait_for(_collect(client, job["id"], params={"after": 2}), 20)
        assert by_query[0][0] == 3 and by_query[-1][1] == "job.succeeded"


async def test_subscriber_mid_job_sees_every_event_once(slow_stack: Stack) -> None:
    key = slow_stack.new_key()
    async with slow_stack.client(key) as client:
        job = (await client.post("/v1/jobs", json=IMAGE)).json()
        await wait_for_job(client, job["id"], predicate=lambda j: j["progress"] > 0)
        events = await asyncio.wait_for(_collect(client, job["id"]), 30)
    _check_sequence(events)
    assert events[-1][1] == "job.succeeded"


async def test_events_of_unknown_job_is_json_404(stack: Stack) -> None:
    key = stack.new_key()
    async with stack.client(key) as client:
        resp = await client.get("/v1/jobs/job_nope/events")
    assert resp.status_code == 404
    assert resp.json()["error"]["type"] == "not_found_error"


async def test_bad_last_event_id_is_400(stack: Stack) -> None:
    key = stack.new_key()
    async with stack.client(key) as client:
        job = (await client.post("/v1/jobs", json=IMAGE)).json()
        resp = await client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "abc"})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "Last-Event-ID"


async def test_many_subscribers_share_one_redis_reader(slow_stack: Stack) -> None:
    """The number of Redis connections must not grow with the number of SSE clients."""
    import redis.asyncio as aredis

    from tests.infra import REDIS_URL

    key = slow_stack.new_key()
    probe = aredis.Redis.from_url(REDIS_URL)
    try:
        async with slow_stack.client(key) as client:
            job = (await client.post("/v1/jobs", json=IMAGE)).json()
            before = len(await probe.client_list())
            tasks = [asyncio.create_task(_collect(client, job["id"])) for _ in range(20)]
            await asyncio.sleep(0.7)
            during = len(await probe.client_list())
            results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        await probe.aclose()
    assert all(r[-1][1] == "job.succeeded" for r in results)
    assert during - before < 5, (before, during)
