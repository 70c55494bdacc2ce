"""What a provider charged an attempt: counted as its outputs arrive, recorded with the attempt's
end (`JobStore.finish`) or on its own when the attempt ends without one; the key's soft budget
warned of once a month."""

from __future__ import annotations

import asyncio
import logging

from app.platform.resources import Resources
from app.platform.tables import Job, VirtualKey
from app.webhooks import service as webhooks
from providers.prices import unit_cost

log = logging.getLogger("mediagate.worker")

SETTLE_SECONDS = 10.0


class Bill:
    def __init__(self) -> None:
        self.uncharged = 0
        """Micro-dollars the provider charged for outputs returned, not yet recorded."""

    def output(self, res: Resources, job: Job, index: int) -> None:
        """The provider returned output `index`: it bills for it (an image each; a video or a
        speech once, for the whole clip), whatever happens to it here afterwards."""
        spec = res.catalog.get(job.targets[job.target_index] if job.targets else job.model)
        if spec is None or spec.price is None or (index > 0 and job.type != "image"):
            return
        self.uncharged += unit_cost(spec.price, job.type, job.input) or 0

    def take(self) -> int:
        """What is uncharged, now recorded by the caller."""
        amount, self.uncharged = self.uncharged, 0
        return amount

    async def settle(self, res: Resources, job_id: str) -> None:
        """Record a charge the attempt's end did not (it stopped, was canceled or superseded, or
        a dependency failed): the provider was paid all the same. Best effort: a database that
        does not answer now loses it (and says so in the log)."""
        amount = self.take()
        if amount <= 0:
            return
        try:
            async with asyncio.timeout(SETTLE_SECONDS):
                await res.jobs.charge(job_id, amount)
        except Exception as exc:
            log.warning(
                "job.charge_lost job_id=%s micros=%d error=%s", job_id, amount, type(exc).__name__
            )


async def warn_budget(res: Resources, job: Job, key: VirtualKey) -> None:
    """The first charge past the key's soft budget this month sends `key.budget_warning`."""
    if key.soft_spend_micros_per_month is None:
        return
    try:
        await webhooks.warn_budget(res, job, key)
    except Exception as exc:  # a warning never fails the job it is about
        log.warning("key.budget_warning_failed job_id=%s error=%s", job.id, exc)
