"""Request metrics for every routed request: counts, durations and in-progress by method, route
template (never a raw id) and status. Litestar's own Prometheus middleware builds a Request
object, label dicts and metric lookups per request; this one keeps the metric children per
label set, at a fraction of the cost (bench/request_metrics.py; figures in docs/benchmarks.md).
Event streams (they last minutes) and `/metrics` itself are left out."""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.platform.metrics import HTTP_DURATION, HTTP_ERRORS, HTTP_IN_PROGRESS, HTTP_REQUESTS

EXCLUDED = frozenset({"/v1/jobs/{job_id}/events", "/v1/batches/{batch_id}/events", "/metrics"})


class HttpMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._done: dict[tuple[str, str, int], tuple[Any, Any, Any | None]] = {}
        self._running: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        route = scope.get("path_template")
        if route is None or route in EXCLUDED:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        status = 500
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        running = self._running.get((method, route))
        if running is None:
            running = self._running[(method, route)] = HTTP_IN_PROGRESS.labels(method, route)
        running.inc()
        try:
            await self.app(scope, receive, sending)
        finally:
            running.dec()
            children = self._done.get((method, route, status))
            if children is None:
                labels = (method, route, str(status))
                children = self._done[(method, route, status)] = (
                    HTTP_REQUESTS.labels(*labels),
                    HTTP_DURATION.labels(*labels),
                    HTTP_ERRORS.labels(*labels) if status >= 500 else None,
                )
            requests, duration, errors = children
            requests.inc()
            duration.observe(time.perf_counter() - started)
            if errors is not None:
                errors.inc()
