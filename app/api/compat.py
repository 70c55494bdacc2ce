"""What the OpenAI-compatible endpoints share: reading JSON or multipart bodies, storing uploaded
inputs, submitting a job and waiting for it (or not, with `Prefer: respond-async`), and answering
a failed job in OpenAI's error shape."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, TypeVar

import orjson
from litestar import Request, Response
from litestar.datastructures import UploadFile
from pydantic import BaseModel, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.errors import error_response
from app.api.jobs import submit
from app.api.render import render_job
from app.core.errors import InvalidRequestError, MediagateError
from app.core.events import EventHub
from app.core.jobs import is_terminal, outputs_of
from app.core.models import Job, MediaObject, VirtualKey
from app.core.resources import Resources
from app.core.uploads import save_upload
from app.core.usage import expiry

Model = TypeVar("Model", bound=BaseModel)

# A failed job's error code -> the HTTP status the synchronous endpoints answer with.
STATUS_BY_JOB_ERROR = {
    "content_policy_violation": 400,
    "invalid_request": 400,
    "provider_auth_failed": 502,
    "provider_unavailable": 502,
    "provider_error": 502,
    "timeout": 504,
}


def prefers_async(request: Request[Any, Any, Any]) -> bool:
    prefer = request.headers.get("prefer", "")
    return any(part.strip().lower() == "respond-async" for part in prefer.split(","))


def is_multipart(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_body(
    request: Request[Any, Any, Any], schema: type[Model]
) -> tuple[Model, dict[str, UploadFile]]:
    """Parse a JSON or multipart body into `schema`; uploaded files are returned apart."""
    files: dict[str, UploadFile] = {}
    fields: dict[str, Any] = {}
    if is_multipart(request):
        form = await request.form()
        for name, value in form.multi_items():
            name = name.removesuffix("[]")
            if isinstance(value, UploadFile):
                if name in files:
                    raise InvalidRequestError(f"send one file as {name}", param=name)
                files[name] = value
            else:
                fields[name] = value
    else:
        try:
            raw = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise InvalidRequestError(
                "The request body is not valid JSON.", code="invalid_json"
            ) from None
        if not isinstance(raw, dict):
            raise InvalidRequestError("The request body must be a JSON object.")
        fields = raw
    try:
        return schema.model_validate(fields), files
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequestError(
            f"Invalid value for {param!r}: {first['msg']}", param=param
        ) from None


async def store_uploads(
    resources: Resources,
    session: AsyncSession,
    key: VirtualKey,
    files: Mapping[str, UploadFile],
    accepted: tuple[str, ...],
) -> dict[str, MediaObject]:
    """Save each accepted upload as an input of the key (the caller commits, or calls
    `discard_uploads` when the request fails after all)."""
    limit = resources.settings.max_upload_bytes
    for name in files:
        if name not in accepted:
            raise InvalidRequestError(f"{name!r} is not supported here", param=name)
    saved: dict[str, MediaObject] = {}
    try:
        for name, upload in files.items():
            data = await upload.read(limit + 1)
            if len(data) > limit:
                raise InvalidRequestError(f"{name} is larger than {limit} bytes", param=name)
            saved[name] = await save_upload(
                session,
                resources.store,
                key.id,
                data,
                param=name,
                expires_at=expiry(key, resources.settings.retention_days),
            )
    except BaseException:
        await discard_uploads(resources, saved)
        raise
    return saved


async def discard_uploads(resources: Resources, saved: Mapping[str, MediaObject]) -> None:
    for media in saved.values():
        await resources.store.delete(media.storage_key)


async def submit_with_uploads(
    resources: Resources,
    session: AsyncSession,
    key: VirtualKey,
    media_type: str,
    model: str,
    params: dict[str, Any],
    uploads: Mapping[str, MediaObject],
) -> Job:
    """Submit a job whose input names the uploads; a refused job leaves no upload behind."""
    params = {**params, **{name: {"media_id": m.id} for name, m in uploads.items()}}
    try:
        return await submit_compat(resources, session, key, media_type, model, params)
    except MediagateError:  # refused before anything was committed
        await session.rollback()
        await discard_uploads(resources, uploads)
        raise


async def submit_compat(
    resources: Resources,
    session: AsyncSession,
    key: VirtualKey,
    media_type: str,
    model: str,
    params: dict[str, Any],
    openai_names: Mapping[str, str] | None = None,
) -> Job:
    """Submit a job; input errors name OpenAI's parameter (`size`, `response_format`), not ours
    (`input.size`, `input.format`)."""
    try:
        return await submit(resources, session, key, media_type, model, params)
    except MediagateError as exc:
        if exc.param and exc.param.startswith("input."):
            ours = exc.param.removeprefix("input.")
            exc.param = (openai_names or {}).get(ours, ours)
        raise


async def wait_for_job(resources: Resources, hub: EventHub, job_id: str, seconds: float) -> Job:
    """The job once it ends, or as it is when `seconds` run out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with hub.subscribe(job_id) as sub:
        while True:
            # Subscribed first, then read: an ending published in between is not missed.
            async with resources.sessionmaker() as session:
                job = await session.get(Job, job_id)
            assert job is not None
            remaining = deadline - loop.time()
            if is_terminal(job.status) or remaining <= 0:
                return job
            # At least once a second, re-read: the hub may miss a notice while reconnecting.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.queue.get(), timeout=min(remaining, 1.0))


async def job_outputs(resources: Resources, job: Job) -> list[MediaObject]:
    async with resources.sessionmaker() as session:
        return (await outputs_of(session, [job.id]))[job.id]


def accepted(request: Request[Any, Any, Any], resources: Resources, job: Job) -> Response[Any]:
    """202 with the job: the client follows it at /v1/jobs/{id} (or its events)."""
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if prefers_async(request):
        headers["Preference-Applied"] = "respond-async"
    return Response(
        render_job(request, resources.settings, job, []), status_code=202, headers=headers
    )


def failed(job: Job) -> Response[dict[str, Any]]:
    """A job that ended without output, in OpenAI's error shape. `x-should-retry: false` tells
    OpenAI's SDKs not to submit again: mediagate already retried upstream."""
    if job.status == "canceled":
        status, code, message = 409, "job_canceled", f"Job {job.id} was canceled."
    else:
        code = job.error_code or "internal_error"
        status = STATUS_BY_JOB_ERROR.get(code, 500)
        message = f"{job.error_message or 'The job failed.'} (job {job.id})"
    return error_response(status, message, code, headers={"x-should-retry": "false"})
