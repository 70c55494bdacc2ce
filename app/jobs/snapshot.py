"""The job object as clients see it, without output URLs (the API signs those per response):
what events, webhooks and every job response are built from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.platform.tables import Job, MediaObject, iso
from app.platform.vocabulary import TERMINAL_STATUSES
from providers.prices import dollars


def job_snapshot(job: Job, outputs: Sequence[MediaObject]) -> dict[str, Any]:
    """The job object without output URLs (they are signed per response by the API)."""
    error = None
    if job.error_code is not None:
        error = {"code": job.error_code, "message": job.error_message or ""}
    return {
        "id": job.id,
        "object": "job",
        "type": job.type,
        "model": job.model,
        "provider": job.provider,
        "served_by": job.targets[job.target_index] if job.targets else job.model,
        "status": job.status,
        "progress": job.progress,
        "attempts": job.attempts,
        "priority": job.priority,
        "deadline_at": iso(job.deadline_at),
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "input": job.input,
        "outputs": [
            {
                "id": m.id,
                "index": m.index,
                "content_type": m.content_type,
                "bytes": m.bytes,
                "sha256": m.sha256,
            }
            for m in outputs
        ],
        "error": error,
        "cost": cost_of(job),
        "batch_id": job.batch_id,
        "custom_id": job.custom_id,
    }


def cost_of(job: Job) -> dict[str, Any]:
    """USD at the models' list prices: the estimate made at submit (every output made), and
    once the job has ended what the providers charged for it (every output they returned, on
    every attempt). Null where the model has no price."""
    priced = job.cost_estimate_micros is not None
    ended = job.status in TERMINAL_STATUSES
    return {
        "currency": "usd",
        "estimate": dollars(job.cost_estimate_micros),
        "actual": dollars(job.cost_micros) if priced and ended else None,
    }


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES
