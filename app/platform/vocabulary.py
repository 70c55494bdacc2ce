"""The closed vocabulary clients see and code compares against: job statuses, types and
priorities, event types, error codes, and the states of deliveries, purges and media. Each is a
`StrEnum`: a member is its string (stored, sent and compared as such), and a typo is an
AttributeError at import, not a condition that is silently never true."""

from __future__ import annotations

from enum import StrEnum

from providers.base import MEDIA_TYPES, MediaType

JobType = MediaType
"""A job's `type`: what its model makes (the providers' own vocabulary)."""
JOB_TYPES = MEDIA_TYPES


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
"""A job in one of these may still change: it can be canceled, and its worker may still write."""


class Priority(StrEnum):
    """The order jobs are served in (app/jobs/queue.py); listed highest first."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class EventType(StrEnum):
    """A job's progress events (SSE `event:` and webhook `type`)."""

    QUEUED = "job.queued"
    STARTED = "job.started"
    PROGRESS = "job.progress"
    OUTPUT = "job.output"
    RETRYING = "job.retrying"
    SUCCEEDED = "job.succeeded"
    FAILED = "job.failed"
    CANCELED = "job.canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_EVENTS


TERMINAL_EVENTS = frozenset({EventType.SUCCEEDED, EventType.FAILED, EventType.CANCELED})


class BatchEvent(StrEnum):
    """The event that ends a batch's stream (its other events are its jobs' endings)."""

    COMPLETED = "batch.completed"


class BatchStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    """Some of its jobs are queued or running."""
    COMPLETED = "completed"
    """Every job has ended (succeeded, failed or canceled)."""
    CANCELING = "canceling"
    CANCELED = "canceled"
    """Canceled by its owner, and every job has ended."""


class KeyEvent(StrEnum):
    """Webhook events about a key rather than one job (sent to the key's webhook URL)."""

    BUDGET_WARNING = "key.budget_warning"


def ending_event(status: JobStatus | str) -> EventType:
    """The event that announces a job ending in `status`."""
    return EventType(f"job.{status}")


class ErrorCode(StrEnum):
    """Every `error.code` mediagate answers with, in an error response or on a job."""

    # the request
    INVALID_REQUEST = "invalid_request"
    INVALID_JSON = "invalid_json"
    MODEL_NOT_FOUND = "model_not_found"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    GONE = "gone"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    JOB_NOT_CANCELABLE = "job_not_cancelable"
    JOB_CANCELED = "job_canceled"
    WEBHOOK_PENDING = "webhook_pending"
    VIDEO_NOT_READY = "video_not_ready"
    MEDIA_EXPIRED = "media_expired"
    MEDIA_MISSING = "media_missing"
    # who is asking
    MISSING_API_KEY = "missing_api_key"
    INVALID_API_KEY = "invalid_api_key"
    INVALID_STREAM_LINK = "invalid_stream_link"
    INVALID_ADMIN_KEY = "invalid_admin_key"
    TOO_MANY_FAILED_AUTHENTICATIONS = "too_many_failed_authentications"
    PRIORITY_NOT_ALLOWED = "priority_not_allowed"
    # limits
    STORAGE_QUOTA_EXCEEDED = "storage_quota_exceeded"
    CONCURRENCY_LIMIT_EXCEEDED = "concurrency_limit_exceeded"
    BUDGET_EXCEEDED = "budget_exceeded"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    QUEUE_FULL = "queue_full"
    QUEUE_SHARE_EXCEEDED = "queue_share_exceeded"
    TOO_MANY_UPLOADS = "too_many_uploads"
    TOO_MANY_STREAMS = "too_many_streams"
    TOO_MANY_WAITS = "too_many_waits"
    # how a job ended without output
    CONTENT_POLICY_VIOLATION = "content_policy_violation"
    PROVIDER_AUTH_FAILED = "provider_auth_failed"
    PROVIDER_QUOTA_EXCEEDED = "provider_quota_exceeded"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    PROVIDER_ERROR = "provider_error"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    CANCELED = "canceled"
    """A canceled video's `error.code` (OpenAI's video object)."""
    # ours
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"


JOB_ERROR_CODES = (
    ErrorCode.CONTENT_POLICY_VIOLATION,
    ErrorCode.INVALID_REQUEST,
    ErrorCode.PROVIDER_AUTH_FAILED,
    ErrorCode.PROVIDER_QUOTA_EXCEEDED,
    ErrorCode.PROVIDER_UNAVAILABLE,
    ErrorCode.PROVIDER_ERROR,
    ErrorCode.TIMEOUT,
    ErrorCode.STORAGE_QUOTA_EXCEEDED,
    ErrorCode.WORKER_LOST,
    ErrorCode.DEADLINE_EXCEEDED,
    ErrorCode.INTERNAL_ERROR,
)
"""What a failed (or, for `deadline_exceeded`, canceled) job's `error.code` may be."""


class DeliveryStatus(StrEnum):
    """A webhook delivery: retried while `pending`."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class PurgeStatus(StrEnum):
    """How far deleting a deleted key's media has got."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"


class Variant(StrEnum):
    """What a media object is to its job."""

    OUTPUT = "output"
    INPUT = "input"
    THUMBNAIL = "thumbnail"
