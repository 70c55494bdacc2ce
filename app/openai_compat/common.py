"""What the OpenAI-compatible endpoints share: reading JSON or multipart bodies, storing uploaded
inputs, submitting a job and waiting for it (or not, with `Prefer: respond-async`), and answering
a failed job in OpenAI's error shape."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from litestar import Request, Response
from litestar.datastructures import UploadFile
from pydantic import BaseModel, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.http.errors import error_response
from app.http.render import render_job
from app.jobs import idempotency
from app.jobs.controllers import submit
from app.jobs.idempotency import Claim
from app.jobs.service import get_job, is_terminal
from app.media.uploads import save_upload
from app.media.usage import expiry
from app.platform.errors import InvalidRequestError, MediagateError, QuotaExceededError
from app.platform.events import EventHub
from app.platform.limits import Hold, Holds
from app.platform.resources import Resources
from app.platform.tables import Job, MediaObject, VirtualKey
from app.platform.vocabulary import ErrorCode, JobStatus

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


@dataclass(frozen=True, slots=True)
class Body(Generic[Model]):
    """A request body: its fields, its files (read, size-checked) and its idempotency claim."""

    fields: Model
    files: dict[str, bytes]
    claim: Claim | None
    webhook: dict[str, Any] | None = None
    """From `Webhook-Url` (and `Webhook-Events`, comma-separated): OpenAI's request bodies have
    no place for it."""


async def _read_form(
    request: Request[Any, Any, Any], max_file_bytes: int
) -> tuple[dict[str, bytes], dict[str, Any]]:
    files: dict[str, bytes] = {}
    fields: dict[str, Any] = {}
    form = await request.form()
    for name, value in form.multi_items():
        name = name.removesuffix("[]")
        if isinstance(value, UploadFile):
            if name in files:
                raise InvalidRequestError(f"send one file as {name}", param=name)
            data = await value.read(max_file_bytes + 1)
            if len(data) > max_file_bytes:
                raise InvalidRequestError(
                    f"{name} is larger than {max_file_bytes} bytes", param=name
                )
            files[name] = data
        else:
            fields[name] = value
    return files, fields


async def read_body(
    request: Request[Any, Any, Any], schema: type[Model], max_file_bytes: int
) -> Body[Model]:
    """Parse a JSON or multipart body into `schema`; uploaded files are returned apart."""
    files: dict[str, bytes] = {}
    fields: dict[str, Any] = {}
    if is_multipart(request):
        slots: asyncio.Semaphore = request.app.state.upload_slots
        if slots.locked():
            raise QuotaExceededError(
                "This server is reading as many uploads as it takes at once. Retry shortly.",
                code=ErrorCode.TOO_MANY_UPLOADS,
                retry_after=5,
            )
        async with slots:
            files, fields = await _read_form(request, max_file_bytes)
    else:
        try:
            raw = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise InvalidRequestError(
                "The request body is not valid JSON.", code=ErrorCode.INVALID_JSON
            ) from None
        if not isinstance(raw, dict):
            raise InvalidRequestError("The request body must be a JSON object.")
        fields = raw
    try:
        model = schema.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequestError(
            f"Invalid value for {param!r}: {first['msg']}", param=param
        ) from None
    header = request.headers.get(idempotency.HEADER)
    claim = idempotency.claim_of(header, request.method, request.url.path, fields, files)
    webhook = None
    if url := request.headers.get("webhook-url"):
        events = request.headers.get("webhook-events")
        webhook = {
            "url": url,
            "events": [e.strip() for e in events.split(",") if e.strip()] if events else None,
        }
    return Body(model, files, claim, webhook)


async def store_uploads(
    resources: Resources,
    session: AsyncSession,
    key: VirtualKey,
    files: Mapping[str, bytes],
) -> dict[str, MediaObject]:
    """Save each upload as an input of the key (the caller commits, or calls `discard_uploads`
    when the request fails after all)."""
    saved: dict[str, MediaObject] = {}
    try:
        for name, data in files.items():
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


async def submit_request(
    resources: Resources,
    session: AsyncSession,
    key: VirtualKey,
    media_type: str,
    model: str,
    params: dict[str, Any],
    body: Body[Any],
    *,
    file_params: tuple[str, ...] = (),
    openai_names: Mapping[str, str] | None = None,
) -> Job:
    """Store the request's files as inputs and submit the job that names them. A refused job
    leaves no upload behind; a request repeating an `Idempotency-Key` gets the job the first one
    created, and stores nothing. Input errors name OpenAI's parameter (`size`,
    `response_format`), not ours (`input.size`, `input.format`)."""
    for name in body.files:
        if name not in file_params:
            raise InvalidRequestError(f"{name!r} is not supported here", param=name)
    if body.claim is not None:
        ttl = resources.settings.idempotency_ttl_seconds
        earlier = await idempotency.find(session, key.id, body.claim, ttl)
        if earlier is not None:
            return await get_job(session, key.id, earlier)
    uploads = await store_uploads(resources, session, key, body.files)
    params = {**params, **{name: {"media_id": m.id} for name, m in uploads.items()}}
    try:
        job, created = await submit(
            resources,
            key,
            media_type,
            model,
            params,
            body.claim,
            session=session,
            webhook=body.webhook,
        )
    except BaseException as exc:  # refused (or failed) before anything was committed
        await session.rollback()
        await discard_uploads(resources, uploads)
        if isinstance(exc, MediagateError) and exc.param and exc.param.startswith("input."):
            ours = exc.param.removeprefix("input.")
            exc.param = (openai_names or {}).get(ours, ours)
        raise
    if not created:  # a concurrent duplicate won: its job stands, our uploads go
        await discard_uploads(resources, uploads)
    return job


def waiting(request: Request[Any, Any, Any], key: VirtualKey) -> Hold:
    """The key's hold on one request waiting for its job (429 past its cap); release it (`with`)
    once the wait is over."""
    waits: Holds = request.app.state.waits
    return waits.take(key.id)


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
            await sub.next(within=min(remaining, 1.0))


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
    if job.status == JobStatus.CANCELED:
        status, code, message = 409, "job_canceled", f"Job {job.id} was canceled."
    else:
        code = job.error_code or "internal_error"
        status = STATUS_BY_JOB_ERROR.get(code, 500)
        message = f"{job.error_message or 'The job failed.'} (job {job.id})"
    return error_response(status, message, code, headers={"x-should-retry": "false"})
