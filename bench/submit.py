"""Submit throughput: `POST /v1/jobs` on mediagate against the bare durable submit
(bench/bare_submit.py: parse, asyncpg INSERT, arq enqueue), on the same PostgreSQL and Redis,
alternating in one run, driven by wrk (its own process, written in C: the client costs a few
percent of a core at these rates).

Before each measured run the jobs table and the queue are emptied, so every run starts from the
same state; each run lasts `--seconds` after a warm-up. Reported: requests per second, p50/p99
latency, answers that were not 202, and the ratio to the bare baseline. mediagate is measured with
one key and with 32 keys (a busy key must not serialise the API), and with `--workers 1..N` API
processes when `--api-workers` lists several.

    python -m bench.submit
    python -m bench.submit --seconds 5 --api-workers 1,2
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import asyncpg
import redis

from app.dev import free_port
from app.platform.ids import hash_key
from bench.common import (
    bare_key,
    base_settings,
    drop_namespace,
    mediagate_api_argv,
    mediagate_env,
    new_key,
    postgres_database,
    serve,
)
from tests.infra import REDIS_URL

BODY = (
    '{"type":"image","model":"local-image","input":{"prompt":"a red fox in snow","size":"256x256"}}'
)
LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Run:
    variant: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk_script(tokens: list[str]) -> str:
    quoted = ", ".join(f'"{t}"' for t in tokens) or '""'
    return f"""
local tokens = {{{quoted}}}
local body = '{BODY}'
local i = 0
request = function()
  i = i + 1
  local headers = {{["Content-Type"] = "application/json"}}
  local token = tokens[(i % #tokens) + 1]
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
  return wrk.format("POST", "/v1/jobs", headers, body)
end
"""


def wrk(
    url: str, tokens: list[str], seconds: float, connections: int
) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, answers other than 2xx/3xx) of one wrk run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(wrk_script(tokens))
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            script.name,
            url + "/v1/jobs",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    Path(script.name).unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {q: float(v) * UNIT[u] for q, v, u in LATENCY.findall(out)}
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return rps, lat.get("50", 0.0), lat.get("99", 0.0), errors


def reset(database: str, namespace: str) -> None:
    """Empty the jobs table and the queue: every run starts from the same state."""

    async def truncate() -> None:
        conn = await asyncpg.connect(database)
        try:
            await conn.execute("TRUNCATE media_objects, webhook_deliveries, idempotency_keys, jobs")
        finally:
            await conn.close()

    asyncio.run(truncate())
    client = redis.Redis.from_url(REDIS_URL)
    try:
        queue = f"{namespace}:queue"
        ids = [raw.decode() for raw in client.zrange(queue, 0, -1)]  # type: ignore[union-attr]
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            for prefix in ("arq:job:", "arq:retry:", "arq:in-progress:", "arq:result:"):
                pipe.delete(prefix + job_id)
        pipe.execute()
    finally:
        client.close()
    drop_namespace(namespace)


def prefill(database: str, token_hashes: list[str], queued: int) -> None:
    """`queued` queued jobs for each of the keys (by their tokens' hashes), as a backlog."""

    async def insert() -> None:
        conn = await asyncpg.connect(database)
        try:
            for digest in token_hashes:
                key_id = await conn.fetchval(
                    "SELECT id FROM virtual_keys WHERE key_hash = $1", digest
                )
                await conn.execute(
                    "INSERT INTO jobs (id, key_id, type, model, provider, provider_model, input,"
                    " request, status, progress, attempts, tries, targets, target_index,"
                    " created_at, priority)"
                    " SELECT 'job_b' || md5($1 || g::text), $1, 'image', 'local-image', 'local',"
                    " 'local-image', '{}', '{}', 'queued', 0, 0, 0, '[]', 0, now(), 'normal'"
                    " FROM generate_series(1, $2) AS g",
                    key_id,
                    queued,
                )
        finally:
            await conn.close()

    asyncio.run(insert())


def measure(
    variant: str,
    round_: int,
    url: str,
    tokens: list[str],
    args: argparse.Namespace,
    db: str,
    ns: str,
    backlog: int = 0,
) -> Run:
    reset(db, ns)
    wrk(url, tokens, 2, args.connections)  # warm-up: connections, caches, JIT of nothing
    reset(db, ns)
    if backlog:
        prefill(db, [hash_key(t) for t in tokens if t], backlog)
    rps, p50, p99, errors = wrk(url, tokens, args.seconds, args.connections)
    run = Run(variant, round_, rps, p50, p99, errors)
    print(
        f"{variant:<28}{rps:>10.0f}{p50:>10.1f}{p99:>10.1f}{errors:>8}",
        flush=True,
    )
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--api-workers", default="1,2", help="API process counts to measure")
    parser.add_argument("--only", choices=("mediagate", "bare"))
    parser.add_argument(
        "--backlogs",
        default="10,10000",
        help="also measure one key that already has this many queued jobs ('' for none)",
    )
    args = parser.parse_args()
    backlogs = [int(n) for n in args.backlogs.split(",") if n]
    if shutil.which("wrk") is None:
        sys.exit("bench.submit needs wrk (apt-get install wrk; `make bench` installs it)")
    counts = [int(n) for n in args.api_workers.split(",")]
    results: list[Run] = []
    print(f"POST /v1/jobs, {args.connections} connections, {args.seconds:.0f} s a run, PostgreSQL")
    print(f"{'variant':<28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
    with postgres_database() as sa_url:
        db = sa_url.replace("postgresql+asyncpg://", "postgresql://")
        # The throughput of the path itself: no rate limit or queue cap (each costs a Redis call).
        settings = replace(
            base_settings(sa_url), storage="memory", requests_per_minute=None, max_queue_length=None
        )
        key_id = asyncio.run(bare_key(db))
        try:
            for round_ in range(args.rounds):
                if args.only != "bare":
                    for workers in counts:
                        port = free_port()
                        argv = mediagate_api_argv(port, "--workers", str(workers))
                        url = f"http://127.0.0.1:{port}"
                        with serve(argv, url, env=mediagate_env(settings)):
                            tokens = [new_key(url, f"bench-{i}") for i in range(32)]
                            ns = settings.redis_namespace
                            label = f"mediagate x{workers}"
                            for name, chosen in (
                                (f"{label}, 1 key", tokens[:1]),
                                (f"{label}, 32 keys", tokens),
                            ):
                                results.append(measure(name, round_, url, chosen, args, db, ns))
                            if workers != counts[0]:
                                continue
                            for backlog in backlogs:
                                name = f"{label}, 1 key, {backlog} queued"
                                results.append(
                                    measure(name, round_, url, tokens[:1], args, db, ns, backlog)
                                )
                if args.only != "mediagate":
                    for no_db in (False, True):
                        port = free_port()
                        ns = settings.redis_namespace
                        argv = [
                            sys.executable,
                            "-m",
                            "bench.bare_submit",
                            "--port",
                            str(port),
                            "--database",
                            db,
                            "--redis",
                            REDIS_URL,
                            "--queue",
                            f"{ns}:queue",
                            "--key-id",
                            key_id,
                            *(["--no-db"] if no_db else []),
                        ]
                        url = f"http://127.0.0.1:{port}"
                        with serve(argv, url):
                            name = "bare, no database" if no_db else "bare (INSERT + enqueue)"
                            results.append(measure(name, round_, url, [""], args, db, ns))
        finally:
            reset(db, settings.redis_namespace)  # leave nothing behind
    _report(results, counts)


def _ratios(results: list[Run], variant: str, base: str, attr: str) -> list[float]:
    """The variant's figure over the baseline's, round by round (runs of one round are minutes
    apart at most, runs of different rounds may meet different noise)."""
    by_round = {r.round: r for r in results if r.variant == base}
    return [
        getattr(r, attr) / max(getattr(by_round[r.round], attr), 1e-9)
        for r in results
        if r.variant == variant and r.round in by_round
    ]


def _report(results: list[Run], counts: list[int]) -> None:
    base = "bare (INSERT + enqueue)"
    print("\nmedian over the rounds; ratios against the bare durable submit of the same round")
    for variant in dict.fromkeys(r.variant for r in results):
        runs = [r for r in results if r.variant == variant]
        rps = statistics.median(r.rps for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        line = f"{variant:<28}{rps:>8.0f} req/s  p99 {p99:>6.1f} ms"
        if variant.startswith("mediagate") and any(r.variant == base for r in results):
            speed = statistics.median(_ratios(results, variant, base, "rps"))
            slow = statistics.median(_ratios(results, variant, base, "p99_ms"))
            line += f"  throughput {speed:.2f}x (target >= 0.5)  p99 {slow:.1f}x (target <= 3)"
        print(line)
    for n in counts[1:]:
        gains = _ratios(
            results, f"mediagate x{n}, 32 keys", f"mediagate x{counts[0]}, 32 keys", "rps"
        )
        if gains:
            print(
                f"{n} API processes against {counts[0]}: "
                f"{statistics.median(gains):.2f}x throughput (32 keys)"
            )


if __name__ == "__main__":
    main()
