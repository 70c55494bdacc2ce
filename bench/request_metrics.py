"""Request metrics' cost: one routed request through a Litestar app with no middleware (the
baseline), with ours (app/http/metrics_middleware.py), and with Litestar's own Prometheus
middleware, driven in process (no sockets: the difference is the middleware's alone).
Target: ours adds at most 15 us a request, 2.5% of a submit's CPU (~0.6 ms, bench/submit.py);
Litestar's own measured at about twice to five times that here, hence ours."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from litestar import Litestar, get
from litestar.plugins.prometheus import PrometheusConfig

from app.http.metrics_middleware import HttpMetrics


@get("/v1/jobs/{job_id:str}")
async def handler(job_id: str) -> dict[str, str]:
    return {"id": job_id}


SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/v1/jobs/job_1",
    "raw_path": b"/v1/jobs/job_1",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"bench")],
    "server": ("bench", 80),
    "client": ("127.0.0.1", 1),
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(_: Any) -> None:
    return None


async def per_request(app: Litestar, count: int) -> float:
    for _ in range(300):
        await app(dict(SCOPE), _receive, _send)  # type: ignore[arg-type]
    started = time.perf_counter()
    for _ in range(count):
        await app(dict(SCOPE), _receive, _send)  # type: ignore[arg-type]
    return (time.perf_counter() - started) / count * 1e6


async def run(args: argparse.Namespace) -> None:
    apps = {
        "bare": Litestar([handler]),
        "mediagate metrics": Litestar([handler], middleware=[HttpMetrics]),
        "litestar prometheus": Litestar(
            [handler], middleware=[PrometheusConfig(prefix="bench", group_path=True).middleware]
        ),
    }
    rounds: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(args.rounds):
        for name, app in apps.items():
            rounds[name].append(await per_request(app, args.requests))
    bare = statistics.median(rounds["bare"])
    print(f"one routed request, in process, median of {args.rounds} rounds of {args.requests}")
    for name, figures in rounds.items():
        median = statistics.median(figures)
        print(f"{name:22s} {median:7.1f} us  +{median - bare:6.1f} us over bare")
    ours = statistics.median(rounds["mediagate metrics"]) - bare
    print(f"ours adds {ours:.1f} us a request (target <= 15 us)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
