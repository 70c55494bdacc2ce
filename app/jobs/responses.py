"""A job as clients see it: its object (`JobObject`) and its events' SSE frames, with output links
signed for the response, under the URL the client reached us at."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from litestar import Request
from sse_starlette import ServerSentEvent

from app.jobs.schemas import JobObject
from app.jobs.snapshot import job_snapshot
from app.media.responses import with_urls
from app.media.service import with_signed_links
from app.platform.events import JobEvent
from app.platform.settings import Settings
from app.platform.tables import Job, MediaObject


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


def frame(event: JobEvent, base: str, settings: Settings, until: int | None = None) -> bytes:
    """The event as SSE bytes with links under `base`; rendered once per process and base (and,
    for streams read through a signed link, per the link's expiry `until`, which none of its
    links outlives)."""
    cache_key = base if until is None else f"{base}#{until}"
    cached = event.frames.get(cache_key)
    if cached is None:
        data = orjson.dumps(with_signed_links(base, settings, event.data, until)).decode()
        cached = ServerSentEvent(data=data, event=event.event, id=str(event.id)).encode()
        event.frames[cache_key] = cached
    return cached
