"""OpenAI-compatible images: `POST /v1/images/generations` and `POST /v1/images/edits`.

Each request runs as a job and the response waits for it (up to `sync_wait_seconds`; past that,
or with `Prefer: respond-async`, the answer is 202 with the job). `url` outputs are mediagate's own
signed links, never the provider's."""

from __future__ import annotations

import base64
from typing import Any, Literal

from litestar import Request, Response, post
from pydantic import Field

from app.http.bodies import Body, prefers_async, read_body
from app.http.dependencies import event_hub, waiting
from app.http.errors import job_failure_response
from app.http.schemas import RequestModel
from app.jobs import service as job_service
from app.jobs.schemas import ACCEPTED
from app.keys.dependencies import KEY_DEPENDENCY
from app.media.responses import media_url
from app.media.service import outputs_for
from app.openai_compat.common import accepted, submit_request
from app.openai_compat.schemas import ImageBase64, ImagesResponse, ImageUrl
from app.platform.errors import InvalidRequestError
from app.platform.events import EventHub
from app.platform.resources import Resources
from app.platform.tables import Job, VirtualKey, as_utc
from app.platform.vocabulary import JobStatus


class ImageRequest(RequestModel):
    prompt: str
    model: str | None = None
    n: int | None = None  # checked against the model's own limit, as /v1/jobs checks it
    size: str | None = None
    quality: str | None = None
    style: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    user: str | None = Field(default=None, max_length=256)


async def _images_response(
    request: Request[Any, Any, Any], resources: Resources, job: Job, response_format: str
) -> ImagesResponse:
    data: list[ImageUrl | ImageBase64] = []
    for media in await outputs_for(resources, job.id):
        if response_format == "b64_json":
            raw = b"".join([c async for c in resources.store.iter_bytes(media.storage_key)])
            data.append(ImageBase64(b64_json=base64.b64encode(raw).decode()))
        else:
            data.append(ImageUrl(url=media_url(request, resources.settings, media.id)))
    return ImagesResponse(created=int(as_utc(job.created_at).timestamp()), data=data)


async def _run(
    request: Request[Any, Any, Any],
    resources: Resources,
    hub: EventHub,
    key: VirtualKey,
    request_body: Body[ImageRequest],
    file_params: tuple[str, ...],
) -> Response[Any]:
    body = request_body.fields
    params: dict[str, Any] = {"prompt": body.prompt}
    for name in ("n", "size", "quality", "style"):
        value = getattr(body, name)
        if value is not None:
            params[name] = value
    model = body.model or resources.settings.default_image_model
    if prefers_async(request):
        job = await submit_request(
            resources, key, "image", model, params, request_body, file_params=file_params
        )
        return accepted(request, resources, job)
    with waiting(request, key):  # before the submit: a refused request changes nothing
        job = await submit_request(
            resources, key, "image", model, params, request_body, file_params=file_params
        )
        job = await job_service.wait(resources, hub, job.id, resources.settings.sync_wait_seconds)
    if job.status == JobStatus.SUCCEEDED:
        fmt = body.response_format or "url"
        return Response(await _images_response(request, resources, job, fmt))
    if job.status in (JobStatus.FAILED, JobStatus.CANCELED):
        return job_failure_response(job)
    return accepted(request, resources, job)


@post(
    "/v1/images/generations",
    dependencies=KEY_DEPENDENCY,
    tags=["openai"],
    summary="Create images (OpenAI-compatible)",
    responses=ACCEPTED,
    status_code=200,
)
async def create_images(
    request: Request[Any, Any, Any],
    key: VirtualKey,
    resources: Resources,
) -> Response[ImagesResponse]:
    body = await read_body(request, ImageRequest, resources.settings.max_upload_bytes)
    if body.files:
        raise InvalidRequestError("image generations take no files; use /v1/images/edits")
    return await _run(request, resources, event_hub(request), key, body, ())


@post(
    "/v1/images/edits",
    dependencies=KEY_DEPENDENCY,
    tags=["openai"],
    summary="Edit an image (OpenAI-compatible, multipart)",
    responses=ACCEPTED,
    status_code=200,
)
async def edit_images(
    request: Request[Any, Any, Any],
    key: VirtualKey,
    resources: Resources,
) -> Response[ImagesResponse]:
    body = await read_body(request, ImageRequest, resources.settings.max_upload_bytes)
    if "image" not in body.files:
        raise InvalidRequestError(
            "image is required: send the image to edit as a file", param="image"
        )
    return await _run(request, resources, event_hub(request), key, body, ("image",))
