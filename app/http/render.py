"""Turns stored snapshots into what clients see: output links signed for this response."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request

from app.jobs.service import job_snapshot
from app.media.service import signed_path
from app.platform.settings import Settings
from app.platform.tables import Job, MediaObject, VirtualKey, WebhookDelivery, iso


def base_url(request: Request[Any, Any, Any], settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def signed_url(base: str, settings: Settings, media_id: str) -> str:
    expires = int(time.time()) + settings.media_url_ttl_seconds
    return base + signed_path(settings.signing_secret, media_id, expires)


def media_url(request: Request[Any, Any, Any], settings: Settings, media_id: str) -> str:
    return signed_url(base_url(request, settings), settings, media_id)


def linked(base: str, settings: Settings, snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot with a fresh signed link (under `base`) on each output."""
    outputs = [
        {**o, "url": signed_url(base, settings, o["id"])} for o in snapshot.get("outputs", [])
    ]
    return {**snapshot, "outputs": outputs}


def with_urls(
    request: Request[Any, Any, Any], settings: Settings, snapshot: dict[str, Any]
) -> dict[str, Any]:
    return linked(base_url(request, settings), settings, snapshot)


def render_job(
    request: Request[Any, Any, Any], settings: Settings, job: Job, outputs: list[MediaObject]
) -> dict[str, Any]:
    return with_urls(request, settings, job_snapshot(job, outputs))


def render_key(key: VirtualKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "object": "virtual_key",
        "name": key.name,
        "prefix": key.prefix,
        "created_at": iso(key.created_at),
        "revoked_at": iso(key.revoked_at),
        "deleted_at": iso(key.deleted_at),
        "max_bytes": key.max_bytes,
        "max_objects": key.max_objects,
        "max_concurrent_jobs": key.max_concurrent_jobs,
        "retention_days": key.retention_days,
        "requests_per_minute": key.requests_per_minute,
        "max_priority": key.max_priority,
        "webhook_url": key.webhook_url,
        "webhook_events": key.webhook_events,
        "webhook_secret": key.webhook_secret,
        "purge": None
        if key.purge_status is None
        else {
            "status": key.purge_status,
            "deleted_objects": key.purge_deleted_objects,
            "finished_at": iso(key.purge_finished_at),
        },
    }


def render_delivery(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "object": "webhook_delivery",
        "job_id": delivery.job_id,
        "event": delivery.event,
        "url": delivery.url,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "created_at": iso(delivery.created_at),
        "delivered_at": iso(delivery.delivered_at),
    }
