"""What the OpenAI-compatible endpoints share: submitting a request's job with its uploaded
inputs, holding a request while it waits for its job (or not, with `Prefer: respond-async`), and
the 202 that hands the job over."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Request, Response

from app.http.bodies import Body, prefers_async
from app.jobs import service as job_service
from app.jobs.responses import render_job
from app.jobs.schemas import JobObject
from app.platform.errors import InvalidRequestError, MediagateError
from app.platform.resources import Resources
from app.platform.tables import Job, VirtualKey


async def submit_request(
    resources: Resources,
    key: VirtualKey,
    media_type: str,
    model: str,
    params: dict[str, Any],
    body: Body[Any],
    *,
    file_params: tuple[str, ...] = (),
    openai_names: Mapping[str, str] | None = None,
) -> Job:
    """Submit the request's job with its files as inputs. Input errors name OpenAI's parameter
    (`size`, `response_format`), not ours (`input.size`, `input.format`)."""
    for name in body.files:
        if name not in file_params:
            raise InvalidRequestError(f"{name!r} is not supported here", param=name)
    try:
        return await job_service.submit_with_uploads(
            resources, key, media_type, model, params, body.files, body.claim, webhook=body.webhook
        )
    except MediagateError as exc:
        if exc.param and exc.param.startswith("input."):
            ours = exc.param.removeprefix("input.")
            exc.param = (openai_names or {}).get(ours, ours)
        raise


def accepted(
    request: Request[Any, Any, Any], resources: Resources, job: Job
) -> Response[JobObject]:
    """202 with the job: the client follows it at /v1/jobs/{id} (or its events)."""
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if prefers_async(request):
        headers["Preference-Applied"] = "respond-async"
    return Response(
        render_job(request, resources.settings, job, []), status_code=202, headers=headers
    )
