"""GET /v1/jobs/{id}/events: a job's events as Server-Sent Events, resumable with Last-Event-ID.

History comes from the job's Redis stream; live events from the process's shared EventHub.
sse-starlette's EventSourceResponse does the pings, disconnect detection and shutdown.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, cast

import anyio
import orjson
from litestar import Request, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter
from litestar.types import ASGIApp
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.api.dependencies import KEY_DEPENDENCY
from app.api.render import with_urls
from app.core import jobs as job_service
from app.core.errors import InvalidRequestError
from app.core.events import EventBus, EventHub, JobEvent
from app.core.models import VirtualKey
from app.core.resources import Resources

Render = Callable[[dict[str, Any]], dict[str, Any]]


SHUTDOWN_CHECK_SECONDS = 1.0


def _sse(event: JobEvent, render: Render) -> ServerSentEvent:
    return ServerSentEvent(
        data=orjson.dumps(render(event.data)).decode(), event=event.event, id=str(event.id)
    )


async def job_event_stream(
    hub: EventHub,
    bus: EventBus,
    job_id: str,
    after: int,
    fallback: dict[str, Any],
    render: Render,
    max_seconds: float,
    shutdown: anyio.Event | None = None,
) -> AsyncIterator[ServerSentEvent]:
    """History after `after`, then live events, until the terminal one, the lifetime cap, or the
    server shutting down (`shutdown` set): the stream then ends cleanly, and the client resumes
    elsewhere with Last-Event-ID."""
    # Subscribe before reading history so nothing published in between is missed.
    async with hub.subscribe(job_id) as sub:
        last = after
        for event in await bus.history(job_id, after):
            last = event.id
            yield _sse(event, render)
            if event.terminal:
                return
        if job_service.is_terminal(fallback["status"]):
            # The stream expired or Redis lost it; the database still knows how the job ended.
            yield _sse(JobEvent(last + 1, f"job.{fallback['status']}", job_id, fallback), render)
            return
        deadline = asyncio.get_running_loop().time() + max_seconds
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or (shutdown is not None and shutdown.is_set()):
                return
            if sub.resync.is_set():
                sub.resync.clear()
                for event in await bus.history(job_id, last):
                    last = event.id
                    yield _sse(event, render)
                    if event.terminal:
                        return
            try:
                live = await asyncio.wait_for(
                    sub.queue.get(), timeout=min(remaining, SHUTDOWN_CHECK_SECONDS)
                )
            except TimeoutError:
                continue
            if live is None:
                return  # the hub is shutting down
            if live.id <= last:
                continue
            pending = [live] if live.id == last + 1 else await bus.history(job_id, last)
            for event in pending:
                last = event.id
                yield _sse(event, render)
                if event.terminal:
                    return


def _resume_point(last_event_id: str | None, after: int | None) -> int:
    raw = last_event_id if last_event_id not in (None, "") else after
    if raw is None:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequestError(
            "Last-Event-ID must be an event id (an integer).", param="Last-Event-ID"
        ) from None
    if value < 0:
        raise InvalidRequestError("after must be 0 or greater.", param="after")
    return value


@get(
    "/v1/jobs/{job_id:str}/events",
    tags=["jobs"],
    summary="Stream a job's events (SSE)",
    media_type="text/event-stream",
    dependencies=KEY_DEPENDENCY,
    responses={
        200: ResponseSpec(
            data_container=str,
            media_type="text/event-stream",
            description="`id:` per-job sequence, `event:` job.*, `data:` the job object",
            generate_examples=False,
        )
    },
)
async def job_events(
    request: Request[Any, Any, Any],
    job_id: str,
    key: VirtualKey,
    resources: Resources,
    hub: EventHub,
    after: int | None = None,
    last_event_id: Annotated[
        str | None, HeaderParameter(name="Last-Event-ID", required=False)
    ] = None,
) -> ASGIApp:
    start = _resume_point(last_event_id, after)
    async with resources.sessionmaker() as session:
        job = await job_service.get_job(session, key.id, job_id)
        outputs = (await job_service.outputs_of(session, [job.id]))[job.id]
    settings = resources.settings
    snapshot = job_service.job_snapshot(job, outputs)
    shutdown = anyio.Event()
    stream = job_event_stream(
        hub,
        resources.bus,
        job.id,
        start,
        snapshot,
        lambda data: with_urls(request, settings, data),
        settings.sse_max_seconds,
        shutdown,
    )
    response = EventSourceResponse(
        stream,
        ping=settings.sse_ping_seconds,
        send_timeout=30,
        # On SIGTERM the library sets `shutdown`; the stream ends itself within a second and
        # closes properly (a cancelled one would cut the chunked body short).
        shutdown_event=shutdown,
        shutdown_grace_period=SHUTDOWN_CHECK_SECONDS * 3,
    )
    return cast(ASGIApp, response)  # a Starlette response is an ASGI app; Litestar runs it as is
