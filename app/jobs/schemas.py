"""The shapes of /v1/jobs: what a submit takes and what every job response is."""

from __future__ import annotations

from typing import Any, Literal

from litestar.openapi.datastructures import ResponseSpec
from pydantic import Field

from app.http.schemas import ListModel, RequestModel, ResponseModel
from app.platform.vocabulary import JobStatus, JobType, Priority


class WebhookSpec(RequestModel):
    url: str = Field(min_length=1, max_length=2000)
    events: list[str] | None = None
    """Default: job.succeeded, job.failed, job.canceled."""


class JobCreate(RequestModel):
    type: JobType
    model: str = Field(min_length=1, max_length=200)
    input: dict[str, Any]
    priority: Priority = Priority.NORMAL
    webhook: WebhookSpec | None = None
    deadline_seconds: int | None = Field(default=None, ge=1, le=7 * 86_400)
    """Not started within this many seconds: the job ends `canceled`, `deadline_exceeded`."""


class JobOutput(ResponseModel):
    id: str
    index: int
    url: str
    content_type: str
    bytes: int
    sha256: str


class JobErrorInfo(ResponseModel):
    code: str
    message: str


class JobCost(ResponseModel):
    """USD at list prices: `estimate` at submit, `actual` (what the providers charged, retries
    included) once the job has ended; null for a model without a price."""

    currency: Literal["usd"] = "usd"
    estimate: float | None
    actual: float | None


class QueuePlace(ResponseModel):
    """A queued job's approximate place: jobs served before it (running ones included) and
    seconds until it starts at the pool's throughput of the last five minutes (null: none
    measured yet)."""

    position: int
    eta_seconds: int | None


class JobUrls(ResponseModel):
    """Absolute links (under MEDIAGATE_PUBLIC_URL when set): the job, its cancel, and its event
    stream signed for `new EventSource(...)` (no header needed; expires)."""

    get: str
    cancel: str
    stream: str


class JobObject(ResponseModel):
    id: str
    object: Literal["job"] = "job"
    type: str
    model: str
    provider: str
    served_by: str
    status: JobStatus
    progress: int
    attempts: int
    priority: Priority
    deadline_at: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    input: dict[str, Any]
    outputs: list[JobOutput]
    error: JobErrorInfo | None
    cost: JobCost
    batch_id: str | None
    custom_id: str | None
    """The client's id for the job within its batch."""
    urls: JobUrls
    queue: QueuePlace | None = None
    """Shown by GET /v1/jobs/{id} while the job is queued."""


class JobList(ListModel):
    data: list[JobObject]
    has_more: bool
    first_id: str | None
    last_id: str | None


class JobDeleted(ResponseModel):
    id: str
    object: Literal["job.deleted"] = "job.deleted"
    deleted: bool = True


ACCEPTED = {
    202: ResponseSpec(
        data_container=JobObject,
        description="The job did not end within `sync_wait_seconds` (or `Prefer: "
        "respond-async` asked not to wait): follow it at /v1/jobs/{id}.",
    )
}
"""What the synchronous endpoints answer besides their result, for the OpenAPI document."""
