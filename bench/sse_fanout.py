"""SSE fan-out: N concurrent event streams on one API process, mediagate against the bare
fan-out (bench/bare_sse.py: one pub/sub reader, a queue per stream, sse-starlette), alternating
in one run, the same load clients, the same ~1 KB event.

For each variant: open N streams on one job (from `--clients` client processes, so the client is
not the bottleneck on 2 cores; `bench/sse_client.py`), measure the server's RSS per stream, its
CPU while the streams sit idle (over two keep-alive periods, so every run counts two rounds of
pings: a 5 s window read 0.002 or 0.2 cores by whether it held one) and the Redis connections,
then publish `--events` progress events and a terminal one. Reported per variant: how many
streams received every event (and the terminal one), and the fan-out spread: the time from the
first stream to the 99th-percentile stream receiving the same event (median over the events).

    python bench/sse_fanout.py                      # 10,000 streams
    python bench/sse_fanout.py --streams 4000 --only mediagate
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import sys
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import orjson
import redis.asyncio as aredis

from app.dev import free_port
from app.platform.events import EventBus
from bench.bare_sse import PING_SECONDS
from bench.common import (
    ROOT,
    base_settings,
    cpu_seconds,
    drop_namespace,
    mediagate_api_argv,
    mediagate_env,
    new_key,
    percentile,
    postgres_database,
    rss_bytes,
    serve,
)
from tests.infra import REDIS_URL

PROMPT = "a lighthouse at dusk, long exposure, " * 14  # the event is the job object: ~1 KB


@dataclass
class Result:
    variant: str
    streams: int
    opened: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    complete: int = 0
    terminal: int = 0
    every_event: int = 0
    spreads_ms: list[float] = field(default_factory=list)
    idle_cores: float = 0.0
    rss_per_stream_kib: float = 0.0
    redis_connections: int = 0


async def _redis_clients() -> int:
    client = aredis.Redis.from_url(REDIS_URL)
    try:
        return len(await client.client_list())
    finally:
        await client.aclose()


def _start_clients(cfg: dict[str, Any], clients: int) -> list[subprocess.Popen[str]]:
    share = [
        cfg["streams"] // clients + (1 if i < cfg["streams"] % clients else 0)
        for i in range(clients)
    ]
    return [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "bench" / "sse_client.py"),
                json.dumps({**cfg, "streams": n}),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in share
    ]


def _line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("a load client ended early")
    data: dict[str, Any] = json.loads(line)
    return data


async def _measure(
    result: Result, pid: int, cfg: dict[str, Any], publish: Any, args: argparse.Namespace
) -> None:
    rss0 = rss_bytes(pid)
    redis0 = await _redis_clients()
    procs = _start_clients(cfg, args.clients)
    try:
        for proc in procs:
            ready = await asyncio.to_thread(_line, proc)
            result.opened += ready["opened"]
            for code, n in ready["statuses"].items():
                result.statuses[code] = result.statuses.get(code, 0) + n
        await asyncio.sleep(2.0)
        result.rss_per_stream_kib = (rss_bytes(pid) - rss0) / 1024 / max(1, result.opened)
        result.redis_connections = await _redis_clients() - redis0
        cpu0 = cpu_seconds(pid)
        await asyncio.sleep(args.idle_seconds)
        result.idle_cores = (cpu_seconds(pid) - cpu0) / args.idle_seconds
        ids = []
        for i in range(args.events):
            ids.append(await publish(i, terminal=False))
            await asyncio.sleep(args.gap)
        ids.append(await publish(args.events, terminal=True))
        arrivals: dict[str, list[float]] = {}
        for proc in procs:
            report = await asyncio.to_thread(_line, proc)
            result.terminal += report["terminal"]
            result.complete += report["complete"]
            for event_id, times in report["arrivals"].items():
                arrivals.setdefault(event_id, []).extend(times)
        for event_id in ids:
            times = arrivals.get(str(event_id), [])
            if times:
                result.spreads_ms.append((percentile(times, 99) - min(times)) * 1000)
        result.every_event = min(len(arrivals.get(str(i), [])) for i in ids)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


async def run_mediagate(args: argparse.Namespace, database_url: str) -> Result:
    settings = replace(
        base_settings(database_url),
        sse_ping_seconds=PING_SECONDS,
        storage="memory",
        # Every stream is the one key's, opened within seconds: no per-key caps or rate limit.
        max_streams_per_key=None,
        requests_per_minute=None,
    )
    port = free_port()
    result = Result("mediagate", args.streams)
    try:
        with serve(
            mediagate_api_argv(port), f"http://127.0.0.1:{port}", env=mediagate_env(settings)
        ) as server:
            token = new_key(server.url)
            async with httpx.AsyncClient(base_url=server.url) as client:
                created = await client.post(
                    "/v1/jobs",
                    json={
                        "type": "image",
                        "model": "local-image",
                        "input": {"prompt": PROMPT, "size": "256x256"},
                    },
                    headers={"Authorization": f"Bearer {token}"},
                )
            job = created.json()
            redis = aredis.Redis.from_url(REDIS_URL)
            bus = EventBus(redis, settings.redis_namespace)

            async def publish(i: int, *, terminal: bool) -> int:
                data = {**job, "status": "succeeded" if terminal else "running", "progress": i}
                seq = await bus.publish(
                    job["id"], "job.succeeded" if terminal else "job.progress", data
                )
                assert seq is not None
                return seq

            cfg = {
                "host": "127.0.0.1",
                "port": port,
                "path": f"/v1/jobs/{job['id']}/events",
                "token": token,
                "streams": args.streams,
            }
            try:
                await _measure(result, server.pid, cfg, publish, args)
            finally:
                await redis.aclose()
    finally:
        drop_namespace(settings.redis_namespace)
    return result


async def run_bare(args: argparse.Namespace, payload: bytes) -> Result:
    channel = f"bench-sse-{secrets.token_hex(4)}"
    port = free_port()
    argv = [
        sys.executable,
        str(ROOT / "bench" / "bare_sse.py"),
        "--port",
        str(port),
        "--redis",
        REDIS_URL,
        "--channel",
        channel,
    ]
    result = Result("bare", args.streams)
    with serve(argv, f"http://127.0.0.1:{port}") as server:
        redis = aredis.Redis.from_url(REDIS_URL)

        async def publish(i: int, *, terminal: bool) -> int:
            seq = i + 1
            event = "end" if terminal else "job.progress"
            await redis.publish(channel, f"job\n{seq}\n{event}\n".encode() + payload)
            return seq

        cfg = {"host": "127.0.0.1", "port": port, "path": "/events/job", "streams": args.streams}
        try:
            await _measure(result, server.pid, cfg, publish, args)
        finally:
            await redis.aclose()
    return result


def _report(results: list[Result]) -> None:
    print(f"\nSSE fan-out, {results[0].streams} streams on one job, one API process")
    columns = ("opened", "every event", "terminal", "spread p50", "spread max", "idle cores")
    print(f"{'variant':<10}" + "".join(f"{c:>12}" for c in columns) + "  KiB/stream  redis conns")
    for r in results:
        spreads = sorted(r.spreads_ms)
        print(
            f"{r.variant:<10}{r.opened:>12}{r.every_event:>12}{r.terminal:>12}"
            f"{percentile(spreads, 50):>10.0f}ms{max(spreads, default=0):>10.0f}ms"
            f"{r.idle_cores:>12.3f}{r.rss_per_stream_kib:>12.1f}{r.redis_connections:>13}"
        )
        if set(r.statuses) != {"200"}:
            print(f"  {r.variant}: open statuses {r.statuses}")
    by = {r.variant: r for r in results}
    if "mediagate" in by and "bare" in by:
        m, b = by["mediagate"], by["bare"]
        ratio = percentile(sorted(m.spreads_ms), 50) / max(
            1e-9, percentile(sorted(b.spreads_ms), 50)
        )
        print(f"spread ratio mediagate/bare: {ratio:.2f}x (target <= 2x)")
        rss = m.rss_per_stream_kib / max(1e-9, b.rss_per_stream_kib)
        print(f"RSS per stream ratio mediagate/bare: {rss:.2f}x (target <= 1x)")
        print(f"mediagate idle cores: {m.idle_cores:.3f} (target <= 0.05)")
        every = m.every_event == m.opened == m.streams
        print(f"every stream got every event: {'yes' if every else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=2, help="load client processes")
    parser.add_argument(
        "--events", type=int, default=5, help="progress events before the terminal one"
    )
    parser.add_argument("--gap", type=float, default=2.0, help="seconds between events")
    parser.add_argument("--only", choices=("mediagate", "bare"))
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=2 * PING_SECONDS,
        help="how long the idle CPU is measured: whole keep-alive periods, so every run (and"
        " both servers) counts the same number of ping rounds",
    )
    args = parser.parse_args()
    results = []
    payload = orjson.dumps({"object": "job", "input": {"prompt": PROMPT}, "progress": 0})
    with postgres_database() as database_url:
        if args.only != "bare":
            results.append(asyncio.run(run_mediagate(args, database_url)))
        if args.only != "mediagate":
            results.append(asyncio.run(run_bare(args, payload)))
    _report(results)


if __name__ == "__main__":
    main()
