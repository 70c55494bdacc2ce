"""A job's events, published with what other domains add to them in the same atomic step (a
batch job's ending also feeds its batch's stream): the one way workers and services publish
one."""

from __future__ import annotations

from typing import Any

from app.batches.events import batch_ending
from app.platform.events import EventBus


async def publish(
    bus: EventBus, job_id: str, event: str, snapshot: dict[str, Any], *, attempt: int = 0
) -> int | None:
    """`EventBus.publish` with the job's domain epilogues; None: the event was refused."""
    epilogue = batch_ending(bus.namespace, event, snapshot)
    return await bus.publish(job_id, event, snapshot, attempt=attempt, epilogue=epilogue)
