"""A short lease on a running job, renewed while the task runs: arq's in-progress lock in Redis
(arq's own lasts the whole job timeout, hours for video) and the job's heartbeat in the database.
If the worker dies, the lock lapses within one lease and another worker runs the job again; if
Redis lost the job too, the outbox reconciler sees the silent heartbeat and queues it again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from arq.constants import in_progress_key_prefix

from app.core.limits import acquire_slot
from app.core.outbox import beat
from app.core.resources import Resources


async def _renew(res: Resources, job_id: str, heartbeat: bool, slot: str | None) -> None:
    settings = res.settings
    lease_ms = settings.job_lease_seconds * 1000
    key = in_progress_key_prefix + job_id
    first = True
    while True:
        # Either store may be down for a while; the next round tries again.
        with contextlib.suppress(Exception):
            await res.redis.pexpire(key, lease_ms)  # at once: arq set it for the whole timeout
        if heartbeat and not first:
            with contextlib.suppress(Exception):
                await beat(res, job_id)
        if slot is not None and not first:
            with contextlib.suppress(Exception):
                await acquire_slot(
                    res.redis,
                    settings.redis_namespace,
                    settings.provider_caps(),
                    slot,
                    job_id,
                    settings.job_lease_seconds,
                )
        first = False
        await asyncio.sleep(res.settings.job_lease_seconds / 3)


@contextlib.asynccontextmanager
async def held_lease(
    res: Resources, job_id: str, *, heartbeat: bool = True, slot: str | None = None
) -> AsyncIterator[None]:
    """`heartbeat=False` for tasks that are not generation jobs (no job row to beat); `slot`, the
    provider whose pool-wide slot the job holds and renews with its lease."""
    renewer = asyncio.create_task(_renew(res, job_id, heartbeat, slot))
    try:
        yield
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
