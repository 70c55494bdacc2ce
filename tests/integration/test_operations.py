"""What an operator sees: Prometheus metrics (the API's, a worker's, the pool's state), the live
workers (heartbeats, /admin/workers, /readyz, `mediagate worker --check`)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from app.platform.vocabulary import Priority
from tests.builders import free_port, image_job
from tests.emulators.receiver import Receiver
from tests.infra import (
    ADMIN_KEY,
    ROOT,
    base_settings,
    postgres_database,
    running_stack,
    running_workers,
    settings_env,
    wait_for_job,
)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series (with at least these labels) in Prometheus text, summed over
    the rest of its labels; None when absent."""
    total, seen = 0.0, False
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{.*\}})? (\S+)$", line)
        if match is None:
            continue
        found = match.group(1) or ""
        if all(f'{key}="{value}"' in found for key, value in labels.items()):
            total += float(match.group(2))
            seen = True
    return total if seen else None


def check(settings_env_: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "--check"],
        cwd=ROOT,
        env={**os.environ, **settings_env_},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def own_database() -> Iterator[str]:
    """A database of this test's own: the queue gauges count every queued job in it."""
    with postgres_database() as url:
        yield url


async def test_metrics_and_liveness_of_a_pool(hooks: Receiver, own_database: str) -> None:
    url = own_database
    if True:
        settings = base_settings(
            url,
            worker_heartbeat_seconds=0.5,
            default_max_priority=Priority.HIGH,
            allow_private_urls=True,
        )
        env = settings_env(settings)
        with running_stack(settings, embedded_worker=False) as stack:
            token = stack.new_key()
            async with stack.client(token) as client, stack.client(ADMIN_KEY) as admin:
                assert (await client.get("/readyz")).json()["workers_alive"] == 0
                assert check(env).returncode == 1  # no worker on this host beats yet
                webhook = {"url": hooks.url + "/hook"}
                jobs = []
                for priority in ("high", "high", "low"):
                    body = image_job("ops", priority=priority, webhook=webhook)
                    jobs.append((await client.post("/v1/jobs", json=body)).json())
                await asyncio.sleep(0.2)  # the oldest has waited a while
                job_id = jobs[0]["id"]
                assert (await client.get(f"/v1/jobs/{job_id}")).status_code == 200
                async with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
                    async for line in stream.aiter_lines():
                        if line.startswith("event:"):
                            break  # job.queued: the stream is open, then left
                text = (await client.get("/metrics")).text
                assert sample(text, "mediagate_queue_jobs", priority="high") == 2
                assert sample(text, "mediagate_queue_jobs", priority="low") == 1
                assert sample(text, "mediagate_queue_jobs", priority="normal") == 0
                age = sample(text, "mediagate_queue_oldest_age_seconds", priority="high")
                assert age is not None and age >= 0.2
                assert sample(text, "mediagate_workers_alive") == 0
                # Route templates, never raw ids; the event stream is left out of the timings.
                assert sample(text, "mediagate_http_requests_total", path="/v1/jobs/{job_id}")
                assert job_id not in text and "/events" not in text

                # A refusal is counted by its code.
                limited = (
                    await admin.post("/admin/keys", json={"name": "rl", "requests_per_minute": 1})
                ).json()["key"]
                async with stack.client(limited) as throttled:
                    codes = [(await throttled.get("/v1/jobs")).status_code for _ in range(2)]
                assert codes == [200, 429]
                text = (await client.get("/metrics")).text
                assert sample(text, "mediagate_refusals_total", code="rate_limit_exceeded")

                port = free_port()
                with running_workers(settings, MEDIAGATE_WORKER_METRICS_PORT=str(port)) as [worker]:
                    for job in jobs:
                        done = await wait_for_job(client, job["id"], timeout=60)
                        assert done["status"] == "succeeded"
                    deadline = asyncio.get_running_loop().time() + 30
                    while len(hooks.received) < 3:
                        assert asyncio.get_running_loop().time() < deadline
                        await asyncio.sleep(0.1)
                    await asyncio.sleep(0.3)  # the last attempt's outcome is counted after
                    async with httpx.AsyncClient() as scraper:
                        mine = (await scraper.get(f"http://127.0.0.1:{port}/metrics")).text
                    labels = {"type": "image", "provider": "local", "model": "local-image"}
                    finished = sample(
                        mine, "mediagate_jobs_finished_total", status="succeeded", **labels
                    )
                    assert finished == 3
                    assert sample(mine, "mediagate_job_queue_wait_seconds_count", **labels) == 3
                    assert sample(mine, "mediagate_provider_time_seconds_count", **labels) == 3
                    assert sample(mine, "mediagate_job_duration_seconds_count", **labels) == 3
                    assert sample(mine, "mediagate_worker_jobs_in_progress") == 0
                    assert sample(mine, "mediagate_webhook_attempts_total", outcome="delivered")

                    listed = (await admin.get("/admin/workers")).json()["data"]
                    assert [w["pid"] for w in listed] == [worker.pid]
                    assert listed[0]["concurrency"] == settings.worker_concurrency
                    assert (await client.get("/readyz")).json()["workers_alive"] == 1
                    text = (await client.get("/metrics")).text
                    assert sample(text, "mediagate_workers_alive") == 1
                    assert sample(text, "mediagate_queue_jobs") == 0
                    written = sample(text, "mediagate_media_written_bytes_total", kind="image")
                    assert written is not None and written > 0
                    assert check(env).returncode == 0

                    worker.send_signal(signal.SIGKILL)  # gone without a word
                    worker.wait(10)
                    await asyncio.sleep(settings.worker_heartbeat_seconds * 3 + 0.5)
                    assert (await admin.get("/admin/workers")).json()["data"] == []
                    assert (await client.get("/readyz")).json()["workers_alive"] == 0
                    stale = check(env)
                    assert stale.returncode == 1 and "no live worker" in stale.stderr
