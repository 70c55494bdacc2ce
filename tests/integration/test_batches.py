"""Batches: up to 1,000 jobs at once (a JSON array, or OpenAI Batch API JSONL), all or none,
idempotent as a whole; counts by status, one SSE stream for the whole batch (resumable), cancel,
and results as JSONL; a batch's jobs take their key's fair share of the queue."""

from __future__ import annotations

import re
from typing import Any

import httpx
import orjson
from httpx_sse import aconnect_sse

from tests.builders import image_job
from tests.infra import base_settings, running_stack


def _items(count: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [
        {**image_job(f"{prefix}{i}", size="256x256"), "custom_id": f"{prefix}-{i}"}
        for i in range(count)
    ]


async def _events(
    client: httpx.AsyncClient, batch_id: str, last: str | None = None
) -> list[tuple[str, str, dict[str, Any]]]:
    headers = {"Last-Event-ID": last} if last else {}
    found = []
    async with aconnect_sse(
        client, "GET", f"/v1/batches/{batch_id}/events", headers=headers, timeout=60
    ) as source:
        async for sse in source.aiter_sse():
            if not sse.data:
                continue  # the retry hint, a ping
            found.append((sse.id, sse.event, orjson.loads(sse.data)))
    return found


def _unsigned(events: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    """The events with their signed links' `exp` and `sig` left out: a link is signed when its
    event is sent, so the same event read a second later carries a later expiry."""
    return orjson.loads(re.sub(rb"\?exp=\d+&sig=[\w-]+", b"", orjson.dumps(events)))


async def test_a_batch_runs_streams_and_gives_its_results(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=True) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            headers = {"Idempotency-Key": "batch-1"}
            answer = await client.post("/v1/batches", json=_items(5), headers=headers)
            assert answer.status_code == 202, answer.text
            batch = answer.json()
            assert batch["request_counts"]["total"] == 5
            assert batch["urls"]["events"].endswith(f"/v1/batches/{batch['id']}/events")
            events = await _events(client, batch["id"])
            again = await client.post("/v1/batches", json=_items(5), headers=headers)
            resumed = await _events(client, batch["id"], last="3")
            done = (await client.get(f"/v1/batches/{batch['id']}")).json()
            results = await client.get(f"/v1/batches/{batch['id']}/results")
            jobs = (await client.get("/v1/jobs?limit=100")).json()["data"]
            listed = (await client.get("/v1/batches")).json()["data"]
    assert [e[0] for e in events] == [str(i) for i in range(1, 7)]
    assert [e[1] for e in events] == ["job.succeeded"] * 5 + ["batch.completed"]
    assert sorted(e[2]["custom_id"] for e in events[:5]) == [f"r-{i}" for i in range(5)]
    assert all(e[2]["batch_id"] == batch["id"] and e[2]["outputs"] for e in events[:5])
    assert again.status_code == 202 and again.json()["id"] == batch["id"]  # no second batch
    assert len(jobs) == 5 and [b["id"] for b in listed] == [batch["id"]]
    assert _unsigned(resumed) == _unsigned(events[3:])  # after event 3: the rest, once each
    assert done["status"] == "completed" and done["request_counts"]["succeeded"] == 5
    assert results.headers["content-type"].startswith("application/jsonl")
    lines = [orjson.loads(line) for line in results.content.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == [f"r-{i}" for i in range(5)]
    assert all(line["status"] == "succeeded" and line["outputs"][0]["url"] for line in lines)


async def test_openai_jsonl_and_all_or_nothing(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            lines = [
                {"custom_id": f"l{i}", "method": "POST", "url": "/v1/jobs", "body": item}
                for i, item in enumerate(image_job(f"j{i}") for i in range(3))
            ]
            lines[2]["body"] = {**lines[2]["body"], "input": {"prompt": "x", "size": "3x3"}}
            jsonl = b"\n".join(orjson.dumps(line) for line in lines)
            jsonl_headers = {"Content-Type": "application/jsonl"}
            bad = await client.post("/v1/batches", content=jsonl, headers=jsonl_headers)
            lines[2]["body"]["input"]["size"] = "256x256"
            jsonl = b"\n".join(orjson.dumps(line) for line in lines)
            good = await client.post("/v1/batches", content=jsonl, headers=jsonl_headers)
            twice = await client.post("/v1/batches", json=_items(2) + _items(1))
            too_many = await client.post("/v1/batches", json=_items(1001))
            empty = await client.post("/v1/batches", json=[])
            jobs = (await client.get("/v1/jobs?limit=100")).json()["data"]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "requests[2].input.size"
    assert good.status_code == 202 and good.json()["request_counts"]["queued"] == 3
    assert twice.status_code == 400 and twice.json()["error"]["param"] == "requests[2].custom_id"
    assert too_many.status_code == 400 and "1000" in too_many.json()["error"]["message"]
    assert empty.status_code == 400
    assert sorted(j["custom_id"] for j in jobs) == ["l0", "l1", "l2"]  # the bad ones made none


async def test_canceling_a_batch_ends_its_stream(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            batch = (await client.post("/v1/batches", json=_items(4))).json()
            canceled = (await client.post(f"/v1/batches/{batch['id']}/cancel")).json()
            events = await _events(client, batch["id"])
            other = stack.new_key("other")
            async with stack.client(other) as stranger:
                hidden = await stranger.get(f"/v1/batches/{batch['id']}")
    assert canceled["status"] == "canceled" and canceled["request_counts"]["canceled"] == 4
    assert [e[1] for e in events] == ["job.canceled"] * 4 + ["batch.completed"]
    assert hidden.status_code == 404


async def test_a_batch_takes_its_keys_fair_share(pg_url: str) -> None:
    with running_stack(base_settings(pg_url), embedded_worker=False) as stack:
        big, small = stack.new_key("big"), stack.new_key("small")
        async with stack.client(big) as a, stack.client(small) as b:
            assert (await a.post("/v1/batches", json=_items(60))).status_code == 202
            single = (await b.post("/v1/jobs", json=image_job("alone"))).json()
            place = (await b.get(f"/v1/jobs/{single['id']}")).json()["queue"]
    # Fair share pushed most of the batch back: the other key's job is served early on.
    assert place["position"] <= 5
