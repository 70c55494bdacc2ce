"""Request and response shapes, for validation at the edge and the OpenAPI schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.platform.vocabulary import JobStatus, JobType, Priority, PurgeStatus


def _nul_path(value: Any, path: str) -> str | None:
    """Where in `value` a NUL character sits (PostgreSQL cannot store one in text), or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = _nul_path(key, path) or _nul_path(item, f"{path}.{key}")
            if where:
                return where
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            where = _nul_path(item, f"{path}[{index}]")
            if where:
                return where
    return None


class RequestModel(BaseModel):
    """A request body: unknown fields and NUL characters (in any string, at any depth) are
    refused at the edge, so neither reaches the database."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any, info: Any) -> Any:
        where = _nul_path(value, info.field_name)
        if where:
            raise ValueError(f"{where} contains a NUL character, which is not allowed")
        return value


class JobCreate(RequestModel):
    type: JobType
    model: str = Field(min_length=1, max_length=200)
    input: dict[str, Any]
    priority: Priority = Priority.NORMAL
    webhook: WebhookSpec | None = None
    deadline_seconds: int | None = Field(default=None, ge=1, le=7 * 86_400)
    """Not started within this many seconds: the job ends `canceled`, `deadline_exceeded`."""


class JobOutput(BaseModel):
    id: str
    index: int
    url: str
    content_type: str
    bytes: int
    sha256: str


class JobErrorInfo(BaseModel):
    code: str
    message: str


class JobObject(BaseModel):
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


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobObject]
    has_more: bool
    first_id: str | None
    last_id: str | None


class KeyLimits(RequestModel):
    """Quotas and retention; null means unlimited (retention: the global default)."""

    max_bytes: int | None = Field(default=None, ge=0)
    max_objects: int | None = Field(default=None, ge=0)
    max_concurrent_jobs: int | None = Field(default=None, ge=1)
    retention_days: int | None = Field(default=None, ge=1, le=36500)
    requests_per_minute: int | None = Field(default=None, ge=1)
    max_priority: Priority | None = None
    """The highest priority the key may submit at; null: MEDIAGATE_DEFAULT_MAX_PRIORITY."""


class KeyWebhook(BaseModel):
    """A webhook for every job of the key (null url: none)."""

    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_events: list[str] | None = None


class KeyCreate(KeyLimits, KeyWebhook):
    name: str = Field(min_length=1, max_length=200)


class KeyPatch(KeyLimits, KeyWebhook):
    """Only the fields sent change; send null to lift a limit."""

    name: str | None = Field(default=None, min_length=1, max_length=200)


class WebhookSpec(RequestModel):
    url: str = Field(min_length=1, max_length=2000)
    events: list[str] | None = None
    """Default: job.succeeded, job.failed, job.canceled."""


class KeyPurge(BaseModel):
    status: PurgeStatus
    deleted_objects: int
    finished_at: str | None


class KeyObject(BaseModel):
    id: str
    object: Literal["virtual_key"] = "virtual_key"
    name: str
    prefix: str
    created_at: str
    revoked_at: str | None
    deleted_at: str | None
    max_bytes: int | None
    max_objects: int | None
    max_concurrent_jobs: int | None
    retention_days: int | None
    requests_per_minute: int | None
    max_priority: str | None
    webhook_url: str | None
    webhook_events: list[str] | None
    webhook_secret: str | None
    """Verify our webhooks with it (Standard Webhooks); rotate with POST .../webhook-secret."""
    purge: KeyPurge | None
    """Progress of deleting the key's media, once the key is deleted."""


class KeyCreated(KeyObject):
    key: str
    """The plaintext key: shown once, never stored."""


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyObject]


class AliasCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
    targets: list[str] = Field(min_length=1, max_length=8)
    """Catalog model names, tried in order: the next one serves when one keeps failing."""
