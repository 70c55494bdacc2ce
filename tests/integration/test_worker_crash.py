"""A worker killed with SIGKILL mid-job, then another started: the job succeeds once, with one
set of media rows and exact usage (real PostgreSQL, moto S3, worker processes)."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.platform.database import create_engine, create_sessionmaker
from app.platform.resources import open_store
from app.platform.tables import KeyUsage, MediaObject
from tests.infra import (
    Stack,
    base_settings,
    running_stack,
    s3_changes,
    start_worker_process,
    upstream_settings,
    wait_for_job,
    worker_log,
)


@pytest.fixture
def s3_api_stack(pg_url: str, s3_endpoint: str) -> Iterator[Stack]:
    settings = base_settings(
        pg_url, job_lease_seconds=2, **s3_changes(s3_endpoint, f"crash-{secrets.token_hex(4)}")
    )
    with running_stack(settings, embedded_worker=False) as stack:
        yield stack


async def test_killed_worker_job_still_succeeds_once(s3_api_stack: Stack) -> None:
    settings = s3_api_stack.settings
    key = s3_api_stack.new_key()
    # Two outputs, ~2 s apart: kill the worker after the first one is recorded.
    slow = start_worker_process(settings, MEDIAGATE_LOCAL_LATENCY_SECONDS="6")
    try:
        async with s3_api_stack.client(key) as client:
            resp = await client.post(
                "/v1/jobs",
                json={
                    "type": "image",
                    "model": "local-image",
                    "input": {"prompt": "crash", "n": 2, "size": "256x256"},
                },
            )
            job_id = resp.json()["id"]
            await wait_for_job(
                client, job_id, timeout=60, predicate=lambda j: len(j["outputs"]) == 1
            )
            slow.send_signal(signal.SIGKILL)
            slow.wait(10)
            fast = start_worker_process(settings, MEDIAGATE_LOCAL_LATENCY_SECONDS="0")
            try:
                done = await wait_for_job(client, job_id, timeout=60)
            finally:
                fast.terminate()
                fast.wait(20)
    finally:
        if slow.poll() is None:
            slow.kill()
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert [o["index"] for o in done["outputs"]] == [0, 1]

    engine = create_engine(settings.database_url)
    store = await open_store(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = (
                await session.exec(select(MediaObject).where(MediaObject.job_id == job_id))
            ).all()
            key_id = rows[0][0].key_id
            usage = await session.get(KeyUsage, (key_id, "image"))
        media = [r[0] for r in rows]
        assert sorted(m.index for m in media) == [0, 1]
        assert usage is not None and usage.objects == 2
        assert usage.bytes == sum(m.bytes for m in media)
        # The re-run overwrote nothing it had not counted: written - deleted == stored.
        assert usage.bytes_written - usage.bytes_deleted == usage.bytes
        for m in media:
            info = await store.head(m.storage_key)
            assert info is not None and info.size == m.bytes
    finally:
        await store.close()
        await engine.dispose()
    await asyncio.sleep(0)


@pytest.fixture
def upstream_api_stack(
    pg_url: str, emulators: dict[str, Any], models_file: Path
) -> Iterator[Stack]:
    # The takeover waits out the dead worker's lease, and the job's time limit counts from its
    # first start: with the emulators' few seconds, a loaded machine timed the job out (CI).
    settings = upstream_settings(
        pg_url, emulators, models_file, job_lease_seconds=3, video_timeout_seconds=120
    )
    with running_stack(settings, embedded_worker=False) as stack:
        yield stack


async def test_worker_killed_while_polling_resumes_the_same_upstream_task(
    upstream_api_stack: Stack, emu: dict[str, Any]
) -> None:
    replicate = emu["replicate"]
    replicate.hold()  # the prediction stays `processing` until released
    settings = upstream_api_stack.settings
    key = upstream_api_stack.new_key()
    first = start_worker_process(settings)
    try:
        async with upstream_api_stack.client(key) as client:
            resp = await client.post(
                "/v1/jobs",
                json={
                    "type": "video",
                    "model": "replicate/minimax/video-01",
                    "input": {"prompt": "resume me"},
                },
            )
            job_id = resp.json()["id"]
            # `processing` reported: the prediction exists and its id is saved on the job.
            await wait_for_job(client, job_id, timeout=30, predicate=lambda j: j["progress"] >= 50)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            polls_before = replicate.count("GET", "/v1/predictions/")
            second = start_worker_process(settings)
            try:
                deadline = time.monotonic() + 30
                while replicate.count("GET", "/v1/predictions/") == polls_before:
                    assert time.monotonic() < deadline, (
                        "the new worker never polled:\n" + worker_log(second)[-4000:]
                    )
                    await asyncio.sleep(0.05)
                replicate.release()
                done = await wait_for_job(client, job_id, timeout=30)
            finally:
                second.terminate()
                second.wait(20)
    finally:
        if first.poll() is None:
            first.kill()
    assert done["status"] == "succeeded", (done["error"], done["attempts"], worker_log(second))
    assert done["attempts"] == 2
    assert len(replicate.created) == 1  # no second (paid) prediction
    assert replicate.count("POST", "/v1/models/") == 1
