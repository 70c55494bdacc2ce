"""The webhook delivery task: one attempt per run, arq retries it with backoff until it is
delivered or a day has passed."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from arq import Retry

from app.platform import tracing
from app.platform.resources import Resources
from app.webhooks import service as webhooks
from workers.lease import held_lease

WEBHOOK_SLOTS = "webhook_slots"
"""The worker context's semaphore: how many of its slots may deliver webhooks at once."""


async def deliver_webhook(
    ctx: dict[str, Any], delivery_id: str, trace: dict[str, str] | None = None
) -> str:
    res: Resources = ctx["resources"]
    slots: asyncio.Semaphore = ctx[WEBHOOK_SLOTS]
    if slots.locked():
        # The worker's share of slots for deliveries is taken: give this slot back to the
        # generation jobs and come back in a moment (not an attempt: nothing was sent).
        raise Retry(defer=random.uniform(0.5, 1.5))
    async with slots, held_lease(res, ctx["job_id"]):
        with tracing.continued("webhook.deliver", trace, delivery_id=delivery_id):
            status, delay = await webhooks.deliver(res, delivery_id)
    if delay is not None:
        raise Retry(defer=delay)
    return status
