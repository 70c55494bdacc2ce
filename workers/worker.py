"""arq worker settings built from our Settings (nothing is read from the environment here)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from arq import cron, func
from arq.typing import WorkerCoroutine
from arq.worker import Worker

from app.jobs.transitions.store import job_store
from app.platform import tracing
from app.platform.arq_seam import SUPERSEDED_JOBS, ResilientWorker
from app.platform.redis_keys import queue_name
from app.platform.resources import Resources, open_resources, redis_settings
from app.platform.settings import Settings
from app.platform.tasks import GENERATE_TASK, PURGE_KEY_TASK, WEBHOOK_TASK, deserialize, serialize
from workers.generate import generate_media
from workers.heartbeat import Heart
from workers.lease import held_lease
from workers.media_tasks import (
    purge_key_media,
    reconcile_storage,
    resume_purges,
    sweep_expired_media,
)
from workers.recovery import forget_idempotency_keys, recover_lost_jobs
from workers.webhooks import WEBHOOK_SLOTS, deliver_webhook

log = logging.getLogger("mediagate.worker")

# Our own attempt counter (jobs.attempts) decides when to give up; arq's must never fire first,
# or it would drop a job without telling the database.
ARQ_MAX_TRIES = 1_000_000  # waiting for a provider slot is a deferral too, and may be long


CronTask = Callable[[dict[str, Any]], Awaitable[Any]]


def leased(task: CronTask) -> WorkerCoroutine:
    """A cron task that holds the in-progress lease while it runs, as every task must."""

    @functools.wraps(task)
    async def run(ctx: dict[str, Any]) -> Any:
        async with held_lease(ctx["resources"], ctx["job_id"]):
            return await task(ctx)

    return cast(WorkerCoroutine, run)


def worker_settings(settings: Settings, *, resources: Resources | None = None) -> dict[str, Any]:
    """Keyword arguments for `arq.worker.Worker`. With `resources`, share the caller's clients
    (the embedded dev worker); otherwise open our own in `on_startup`."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx[SUPERSEDED_JOBS] = set()
        share = settings.webhook_concurrency or max(1, settings.worker_concurrency // 4)
        ctx[WEBHOOK_SLOTS] = asyncio.Semaphore(share)
        if resources is not None:
            ctx["resources"] = resources
        else:
            stack = contextlib.AsyncExitStack()
            ctx["stack"] = stack
            ctx["resources"] = await stack.enter_async_context(
                open_resources(settings, job_store=job_store, role="worker")
            )
        if tracing.setup("mediagate-worker", enabled=settings.tracing):
            tracing.instrument_engine(ctx["resources"].engine)
        heart = ctx["heart"] = Heart(ctx["resources"])
        heart.start(ctx)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        heart: Heart | None = ctx.get("heart")
        if heart is not None:
            await heart.stop()
        stack: contextlib.AsyncExitStack | None = ctx.get("stack")
        if stack is not None:
            await stack.aclose()

    redis = redis_settings(settings)
    return {
        "functions": [
            func(generate_media, name=GENERATE_TASK, max_tries=ARQ_MAX_TRIES),
            func(purge_key_media, name=PURGE_KEY_TASK, max_tries=ARQ_MAX_TRIES),
            func(deliver_webhook, name=WEBHOOK_TASK, max_tries=ARQ_MAX_TRIES),
        ],
        # Cron jobs run once per schedule across all workers (arq gives each run one job id).
        "cron_jobs": [
            cron(leased(sweep_expired_media), second={0}, unique=True, run_at_startup=True),
            cron(leased(resume_purges), second={30}, unique=True, run_at_startup=True),
            cron(leased(reconcile_storage), minute={17}, second={0}, unique=True),
            # The outbox: jobs Redis lost are queued again within seconds (and on every start).
            cron(
                leased(recover_lost_jobs),
                second=set(range(5, 60, 10)),
                unique=True,
                run_at_startup=True,
            ),
            cron(leased(forget_idempotency_keys), minute={41}, second={0}, unique=True),
        ],
        "queue_name": queue_name(settings.redis_namespace),
        "redis_settings": redis,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "max_jobs": settings.worker_concurrency,
        "poll_delay": settings.worker_poll_delay,
        # Our own deadline inside the task fails the job cleanly before arq's fires.
        "job_timeout": settings.longest_timeout + 60,
        "keep_result": 0,
        "allow_abort_jobs": True,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "max_tries": ARQ_MAX_TRIES,
    }


def build_worker(
    settings: Settings,
    *,
    resources: Resources | None = None,
    handle_signals: bool = True,
    burst: bool = False,
) -> Worker:
    return ResilientWorker(
        **worker_settings(settings, resources=resources),
        lease_seconds=settings.job_lease_seconds,
        handle_signals=handle_signals,
        burst=burst,
        # SIGTERM: take no new jobs, give running ones this long, then interrupt them (arq runs
        # an interrupted job again, and the re-run resumes its upstream task).
        job_completion_wait=settings.worker_shutdown_grace_seconds,
    )
