"""Limits and scheduling: requests per minute (atomic under concurrent requests), a full queue,
deadlines, priority order, fair share between keys, and a provider's concurrency cap holding
across two worker processes."""

from __future__ import annotations

import asyncio
from datetime import datetime

from tests.builders import image_job
from tests.infra import (
    base_settings,
    running_stack,
    running_workers,
    wait_for_job,
)

IMAGE = image_job("q")


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_requests_per_minute_are_counted_atomically(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=False) as stack:
        token = stack.new_key("rpm", requests_per_minute=10)
        async with stack.client(token) as client:
            answers = await asyncio.gather(*(client.get("/v1/usage") for _ in range(30)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 10 and statuses.count(429) == 20
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["retry-after"]) <= 60


async def test_answers_say_where_the_key_stands_in_its_window(pg_url: str) -> None:
    """OpenAI's `x-ratelimit-*-requests` headers on every answer of a limited key (a refusal
    too); a key without a limit gets none."""
    settings = base_settings(pg_url, requests_per_minute=None)
    with running_stack(settings, embedded_worker=False) as stack:
        token = stack.new_key("rpm3", requests_per_minute=3)
        async with stack.client(token) as client:
            answers = [await client.get("/v1/usage") for _ in range(3)]
            answers.append(await client.post("/v1/jobs", json=IMAGE))
        async with stack.client(stack.new_key()) as unlimited:
            free = await unlimited.get("/v1/usage")
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    for answer in answers:
        assert answer.headers["x-ratelimit-limit-requests"] == "3"
        reset = answer.headers["x-ratelimit-reset-requests"]
        assert reset.endswith("s") and 0 < float(reset[:-1]) <= 60, reset
    remaining = [a.headers["x-ratelimit-remaining-requests"] for a in answers]
    assert remaining == ["2", "1", "0", "0"]
    assert int(answers[3].headers["retry-after"]) >= round(float(reset[:-1]))
    assert not any(name.startswith("x-ratelimit") for name in free.headers)


async def test_a_full_queue_refuses_at_once(pg_url: str) -> None:
    with running_stack(base_settings(pg_url, max_queue_length=3), embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            answers = [await client.post("/v1/jobs", json=IMAGE) for _ in range(5)]
            listed = (await client.get("/v1/jobs")).json()["data"]
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
    assert answers[3].json()["error"]["code"] == "queue_full"
    assert "retry-after" in answers[3].headers
    assert len(listed) == 3


async def test_a_job_past_its_deadline_never_reaches_the_provider(pg_url: str) -> None:
    settings = base_settings(pg_url)
    with running_stack(settings, embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            late = (await client.post("/v1/jobs", json={**IMAGE, "deadline_seconds": 1})).json()
            in_time = (
                await client.post("/v1/jobs", json={**IMAGE, "deadline_seconds": 600})
            ).json()
            bad = await client.post("/v1/jobs", json={**IMAGE, "deadline_seconds": 0})
            await asyncio.sleep(1.5)
            with running_workers(settings):
                late_done = await wait_for_job(client, late["id"], timeout=30)
                in_time_done = await wait_for_job(client, in_time["id"], timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "deadline_seconds"
    assert late["deadline_at"] is not None
    assert late_done["status"] == "canceled", late_done
    assert late_done["error"]["code"] == "deadline_exceeded"
    assert late_done["attempts"] == 0 and late_done["started_at"] is None
    assert in_time_done["status"] == "succeeded"


async def test_priorities_are_served_in_order(pg_url: str) -> None:
    settings = base_settings(pg_url, local_latency_seconds=0.1)
    with running_stack(settings, embedded_worker=False) as stack:
        with stack.admin() as admin:
            plain = admin.post("/admin/keys", json={"name": "plain"}).json()["key"]
            created = admin.post("/admin/keys", json={"name": "vip", "max_priority": "high"})
            assert created.json()["max_priority"] == "high"
        async with stack.client(plain) as client:
            # `high` is the admin's to give: by default a key submits at `normal` at most.
            refused = await client.post("/v1/jobs", json={**IMAGE, "priority": "high"})
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "priority_not_allowed"
            assert (await client.get("/v1/jobs")).json()["data"] == []
        token = created.json()["key"]
        async with stack.client(token) as client:
            submitted = []
            for priority in ("low", "normal", "high") * 3:
                job = (await client.post("/v1/jobs", json={**IMAGE, "priority": priority})).json()
                submitted.append((job["id"], priority))
            with running_workers(settings, MEDIAGATE_WORKER_CONCURRENCY="1"):
                done = [await wait_for_job(client, job_id, timeout=60) for job_id, _ in submitted]
    by_start = sorted((_at(job["started_at"]), job["priority"]) for job in done)
    order = [priority for _, priority in by_start]
    assert order == ["high"] * 3 + ["normal"] * 3 + ["low"] * 3
    assert done[0]["priority"] == "low"


async def test_a_busy_key_does_not_starve_another(pg_url: str) -> None:
    settings = base_settings(pg_url, local_latency_seconds=0.2)
    with running_stack(settings, embedded_worker=False) as stack:
        busy, quiet = stack.new_key("busy"), stack.new_key("quiet")
        async with stack.client(busy) as b, stack.client(quiet) as q:
            flood = [(await b.post("/v1/jobs", json=IMAGE)).json()["id"] for _ in range(40)]
            single = (await q.post("/v1/jobs", json=IMAGE)).json()["id"]
            with running_workers(settings, MEDIAGATE_WORKER_CONCURRENCY="2"):
                mine = await wait_for_job(q, single, timeout=60)
                theirs = [(await b.get(f"/v1/jobs/{job_id}")).json() for job_id in flood]
    started_before = [
        j for j in theirs if j["started_at"] and _at(j["started_at"]) < _at(mine["started_at"])
    ]
    print(f"\nfair share: {len(started_before)} of the busy key's 40 jobs started first")
    assert mine["status"] == "succeeded"
    assert len(started_before) <= 4  # a few job-lengths with 2 slots, not 40


async def test_a_provider_cap_holds_across_two_workers(pg_url: str) -> None:
    settings = base_settings(pg_url, local_latency_seconds=0.8, provider_concurrency="local=2")
    with running_stack(settings, embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            ids = [(await client.post("/v1/jobs", json=IMAGE)).json()["id"] for _ in range(8)]
            with running_workers(settings, 2, MEDIAGATE_WORKER_CONCURRENCY="4"):
                done = [await wait_for_job(client, job_id, timeout=90) for job_id in ids]
    assert {j["status"] for j in done} == {"succeeded"}
    spans = [(_at(j["started_at"]), _at(j["finished_at"])) for j in done]
    overlap = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    print(f"\nprovider cap local=2 with 2 workers x 4 slots: at most {overlap} jobs at once")
    assert overlap == 2


async def test_concurrent_submits_respect_the_key_concurrency_limit(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=False) as stack:
        with stack.admin() as admin:
            token = admin.post("/admin/keys", json={"name": "c", "max_concurrent_jobs": 3}).json()[
                "key"
            ]
        async with stack.client(token) as client:
            answers = await asyncio.gather(
                *(client.post("/v1/jobs", json=IMAGE) for _ in range(12))
            )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202] * 3 + [429] * 9
    codes = {a.json()["error"]["code"] for a in answers if a.status_code == 429}
    assert codes == {"concurrency_limit_exceeded"}


async def test_a_key_holds_a_bounded_number_of_streams_and_waits(pg_url: str) -> None:
    settings = base_settings(
        pg_url, max_streams_per_key=2, max_waits_per_key=1, local_latency_seconds=1.0
    )
    with running_stack(settings, embedded_worker=True) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            job = (await client.post("/v1/jobs", json=IMAGE)).json()
            path = f"/v1/jobs/{job['id']}/events"
            async with client.stream("GET", path), client.stream("GET", path):
                third = await client.get(path)
            assert third.status_code == 429, third.text
            assert third.json()["error"]["code"] == "too_many_streams"
            assert third.headers["retry-after"] == "5"
            await asyncio.sleep(0.2)
            async with client.stream("GET", path) as again:  # closed ones were given back
                assert again.status_code == 200
            # One request of the key waits for its image; a second one is refused, unsubmitted.
            body = {"model": "local-image", "prompt": "wait", "size": "256x256"}
            first = asyncio.create_task(client.post("/v1/images/generations", json=body))
            await asyncio.sleep(0.3)
            second = await client.post("/v1/images/generations", json=body)
            assert second.status_code == 429 and second.json()["error"]["code"] == "too_many_waits"
            assert (await first).status_code == 200
            listed = (await client.get("/v1/jobs")).json()["data"]
            assert len(listed) == 2  # the first job and the waiting one; nothing for the refused
