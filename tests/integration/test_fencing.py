"""Fencing (issue 18): a worker that lost its job must not write. Worker A reaches PostgreSQL,
Redis and S3 only through blackhole proxies (connections stay open, nothing flows); while it runs
a job the proxies stop, worker B (connected directly) takes the job over once A's lease lapses,
and the proxies heal — after B succeeded, while B runs, or with A cut off mid-upload. A worker
paused with SIGSTOP past two leases is the same story. And a key deleted during a slow upload
keeps nothing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from app.media import lifecycle
from app.platform.resources import Resources
from app.platform.settings import Settings
from tests.blackhole import Blackhole, blackholes
from tests.builders import image_job
from tests.emulators.receiver import Receiver
from tests.infra import (
    Stack,
    base_settings,
    open_resources,
    running_stack,
    running_workers,
    s3_changes,
    wait_for_job,
    worker_log,
)
from tests.media_checks import declared_png

LEASE = 3
IMAGE = image_job("f")


@pytest.fixture
def fence_settings(pg_url: str, s3_endpoint: str) -> Settings:
    return base_settings(
        pg_url,
        job_lease_seconds=LEASE,
        # A job outlasts the lease and shows progress at once (a step every half second).
        local_latency_seconds=3.0,
        local_progress_steps=6,
        allow_private_urls=True,
        **s3_changes(s3_endpoint, f"fence-{secrets.token_hex(4)}"),
    )


@pytest.fixture
async def res(fence_settings: Settings) -> AsyncIterator[Resources]:
    async with open_resources(fence_settings) as resources:
        yield resources


def _through(settings: Settings, pg: Blackhole, redis: Blackhole, s3: Blackhole) -> dict[str, str]:
    """The environment of a worker that reaches every store through the proxies."""
    assert settings.s3_endpoint_url is not None
    return {
        "MEDIAGATE_DATABASE_URL": pg.url_for(settings.database_url),
        "MEDIAGATE_REDIS_URL": redis.url_for(settings.redis_url),
        "MEDIAGATE_S3_ENDPOINT_URL": s3.url_for(settings.s3_endpoint_url),
    }


async def _events(client: httpx.AsyncClient, job_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    events = []
    async with aconnect_sse(client, "GET", f"/v1/jobs/{job_id}/events") as source:
        async for sse in source.aiter_sse():
            if sse.data:
                events.append((int(sse.id), sse.event, orjson.loads(sse.data)))
    return events


async def _submit(client: httpx.AsyncClient, receiver: Receiver) -> dict[str, Any]:
    webhook = {"url": receiver.url + "/hook", "events": ["job.succeeded", "job.failed"]}
    resp = await client.post("/v1/jobs", json={**IMAGE, "webhook": webhook})
    assert resp.status_code == 202, resp.text
    job: dict[str, Any] = resp.json()
    return job


async def _check_outcome(
    stack: Stack,
    res: Resources,
    client: httpx.AsyncClient,
    receiver: Receiver,
    job_id: str,
    seen: dict[str, Any],
) -> None:
    """What a client saw at success still holds, and nothing of the stale attempt shows."""
    job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    assert [(o["id"], o["sha256"], o["bytes"]) for o in job["outputs"]] == [
        (o["id"], o["sha256"], o["bytes"]) for o in seen["outputs"]
    ]
    for output in job["outputs"]:
        data = (await client.get(output["url"], follow_redirects=True)).content
        assert hashlib.sha256(data).hexdigest() == output["sha256"]
    events = await asyncio.wait_for(_events(client, job_id), 20)
    names = [name for _, name, _ in events]
    assert sum(name in ("job.succeeded", "job.failed", "job.canceled") for name in names) == 1
    assert names[-1] == "job.succeeded"
    takeover = next(i for i, (_, name, data) in enumerate(events) if data["attempts"] == 2)
    assert events[takeover][1] == "job.started"
    assert all(data["attempts"] == 2 for _, _, data in events[takeover:]), "stale events"
    progress = [data["progress"] for _, name, data in events[takeover:] if name == "job.progress"]
    assert progress == sorted(progress)
    # One terminal webhook (given time for a stale one to show up).
    await asyncio.sleep(1.5)
    terminal = [orjson.loads(body) for _, body in receiver.received]
    assert [(p["type"], p["data"]["id"]) for p in terminal] == [("job.succeeded", job_id)]
    # Usage equals the bucket: one object per output, the recorded ones.
    usage = (await client.get("/v1/usage")).json()
    in_bucket = {
        info.key: info.size async for info in res.store.list_objects(usage["key_id"] + "/")
    }
    assert len(in_bucket) == len(job["outputs"])
    assert sum(in_bucket.values()) == sum(o["bytes"] for o in job["outputs"])
    assert (usage["bytes"], usage["objects"]) == (sum(in_bucket.values()), len(in_bucket)), usage


async def _settled(late: Any, job_id: str) -> None:
    """Until the late worker has given the job up (its attempt's end says it was superseded),
    and a second more for anything it might still do."""
    deadline = time.monotonic() + 30
    while f"job.superseded job_id={job_id}" not in worker_log(late):
        assert time.monotonic() < deadline, worker_log(late)[-3000:]
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)


async def _partition(
    stack: Stack,
    settings: Settings,
    res: Resources,
    receiver: Receiver,
    *,
    heal_when: str,
) -> None:
    token = stack.new_key()
    with blackholes(settings.database_url, settings.redis_url, settings.s3_endpoint_url or "") as (
        proxies
    ):
        pg, rd, s3 = proxies
        env = _through(settings, pg, rd, s3)

        def cut() -> None:
            for proxy in proxies:
                proxy.pause()

        async with stack.client(token) as client:
            with running_workers(settings, **env) as [late]:
                job = await _submit(client, receiver)
                if heal_when == "mid-upload":
                    s3.pause_on = b"PUT "  # A is cut off as its upload starts
                    s3.on_pause = cut
                    await wait_for_job(
                        client, job["id"], timeout=30, predicate=lambda j: j["attempts"] == 1
                    )
                    deadline = time.monotonic() + 30
                    while s3.pause_on is not None:
                        assert time.monotonic() < deadline, "A never uploaded"
                        await asyncio.sleep(0.05)
                else:
                    await wait_for_job(
                        client, job["id"], timeout=30, predicate=lambda j: j["progress"] > 0
                    )
                    cut()
                with running_workers(settings) as [taker]:
                    if heal_when == "while-b-runs":
                        await wait_for_job(
                            client, job["id"], timeout=30, predicate=lambda j: j["attempts"] == 2
                        )
                        for proxy in proxies:
                            proxy.resume()
                    seen = await wait_for_job(client, job["id"], timeout=60)
                    assert seen["status"] == "succeeded", seen
                    for proxy in proxies:
                        proxy.resume()
                    await _settled(late, job["id"])  # the late worker comes back
                    await _check_outcome(stack, res, client, receiver, job["id"], seen)
                    taker.send_signal(signal.SIGTERM)
                    taker.wait(30)
                # The late worker is alive and takes new jobs.
                assert late.poll() is None
                fresh = (await client.post("/v1/jobs", json=IMAGE)).json()
                done = await wait_for_job(client, fresh["id"], timeout=60)
                assert done["status"] == "succeeded" and done["attempts"] == 1
                log = worker_log(late)
                assert "job.lease_lost" in log or "job.superseded" in log, log[-3000:]


@pytest.mark.parametrize("heal_when", ["after-b-succeeded", "while-b-runs", "mid-upload"])
async def test_a_partitioned_worker_writes_nothing_after_a_takeover(
    fence_settings: Settings, res: Resources, hooks: Receiver, heal_when: str
) -> None:
    with running_stack(fence_settings, embedded_worker=False) as stack:
        await _partition(stack, fence_settings, res, hooks, heal_when=heal_when)


async def test_a_paused_worker_writes_nothing_after_a_takeover(
    fence_settings: Settings, res: Resources, hooks: Receiver
) -> None:
    receiver = hooks
    with running_stack(fence_settings, embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            with running_workers(fence_settings) as [late]:
                job = await _submit(client, receiver)
                await wait_for_job(
                    client, job["id"], timeout=30, predicate=lambda j: j["progress"] > 0
                )
                os.kill(late.pid, signal.SIGSTOP)
                try:
                    with running_workers(fence_settings) as [taker]:
                        try:
                            await wait_for_job(
                                client,
                                job["id"],
                                timeout=30,
                                predicate=lambda j: j["attempts"] == 2,
                            )
                        except AssertionError as exc:
                            raise AssertionError(
                                f"{exc}: no takeover\n{worker_log(taker)}"
                            ) from exc
                        await asyncio.sleep(LEASE * 2)  # paused for two leases and more
                        os.kill(late.pid, signal.SIGCONT)
                        seen = await wait_for_job(client, job["id"], timeout=60)
                        await _settled(late, job["id"])
                        await _check_outcome(stack, res, client, receiver, job["id"], seen)
                        taker.send_signal(signal.SIGTERM)
                        taker.wait(30)
                finally:
                    os.kill(late.pid, signal.SIGCONT)
                assert late.poll() is None
                fresh = (await client.post("/v1/jobs", json=IMAGE)).json()
                done = await wait_for_job(client, fresh["id"], timeout=60)
                assert done["status"] == "succeeded"


def _slow_png(total: int, seconds: float) -> Callable[[], AsyncIterator[bytes]]:
    """A multipart body holding a PNG of `total` bytes (a real 64x64 header, then padding that
    nothing reads), sent over `seconds`."""
    boundary = "fence-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    header = declared_png(64, 64)
    png = header + secrets.token_bytes(total - len(header))
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        pieces = 12
        step = len(png) // pieces + 1
        for start in range(0, len(png), step):
            yield png[start : start + step]
            await asyncio.sleep(seconds / pieces)
        yield tail

    return body


async def test_a_key_deleted_during_a_slow_upload_keeps_nothing(
    fence_settings: Settings, res: Resources
) -> None:
    settings = replace(fence_settings, local_latency_seconds=0.0)
    with running_stack(settings, embedded_worker=True) as stack:
        with stack.admin() as admin:
            created = admin.post("/admin/keys", json={"name": "doomed"}).json()
        key_id, token = created["id"], created["key"]
        async with stack.client(token) as client:
            upload = asyncio.create_task(
                client.post(
                    "/v1/media",
                    content=_slow_png(1_500_000, 4.0)(),
                    headers={"Content-Type": "multipart/form-data; boundary=fence-boundary"},
                )
            )
            await asyncio.sleep(1.0)
            with stack.admin() as admin:
                assert admin.delete(f"/admin/keys/{key_id}").status_code == 200
                deadline = time.monotonic() + 20
                while (admin.get(f"/admin/keys/{key_id}").json()["purge"] or {}).get(
                    "status"
                ) != "done":
                    assert time.monotonic() < deadline, "the purge did not finish"
                    await asyncio.sleep(0.1)
            assert not upload.done(), "the upload ended before the purge: the test proves nothing"
            answer = await upload
        assert answer.status_code == 401, answer.text
        assert set(answer.json()["error"]) == {"message", "type", "code", "param"}

        async def left() -> tuple[dict[str, int], Any]:
            objects = {i.key: i.size async for i in res.store.list_objects(f"{key_id}/")}
            with stack.admin() as admin:
                usage = admin.get(f"/admin/keys/{key_id}/usage").json()
            return objects, usage

        objects, usage = await left()
        assert objects == {}
        assert usage["bytes"] == 0 and usage["objects"] == 0, usage
        # Again after the crons: the purge resumed, the expiry sweep, reconciliation.
        await lifecycle.purge_key(res, key_id)
        await lifecycle.sweep_expired(res)
        await lifecycle.reconcile(res, fix=True)
        objects, usage = await left()
        assert objects == {}
        assert usage["bytes"] == 0 and usage["objects"] == 0, usage
