"""Worker throughput: one worker process with `--concurrency` slots draining `--jobs` queued
`local-image` jobs to S3 (moto's server, its own process), mediagate against the bare worker
(bench/bare_worker.py: render + PNG + one S3 PUT + two row UPDATEs), alternating in one run, on
the same PostgreSQL, Redis and S3.

The jobs are queued before the worker starts (mediagate's through its API, which is then
stopped; the bare ones straight into the table and arq's queue). The figure is jobs per second
between the first job's start and the last job's end (from the rows' own timestamps), and the
worker's CPU time per job over the same span.

    python -m bench.worker
    python -m bench.worker --jobs 300 --rounds 2 --size 256x256
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiobotocore.session import get_session
from arq.connections import RedisSettings, create_pool

from app.dev import free_port
from app.platform.ids import new_id
from bench.common import (
    bare_key,
    cpu_seconds,
    drop_namespace,
    mediagate_api_argv,
    mediagate_env,
    new_key,
    postgres_database,
    process,
    s3_settings,
    serve,
)
from tests.infra import REDIS_URL


@dataclass
class Run:
    variant: str
    round: int
    jobs_per_s: float
    cpu_ms_per_job: float
    succeeded: int


@contextlib.contextmanager
def moto() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


async def make_bucket(endpoint: str, bucket: str) -> None:
    async with get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ) as s3:
        await s3.create_bucket(Bucket=bucket)


async def submit_all(url: str, token: str, jobs: int, size: str, outputs: int = 1) -> list[str]:
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one(i: int) -> str:
            data = {
                "type": "image",
                "model": "local-image",
                "input": {"prompt": f"lighthouse {i}", "size": size, "n": outputs},
            }
            resp = await client.post(
                "/v1/jobs", json=data, headers={"Authorization": f"Bearer {token}"}
            )
            resp.raise_for_status()
            job_id: str = resp.json()["id"]
            return job_id

        return list(await asyncio.gather(*(one(i) for i in range(jobs))))


async def queue_bare(database: str, queue: str, key_id: str, jobs: int, size: str) -> list[str]:
    conn = await asyncpg.connect(database)
    ids = [new_id("job") for _ in range(jobs)]
    try:
        await conn.executemany(
            "INSERT INTO jobs (id, key_id, type, model, provider, provider_model, input, request,"
            " status, progress, attempts, tries, targets, target_index, created_at, priority)"
            " VALUES ($1, $2, 'image', 'local-image', 'local', 'local-image', $3, $3, 'queued',"
            " 0, 0, 0, '[\"local-image\"]', 0, now(), 'normal')",
            [
                (
                    job_id,
                    key_id,
                    orjson.dumps({"prompt": f"a lighthouse, take {i}", "size": size}).decode(),
                )
                for i, job_id in enumerate(ids)
            ],
        )
    finally:
        await conn.close()
    redis = await create_pool(RedisSettings.from_dsn(REDIS_URL), default_queue_name=queue)
    try:
        for job_id in ids:
            await redis.enqueue_job("generate_media", job_id, _job_id=job_id)
    finally:
        await redis.aclose()
    return ids


async def drain(
    database: str, ids: list[str], pid: int, seconds: float
) -> tuple[float, float, int]:
    """Wait until every job has ended; (jobs/s, worker CPU ms per job, succeeded)."""
    conn = await asyncpg.connect(database)
    samples: list[tuple[float, float]] = []  # (wall clock, worker cpu seconds)
    try:
        deadline = time.monotonic() + seconds
        while True:
            samples.append((time.time(), cpu_seconds(pid)))
            done = await conn.fetchval(
                "SELECT count(*) FROM jobs WHERE id = any($1) AND finished_at IS NOT NULL", ids
            )
            if done == len(ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        row = await conn.fetchrow(
            "SELECT min(started_at) AS first, max(finished_at) AS last,"
            " count(*) FILTER (WHERE status = 'succeeded') AS ok FROM jobs WHERE id = any($1)",
            ids,
        )
    finally:
        await conn.close()
    first, last = row["first"].timestamp(), row["last"].timestamp()

    def cpu_at(moment: float) -> float:
        return min(samples, key=lambda s: abs(s[0] - moment))[1]

    span = max(last - first, 1e-6)
    cpu = cpu_at(last) - cpu_at(first)
    return len(ids) / span, cpu * 1000 / len(ids), int(row["ok"])


def run_mediagate(args: argparse.Namespace, sa_url: str, s3: str, bucket: str, round_: int) -> Run:
    settings = s3_settings(
        sa_url, s3, bucket, worker_concurrency=args.concurrency, worker_poll_delay=0.05
    )
    env = mediagate_env(settings)
    port = free_port()
    try:
        with serve(mediagate_api_argv(port), f"http://127.0.0.1:{port}", env=env) as api:
            token = new_key(api.url)
            ids = asyncio.run(submit_all(api.url, token, args.jobs, args.size, args.outputs))
        argv = [sys.executable, "-m", "app.cli", "worker", "--concurrency", str(args.concurrency)]
        with process(argv, env) as worker:
            db = sa_url.replace("postgresql+asyncpg://", "postgresql://")
            rate, cpu, ok = asyncio.run(drain(db, ids, worker.pid, args.timeout))
    finally:
        drop_namespace(settings.redis_namespace)
    return Run("mediagate", round_, rate, cpu, ok)


def run_bare(args: argparse.Namespace, sa_url: str, s3: str, bucket: str, round_: int) -> Run:
    db = sa_url.replace("postgresql+asyncpg://", "postgresql://")
    namespace = f"bench-{secrets.token_hex(4)}"
    queue = f"{namespace}:queue"
    key_id = asyncio.run(bare_key(db))
    try:
        ids = asyncio.run(queue_bare(db, queue, key_id, args.jobs, args.size))
        argv = [
            sys.executable,
            "-m",
            "bench.bare_worker",
            "--database",
            db,
            "--redis",
            REDIS_URL,
            "--queue",
            queue,
            "--s3",
            s3,
            "--bucket",
            bucket,
            "--concurrency",
            str(args.concurrency),
        ]
        with process(argv) as worker:
            rate, cpu, ok = asyncio.run(drain(db, ids, worker.pid, args.timeout))
    finally:
        drop_namespace(namespace)
    return Run("bare", round_, rate, cpu, ok)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--only", choices=("mediagate", "bare"))
    parser.add_argument(
        "--outputs", type=int, default=1, help="images per mediagate job (the bare makes one)"
    )
    args = parser.parse_args()
    results: list[Run] = []
    print(
        f"{args.jobs} queued local-image {args.size} jobs, one worker process x "
        f"{args.concurrency} slots, outputs to S3 (moto), PostgreSQL"
    )
    print(f"{'variant':<12}{'jobs/s':>10}{'CPU ms/job':>12}{'succeeded':>11}")
    with postgres_database() as sa_url, moto() as s3:
        bucket = f"bench-{secrets.token_hex(4)}"
        asyncio.run(make_bucket(s3, bucket))
        for round_ in range(args.rounds):
            runners: list[Any] = []
            if args.only != "bare":
                runners.append(run_mediagate)
            if args.only != "mediagate":
                runners.append(run_bare)
            for runner in runners:
                run = runner(args, sa_url, s3, bucket, round_)
                results.append(run)
                print(
                    f"{run.variant:<12}{run.jobs_per_s:>10.1f}{run.cpu_ms_per_job:>12.1f}"
                    f"{run.succeeded:>11}",
                    flush=True,
                )
    _report(results, args.jobs)


def _report(results: list[Run], jobs: int) -> None:
    bare = {r.round: r for r in results if r.variant == "bare"}
    mine = [r for r in results if r.variant == "mediagate"]
    if not bare or not mine:
        return
    ratios = [r.jobs_per_s / bare[r.round].jobs_per_s for r in mine if r.round in bare]
    cpu = [r.cpu_ms_per_job / bare[r.round].cpu_ms_per_job for r in mine if r.round in bare]
    print(
        f"\nmediagate/bare, median over rounds: throughput {statistics.median(ratios):.2f}x "
        f"(target >= 0.6), CPU per job {statistics.median(cpu):.2f}x"
    )
    print(f"every job succeeded: {'yes' if all(r.succeeded == jobs for r in results) else 'NO'}")


if __name__ == "__main__":
    main()
