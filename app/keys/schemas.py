"""The shapes of /admin/keys."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.http.schemas import ListModel, RequestModel, ResponseModel
from app.platform.tables import VirtualKey, iso
from app.platform.vocabulary import Priority, PurgeStatus
from providers.prices import dollars


class KeyLimits(RequestModel):
    """Quotas and retention; null means unlimited (retention: the global default)."""

    max_bytes: int | None = Field(default=None, ge=0)
    max_objects: int | None = Field(default=None, ge=0)
    max_concurrent_jobs: int | None = Field(default=None, ge=1)
    max_queued_jobs: int | None = Field(default=None, ge=1)
    """The key's share of the queue: more of its jobs waiting get 429 queue_share_exceeded;
    null: MEDIAGATE_MAX_QUEUED_PER_KEY."""
    max_streams: int | None = Field(default=None, ge=1)
    """Event streams (its own and through its signed links, counted apart) the key may hold on
    one API process; null: MEDIAGATE_MAX_STREAMS_PER_KEY."""
    retention_days: int | None = Field(default=None, ge=1, le=36500)
    requests_per_minute: int | None = Field(default=None, ge=1)
    max_priority: Priority | None = None
    """The highest priority the key may submit at; null: MEDIAGATE_DEFAULT_MAX_PRIORITY."""
    max_spend_per_month: float | None = Field(default=None, ge=0, le=1e9)
    """Hard budget in USD a calendar month (UTC): past it, submits get 429 budget_exceeded."""
    soft_spend_per_month: float | None = Field(default=None, ge=0, le=1e9)
    """Soft budget in USD a month: crossing it sends `key.budget_warning` once that month."""


class KeyWebhook(BaseModel):
    """A webhook for every job of the key (null url: none)."""

    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_events: list[str] | None = None


class KeyCreate(KeyLimits, KeyWebhook):
    name: str = Field(min_length=1, max_length=200)


class KeyPatch(KeyLimits, KeyWebhook):
    """Only the fields sent change; send null to lift a limit."""

    name: str | None = Field(default=None, min_length=1, max_length=200)


class KeyPurge(ResponseModel):
    status: PurgeStatus
    deleted_objects: int
    finished_at: str | None


class KeyObject(ResponseModel):
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
    max_queued_jobs: int | None
    max_streams: int | None
    retention_days: int | None
    requests_per_minute: int | None
    max_priority: Priority | None
    max_spend_per_month: float | None
    soft_spend_per_month: float | None
    webhook_url: str | None
    webhook_events: list[str] | None
    webhook_secret: str | None
    """Verify our webhooks with it (Standard Webhooks); rotate with POST .../webhook-secret."""
    purge: KeyPurge | None
    """Progress of deleting the key's media, once the key is deleted."""

    @classmethod
    def of(cls, key: VirtualKey) -> KeyObject:
        purge = None
        if key.purge_status is not None:
            purge = KeyPurge(
                status=key.purge_status,
                deleted_objects=key.purge_deleted_objects,
                finished_at=iso(key.purge_finished_at),
            )
        return KeyObject(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            created_at=iso(key.created_at) or "",
            revoked_at=iso(key.revoked_at),
            deleted_at=iso(key.deleted_at),
            max_bytes=key.max_bytes,
            max_objects=key.max_objects,
            max_concurrent_jobs=key.max_concurrent_jobs,
            max_queued_jobs=key.max_queued_jobs,
            max_streams=key.max_streams,
            retention_days=key.retention_days,
            requests_per_minute=key.requests_per_minute,
            max_priority=key.max_priority,
            max_spend_per_month=dollars(key.max_spend_micros_per_month),
            soft_spend_per_month=dollars(key.soft_spend_micros_per_month),
            webhook_url=key.webhook_url,
            webhook_events=key.webhook_events,
            webhook_secret=key.webhook_secret,
            purge=purge,
        )


class KeyCreated(KeyObject):
    key: str
    """The plaintext key: shown once, never stored."""


class KeyList(ListModel):
    data: list[KeyObject]
