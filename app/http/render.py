"""Turns stored snapshots into what clients see: output links signed for this response, under the
URL the client reached us at (or `MEDIAGATE_PUBLIC_URL`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request

from app.jobs.schemas import JobObject
from app.jobs.snapshot import job_snapshot
from app.media.service import signed_url, with_signed_links
from app.platform.settings import Settings
from app.platform.tables import Job, MediaObject


def base_url(request: Request[Any, Any, Any], settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def media_url(request: Request[Any, Any, Any], settings: Settings, media_id: str) -> str:
    return signed_url(base_url(request, settings), settings, media_id)


def with_urls(
    request: Request[Any, Any, Any], settings: Settings, snapshot: dict[str, Any]
) -> dict[str, Any]:
    return with_signed_links(base_url(request, settings), settings, snapshot)


def render_job(
    request: Request[Any, Any, Any],
    settings: Settings,
    job: Job,
    outputs: Sequence[MediaObject],
    queue: dict[str, Any] | None = None,
) -> JobObject:
    data = with_urls(request, settings, job_snapshot(job, outputs))
    if queue is not None:
        data["queue"] = queue
    return JobObject.model_validate(data)
