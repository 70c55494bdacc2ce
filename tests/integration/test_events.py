"""SSE: history for late subscribers, live events, resume by Last-Event-ID, close on terminal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
    on_first: Callable[[], None] | None = None,
) -> list[tuple[int, str, dict[str, Any]]]:
    """Every event of the stream until the server closes it; `on_first` is called once the
    first event came (or the stream failed before one), so a caller can pace how many open at
    once."""
    events = []
    try:
        async with aconnect_sse(
            client, "GET", f"/v1/jobs/{job_id}/events", headers=dict(headers or {}), params=params
        ) as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            async for sse in source.aiter_sse():
                if not sse.data:
                    continue  # a keep-alive comment (httpx-sse reports it with the last id)
                events.append((int(sse.id), sse.event, orjson.loads(sse.data)))
                if on_first is not None and len(events) == 1:
                    on_first()
    finally:
        if on_first is not None and not events:
            on_first()
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


async def test_many_subscribers_share_one_redis_reader(pg_url: str) -> None:
    """However many SSE clients follow a job, a stream holds no Redis connection of its own: the
    API's connections (named `<namespace>:api`: its one event reader and the commands in flight)
    stay few while 60 streams are open, and every client still gets every event.

    The streams open at most four at a time (each waits for its first event before the next
    goes): the pool is unbounded by design (`open_redis`), so 60 requests landing in the same
    instant may each take a connection for their commands, and that burst, not the streams held
    open, would be what the count measured."""
    import redis.asyncio as aredis

    from app.platform.redis_keys import connection_name
    from tests.infra import REDIS_URL, base_settings, running_stack

    settings = base_settings(pg_url, local_latency_seconds=4.0, local_progress_steps=4)
    name = connection_name(settings.redis_namespace, "api")
    probe = aredis.Redis.from_url(REDIS_URL)
    counts: list[int] = []

    async def count() -> int:
        return sum(c["name"] == name for c in await probe.client_list())

    async def sample(until: asyncio.Future[Any]) -> None:
        while not until.done():
            counts.append(await count())
            await asyncio.sleep(0.05)

    try:
        with running_stack(settings, embedded_worker=True) as stack:
            async with stack.client(stack.new_key()) as client:
                job = (await client.post("/v1/jobs", json=IMAGE)).json()
                before = await count()
                pace = asyncio.Semaphore(4)
                loop = asyncio.get_running_loop()
                opened: list[float] = []
                ended: list[float] = []

                def first() -> None:
                    opened.append(loop.time())
                    pace.release()

                async def follow() -> list[tuple[int, str, dict[str, Any]]]:
                    await pace.acquire()
                    events = await _collect(client, job["id"], on_first=first)
                    ended.append(loop.time())
                    return events

                streams = asyncio.gather(*(follow() for _ in range(60)))
                sampler = asyncio.create_task(sample(streams))
                results = await asyncio.wait_for(streams, 60)
                await sampler
    finally:
        await probe.aclose()
    assert before > 0, "found none of the API's named connections"
    assert max(opened) < min(ended), "the 60 streams were never all open at once"
    assert max(counts) < 15, counts  # 60 streams: one connection each would be 60
    for events in results:
        assert events[-1][1] == "job.succeeded"
        _check_sequence(events)


async def test_the_retry_hint_comes_with_the_first_event(stack: Stack) -> None:
    """httpx-sse delivers a lone `retry:` frame as an event with empty data; the hint rides on
    the first event's frame instead, so a client parsing every event's data as JSON never meets
    an empty one."""
    async with stack.client(stack.new_key()) as client:
        job = (await client.post("/v1/jobs", json=IMAGE)).json()
        await wait_for_job(client, job["id"])
        async with aconnect_sse(client, "GET", f"/v1/jobs/{job['id']}/events") as source:
            first = await anext(source.aiter_sse())
        raw = await client.get(f"/v1/jobs/{job['id']}/events")
    assert first.retry == 1000 and first.event == "job.queued"
    assert orjson.loads(first.data)["id"] == job["id"]
    assert raw.text.startswith("retry: 1000\r\nid: 1\r\n"), raw.text[:80]
