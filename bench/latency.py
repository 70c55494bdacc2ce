"""Pick-up latency: submit one job every `--gap` seconds into an idle worker, and measure the
time from the client sending `POST /v1/jobs` to the job's `started_at`: mediagate's API and
worker against the bare submit (bench/bare_submit.py) and the bare worker (bench/bare_worker.py),
both arq workers at the same poll delay, on the same PostgreSQL, Redis and S3 (moto).

    python -m bench.latency
    python -m bench.latency --jobs 200 --gap 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import time

import asyncpg
import httpx

from app.dev import free_port
from bench.common import (
    bare_key,
    drop_namespace,
    mediagate_api_argv,
    mediagate_env,
    new_key,
    percentile,
    postgres_database,
    process,
    s3_settings,
    serve,
)
from bench.worker import make_bucket, moto
from tests.infra import REDIS_URL

BODY = {"type": "image", "model": "local-image", "input": {"prompt": "now", "size": "256x256"}}


async def wait_started(database: str, job_id: str, seconds: float = 60) -> None:
    """Until the job has started: the worker process is up and has taken a job."""
    conn = await asyncpg.connect(database)
    try:
        for _ in range(int(seconds * 20)):
            if await conn.fetchval("SELECT started_at FROM jobs WHERE id = $1", job_id):
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise RuntimeError(f"the warm-up job {job_id} never started")


async def submit_paced(
    url: str, token: str | None, jobs: int, gap: float, database: str
) -> dict[str, float]:
    """job id -> wall-clock time its POST was sent. The paced jobs go to a worker that is up:
    a warm-up job must have started first (a worker process takes seconds to import its code,
    which is its start-up time, not the pick-up latency measured here)."""
    sent: dict[str, float] = {}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        warm = await client.post("/v1/jobs", json=BODY)  # warm the connection and the worker
        warm.raise_for_status()
        await wait_started(database, warm.json()["id"])
        await asyncio.sleep(1.0)
        for _ in range(jobs):
            started = time.time()
            resp = await client.post("/v1/jobs", json=BODY)
            resp.raise_for_status()
            sent[resp.json()["id"]] = started
            await asyncio.sleep(max(0.0, gap - (time.time() - started)))
    return sent


async def latencies(database: str, sent: dict[str, float]) -> list[float]:
    """Milliseconds from each POST to the job's start, once every job has started."""
    conn = await asyncpg.connect(database)
    try:
        for _ in range(600):
            rows = await conn.fetch(
                "SELECT id, started_at FROM jobs WHERE id = any($1) AND started_at IS NOT NULL",
                list(sent),
            )
            if len(rows) == len(sent):
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    return [(row["started_at"].timestamp() - sent[row["id"]]) * 1000 for row in rows]


def run_mediagate(args: argparse.Namespace, sa_url: str, s3: str, bucket: str) -> list[float]:
    settings = s3_settings(sa_url, s3, bucket, worker_poll_delay=args.poll_delay)
    env = mediagate_env(settings)
    port = free_port()
    db = sa_url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        with serve(mediagate_api_argv(port), f"http://127.0.0.1:{port}", env=env) as api:
            token = new_key(api.url)
            with process([sys.executable, "-m", "app.cli", "worker"], env):
                sent = asyncio.run(submit_paced(api.url, token, args.jobs, args.gap, db))
                return asyncio.run(latencies(db, sent))
    finally:
        drop_namespace(settings.redis_namespace)


def run_bare(args: argparse.Namespace, sa_url: str, s3: str, bucket: str) -> list[float]:
    db = sa_url.replace("postgresql+asyncpg://", "postgresql://")
    namespace = f"bench-{secrets.token_hex(4)}"
    queue = f"{namespace}:queue"
    key_id = asyncio.run(bare_key(db))
    port = free_port()
    submit = [
        sys.executable, "-m", "bench.bare_submit", "--port", str(port), "--database", db,
        "--redis", REDIS_URL, "--queue", queue, "--key-id", key_id,
    ]  # fmt: skip
    worker = [
        sys.executable, "-m", "bench.bare_worker", "--database", db, "--redis", REDIS_URL,
        "--queue", queue, "--s3", s3, "--bucket", bucket, "--poll-delay", str(args.poll_delay),
    ]  # fmt: skip
    try:
        with serve(submit, f"http://127.0.0.1:{port}") as api, process(worker):
            sent = asyncio.run(submit_paced(api.url, None, args.jobs, args.gap, db))
            return asyncio.run(latencies(db, sent))
    finally:
        drop_namespace(namespace)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.05)
    parser.add_argument("--poll-delay", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(
        f"submit -> started_at, one job every {args.gap * 1000:.0f} ms into an idle worker "
        f"(poll delay {args.poll_delay * 1000:.0f} ms), {args.jobs} jobs a run"
    )
    print(f"{'variant':<12}{'p50 ms':>10}{'p99 ms':>10}{'started':>10}")
    found: dict[str, list[list[float]]] = {"mediagate": [], "bare": []}
    with postgres_database() as sa_url, moto() as s3:
        bucket = f"bench-{secrets.token_hex(4)}"
        asyncio.run(make_bucket(s3, bucket))
        for _ in range(args.rounds):
            for name, runner in (("mediagate", run_mediagate), ("bare", run_bare)):
                values = runner(args, sa_url, s3, bucket)
                found[name].append(values)
                print(
                    f"{name:<12}{percentile(values, 50):>10.1f}{percentile(values, 99):>10.1f}"
                    f"{len(values):>10}",
                    flush=True,
                )
    p99 = {name: statistics.median(percentile(v, 99) for v in runs) for name, runs in found.items()}
    p50 = {name: statistics.median(percentile(v, 50) for v in runs) for name, runs in found.items()}
    print(
        f"\nmedian over rounds: mediagate p50 {p50['mediagate']:.1f} / p99 {p99['mediagate']:.1f} "
        f"ms, bare p50 {p50['bare']:.1f} / p99 {p99['bare']:.1f} ms; p99 difference "
        f"{p99['mediagate'] - p99['bare']:+.1f} ms (target <= +10)"
    )


if __name__ == "__main__":
    main()
