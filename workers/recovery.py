"""Cron tasks that keep the queue honest: queue again the jobs Redis lost (the outbox), and forget
idempotency keys past their time."""

from __future__ import annotations

import logging
from typing import Any

from app.jobs import idempotency, outbox
from app.platform.resources import Resources

log = logging.getLogger("mediagate.worker")


async def recover_lost_jobs(ctx: dict[str, Any]) -> dict[str, int]:
    res: Resources = ctx["resources"]
    recovery = await outbox.recover_jobs(res)
    if recovery.queued or recovery.running:
        log.warning("outbox.recovered queued=%d running=%d", recovery.queued, recovery.running)
    late = await outbox.cancel_late_jobs(res)
    return {"queued": recovery.queued, "running": recovery.running, "late": late}


async def forget_idempotency_keys(ctx: dict[str, Any]) -> int:
    res: Resources = ctx["resources"]
    async with res.sessionmaker() as session:
        forgotten = await idempotency.forget_expired(session, res.settings.idempotency_ttl_seconds)
        await session.commit()
    return forgotten
