"""A short lease on arq's in-progress lock, renewed while the task runs: if its worker dies, the
lock lapses within one lease and another worker runs the job again (arq's own lock lasts the
whole job timeout, which is hours for video)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from arq.constants import in_progress_key_prefix

from app.core.resources import Resources


async def _renew(res: Resources, job_id: str) -> None:
    lease_ms = res.settings.job_lease_seconds * 1000
    key = in_progress_key_prefix + job_id
    while True:
        with contextlib.suppress(Exception):
            await res.redis.pexpire(key, lease_ms)
        await asyncio.sleep(res.settings.job_lease_seconds / 3)


@contextlib.asynccontextmanager
async def held_lease(res: Resources, job_id: str) -> AsyncIterator[None]:
    renewer = asyncio.create_task(_renew(res, job_id))
    try:
        yield
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
