"""The webhook delivery task: one attempt per run, arq retries it with backoff until it is
delivered or a day has passed."""

from __future__ import annotations

from typing import Any

from arq import Retry

from app.core import webhooks
from app.core.resources import Resources
from workers.lease import held_lease


async def deliver_webhook(ctx: dict[str, Any], delivery_id: str) -> str:
    res: Resources = ctx["resources"]
    async with held_lease(res, ctx["job_id"]):
        status, delay = await webhooks.deliver(res, delivery_id)
    if delay is not None:
        raise Retry(defer=delay)
    return status
