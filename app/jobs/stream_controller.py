"""GET /v1/jobs/{id}/events: a job's events as Server-Sent Events (`app.http.sse`), resumable with
Last-Event-ID, each frame's links signed for the stream (and, through a signed stream link,
expiring no later than it)."""

from __future__ import annotations

import time
from typing import Annotated, Any, cast

from litestar import Request, get
from litestar.di import Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, Parameter
from litestar.types import ASGIApp

from app.http.dependencies import admit, bearer_token, event_hub
from app.http.render import base_url
from app.http.sse import EventStream, resume_point
from app.http.state import api_state
from app.jobs import service as job_service
from app.jobs.links import verify_stream
from app.jobs.responses import frame
from app.jobs.snapshot import is_terminal, job_snapshot
from app.keys.dependencies import provide_key
from app.platform.errors import AuthenticationError, NotFoundError
from app.platform.resources import Resources
from app.platform.tables import VirtualKey
from app.platform.vocabulary import ErrorCode

_LINK_EXPIRY = "mediagate.stream_link_expiry"
"""Where a request opened through a signed stream link keeps the link's expiry (ASGI scope)."""


def link_expiry(request: Request[Any, Any, Any]) -> int | None:
    """The expiry of the signed link the request came through; None: it came with a key."""
    value: int | None = cast(dict[str, Any], request.scope).get(_LINK_EXPIRY)
    return value


async def provide_stream_key(
    request: Request[Any, Any, Any],
    resources: Resources,
    exp: Annotated[str | None, Parameter(description="a signed link's expiry")] = None,
    sig: Annotated[str | None, Parameter(description="a signed link's signature")] = None,
) -> VirtualKey:
    """The caller's key from its Authorization header, or, for a signed stream link (`exp` and
    `sig`: the job's `urls.stream`, which needs no header), the job's own key, if it may still
    be used. A tampered or expired link, or one whose key was revoked or deleted, opens nothing."""
    if sig is None or bearer_token(request.headers) is not None:
        return await provide_key(request, resources)
    job_id = request.path_params["job_id"]
    settings = resources.settings
    if not verify_stream(settings.signing_secret, job_id, exp, sig, time.time()):
        raise AuthenticationError(
            "This stream link is not valid (altered, or expired): get the job again for a fresh "
            "urls.stream.",
            code=ErrorCode.INVALID_STREAM_LINK,
        )
    cast(dict[str, Any], request.scope)[_LINK_EXPIRY] = int(str(exp))
    key = await job_service.owner(resources, job_id)
    if key is None:
        raise NotFoundError(f"No job found with id {job_id!r}.", param="job_id")
    if key.revoked_at is not None or key.deleted_at is not None:
        raise AuthenticationError(
            "The API key this link was made for has been revoked.",
            code=ErrorCode.INVALID_STREAM_LINK,
        )
    await admit(request.scope, resources, key)
    return key


@get(
    "/v1/jobs/{job_id:str}/events",
    tags=["jobs"],
    summary="Stream a job's events (SSE)",
    description=(
        "With the key's Authorization header, or with no header at all through the job's "
        "signed `urls.stream` link (`exp`, `sig`), as `new EventSource(job.urls.stream)` opens "
        "it. Reconnecting with Last-Event-ID resumes right after that event; once the job's "
        "last event was delivered, a reconnect gets 204 (EventSource then stops)."
    ),
    media_type="text/event-stream",
    dependencies={"key": Provide(provide_stream_key)},
    responses={
        200: ResponseSpec(
            data_container=str,
            media_type="text/event-stream",
            description="`id:` per-job sequence, `event:` job.*, `data:` the job object",
            generate_examples=False,
        ),
        204: ResponseSpec(
            data_container=None,
            description="The job has ended and its last event was delivered already",
            generate_examples=False,
        ),
    },
)
async def job_events(
    request: Request[Any, Any, Any],
    job_id: str,
    key: VirtualKey,
    resources: Resources,
    after: int | None = None,
    last_event_id: Annotated[
        str | None, HeaderParameter(name="Last-Event-ID", required=False)
    ] = None,
) -> ASGIApp:
    start = resume_point(last_event_id, after)
    until = link_expiry(request)
    # A stream through a signed link takes a slot of the key's link streams, not of its own.
    api = api_state(request)
    streams = api.link_streams if until else api.streams
    # Refused (429) before anything else once the key is at its cap.
    hold = streams.take(key.id, key.max_streams)
    try:
        view = await job_service.read(resources, key.id, job_id)
    except BaseException:
        hold.release()
        raise
    settings = resources.settings
    snapshot = job_snapshot(view.job, view.outputs)
    status = snapshot["status"]
    base = base_url(request, settings)
    return EventStream(
        event_hub(request),
        resources.bus,
        view.job.id,
        start,
        (f"job.{status}", snapshot) if is_terminal(status) else None,
        lambda event: frame(event, base, settings, until),
        settings.sse_max_seconds,
        hold,
    )
