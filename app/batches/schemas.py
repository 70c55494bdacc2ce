"""The shapes of /v1/batches."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.http.schemas import ListModel, ResponseModel
from app.jobs.schemas import JobCreate
from app.platform.vocabulary import BatchStatus

MAX_BATCH = 1000


class BatchItem(JobCreate):
    """One job of a batch: a `POST /v1/jobs` body with the client's id for it."""

    custom_id: str = Field(min_length=1, max_length=64)


class BatchCounts(ResponseModel):
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    canceled: int


class BatchCost(ResponseModel):
    """USD at list prices: the jobs' estimates, and what the providers charged so far."""

    currency: Literal["usd"] = "usd"
    estimate: float | None
    actual: float | None


class BatchObject(ResponseModel):
    id: str
    object: Literal["batch"] = "batch"
    status: BatchStatus
    created_at: str
    cancel_requested_at: str | None
    request_counts: BatchCounts
    cost: BatchCost
    urls: dict[str, str]
    """`events` (one SSE stream for the whole batch) and `results` (JSONL)."""


class BatchList(ListModel):
    data: list[BatchObject]
    has_more: bool
