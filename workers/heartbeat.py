"""The worker's own signs of life: its heartbeat in Redis every `worker_heartbeat_seconds`
(`app/platform/liveness.py`), removed when it stops cleanly, and its Prometheus metrics on
`worker_metrics_port` when one is set."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import time
from typing import Any

from prometheus_client import start_http_server
from redis.exceptions import RedisError

from app.platform.liveness import Heartbeat, beat, forget
from app.platform.resources import Resources

log = logging.getLogger("mediagate.worker")

RUNNING = "jobs_running"
"""The worker context's count of generation attempts running now."""
ENDED = "jobs_ended"
"""Jobs this worker ended (succeeded, failed or canceled) since it started."""
THROUGHPUT_WINDOW = 300.0
"""Seconds of history a worker's throughput is measured over."""


class Heart:
    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        self.id = Heartbeat.new_id()
        self.started_at = time.time()
        self.task: asyncio.Task[None] | None = None
        self.metrics_server: Any = None
        self.ended: collections.deque[tuple[float, int]] = collections.deque()
        """(time, jobs ended) at each beat within THROUGHPUT_WINDOW."""

    def throughput(self, now: float, ended: int) -> float:
        """Jobs this worker ends a second, over the last few minutes (what queue ETAs use)."""
        self.ended.append((now, ended))
        while len(self.ended) > 1 and now - self.ended[1][0] >= THROUGHPUT_WINDOW:
            self.ended.popleft()
        since, before = self.ended[0]
        elapsed = now - since
        return (ended - before) / elapsed if elapsed > 0 else 0.0

    def start(self, ctx: dict[str, Any]) -> None:
        ctx.setdefault(RUNNING, 0)
        self.task = asyncio.create_task(self._beat(ctx))
        port = self.resources.settings.worker_metrics_port
        if port is not None:
            self.metrics_server, _ = start_http_server(port)
            log.info("worker.metrics port=%d", port)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        settings = self.resources.settings
        with contextlib.suppress(RedisError, OSError):
            await forget(self.resources.redis, settings.redis_namespace, self.id)

    async def _beat(self, ctx: dict[str, Any]) -> None:
        settings = self.resources.settings
        interval = settings.worker_heartbeat_seconds
        while True:
            now = time.time()
            heartbeat = Heartbeat(
                id=self.id,
                host=socket.gethostname(),
                pid=os.getpid(),
                concurrency=settings.worker_concurrency,
                running=int(ctx.get(RUNNING, 0)),
                started_at=self.started_at,
                last_seen=now,
                throughput=round(self.throughput(now, int(ctx.get(ENDED, 0))), 4),
            )
            try:
                await beat(self.resources.redis, settings.redis_namespace, heartbeat, interval)
            except (RedisError, OSError) as exc:  # Redis away: the next beat tries again
                log.warning("worker.heartbeat_failed error=%s", type(exc).__name__)
            await asyncio.sleep(interval)
