"""Graceful shutdown. SIGTERM on a worker: it takes no new job, lets running ones finish within
its grace period, and leaves the rest to run again elsewhere. SIGTERM on the API: open SSE
streams end cleanly and the process exits promptly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.builders import free_port, image_job
from tests.infra import (
    ADMIN_KEY,
    ROOT,
    Stack,
    base_settings,
    drop_namespace,
    running_stack,
    settings_env,
    start_worker_process,
    wait_for_job,
    worker_log,
)

IMAGE = image_job("g")


@pytest.fixture
def api_stack(pg_url: str) -> Iterator[Stack]:
    settings = base_settings(pg_url, job_lease_seconds=2)
    with running_stack(settings, embedded_worker=False) as stack:
        yield stack


async def test_sigterm_lets_running_jobs_finish_and_takes_no_new_one(api_stack: Stack) -> None:
    settings = api_stack.settings
    token = api_stack.new_key()
    worker = start_worker_process(
        settings,
        MEDIAGATE_LOCAL_LATENCY_SECONDS="3",
        MEDIAGATE_WORKER_SHUTDOWN_GRACE_SECONDS="20",
    )
    try:
        async with api_stack.client(token) as client:
            job_id = (await client.post("/v1/jobs", json=IMAGE)).json()["id"]
            await wait_for_job(client, job_id, until=frozenset({"running"}), timeout=30)
            worker.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            later = (await client.post("/v1/jobs", json=IMAGE)).json()["id"]
            finished = await wait_for_job(client, job_id, timeout=30)
            exit_code = await asyncio.to_thread(worker.wait, 30)
            untouched = (await client.get(f"/v1/jobs/{later}")).json()
    finally:
        if worker.poll() is None:
            worker.kill()
    assert finished["status"] == "succeeded" and finished["attempts"] == 1
    assert exit_code == 0, worker_log(worker)[-2000:]
    assert untouched["status"] == "queued"  # a stopping worker starts nothing new


async def test_sigterm_past_the_grace_period_leaves_the_job_to_another_worker(
    api_stack: Stack,
) -> None:
    settings = api_stack.settings
    token = api_stack.new_key()
    slow = start_worker_process(
        settings, MEDIAGATE_LOCAL_LATENCY_SECONDS="8", MEDIAGATE_WORKER_SHUTDOWN_GRACE_SECONDS="1"
    )
    try:
        async with api_stack.client(token) as client:
            job_id = (await client.post("/v1/jobs", json=IMAGE)).json()["id"]
            await wait_for_job(client, job_id, until=frozenset({"running"}), timeout=30)
            started = time.monotonic()
            slow.send_signal(signal.SIGTERM)
            await asyncio.to_thread(slow.wait, 30)
            stopped_after = time.monotonic() - started
            assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "running"
            fast = start_worker_process(settings, MEDIAGATE_LOCAL_LATENCY_SECONDS="0")
            try:
                finished = await wait_for_job(client, job_id, timeout=30)
            finally:
                fast.send_signal(signal.SIGTERM)
                await asyncio.to_thread(fast.wait, 30)
    finally:
        if slow.poll() is None:
            slow.kill()
    assert stopped_after < 6  # the grace period, not the job's 8 s
    assert finished["status"] == "succeeded" and finished["attempts"] == 2


async def test_sigterm_on_the_api_ends_sse_streams_cleanly(pg_url: str) -> None:
    settings = base_settings(pg_url)
    port = free_port()
    env = {**os.environ, **settings_env(settings)}
    api = subprocess.Popen(  # noqa: ASYNC220 - started once, before any awaiting
        [sys.executable, "-m", "app.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API did not start"
                await asyncio.sleep(0.1)
            created = await client.post(
                "/admin/keys",
                json={"name": "sse"},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
            token = created.json()["key"]
            auth = {"Authorization": f"Bearer {token}"}
            # No worker runs: the job stays queued and its stream stays open.
            job_id = (await client.post("/v1/jobs", json=IMAGE, headers=auth)).json()["id"]
            received: list[str] = []
            async with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=auth) as stream:
                assert stream.status_code == 200
                lines = stream.aiter_lines()
                received.append(await anext(lines))  # the stream is live
                started = time.monotonic()
                api.send_signal(signal.SIGTERM)
                async for line in lines:  # ends when the server closes it, without an error
                    received.append(line)
                ended_after = time.monotonic() - started
        exit_code = await asyncio.to_thread(api.wait, 20)
    finally:
        if api.poll() is None:
            api.kill()
        drop_namespace(settings.redis_namespace)
    assert received[0].startswith(("retry:", "id:", "event:", "data:", ":"))
    assert ended_after < 8
    # uvicorn shuts down gracefully, then re-raises the signal it caught, as a process should.
    assert exit_code in (0, -signal.SIGTERM)
