"""Job service for the API side: create, read, list, cancel, and the job object's shape."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.catalog import routing
from app.catalog.routing import Route
from app.jobs.inputs import references, validate_input
from app.jobs.statements import FAIR_COUNT_CAP
from app.keys.service import lock_key
from app.media.service import mark_job_media_deleted
from app.media.usage import check_submit
from app.platform.errors import ConflictError, InvalidRequestError, NotFoundError
from app.platform.ids import new_id
from app.platform.resources import Resources
from app.platform.tables import (
    Job,
    MediaObject,
    VirtualKey,
    iso,
    transient_job,
    utcnow,
)
from app.platform.tenant_urls import check_url
from app.platform.vocabulary import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    ErrorCode,
    JobStatus,
    Priority,
    Variant,
)
from providers.base import MEDIA_TYPES
from providers.registry import Catalog

MAX_PAGE = 100


async def resolve_model(
    session: AsyncSession, catalog: Catalog, media_type: str, model: str
) -> Route:
    if media_type not in MEDIA_TYPES:  # before the lookup: a bad type is the first thing wrong
        raise InvalidRequestError(
            f"type must be one of {', '.join(MEDIA_TYPES)}; got {media_type!r}", param="type"
        )
    return check_route(await routing.resolve(session, catalog, model), media_type, model)


def check_route(route: Route, media_type: str, model: str) -> Route:
    if media_type not in MEDIA_TYPES:
        raise InvalidRequestError(
            f"type must be one of {', '.join(MEDIA_TYPES)}; got {media_type!r}", param="type"
        )
    if route.type != media_type:
        raise InvalidRequestError(
            f"model {model!r} makes {route.type}, not {media_type}", param="model"
        )
    return route


async def check_references(
    session: AsyncSession, key_id: str, params: Mapping[str, Any], *, allow_private_urls: bool
) -> None:
    """Every media id the input names must be a live object of the same key; URLs must be https
    and not point at private addresses (checked again, after DNS, when fetched)."""
    for name, ref in references(params).items():
        if "url" in ref:
            check_url(ref["url"], f"input.{name}", allow_private=allow_private_urls)
            continue
        media_id = ref["media_id"]
        media = await session.get(MediaObject, media_id)
        if media is None or media.key_id != key_id or media.deleted_at is not None:
            raise InvalidRequestError(
                f"No media found with id {media_id!r}.",
                param=f"input.{name}",
                code=ErrorCode.NOT_FOUND,
            )


def build_job(
    key_id: str,
    route: Route,
    params: Mapping[str, Any],
    validated: Mapping[str, Any],
    *,
    job_id: str | None = None,
    priority: str = Priority.NORMAL,
    deadline_seconds: int | None = None,
    webhook: dict[str, Any] | None = None,
) -> Job:
    spec = route.targets[0]
    return transient_job(
        id=job_id or new_id("job"),
        key_id=key_id,
        type=spec.type,
        model=route.name,
        provider=spec.provider,
        provider_model=spec.provider_model,
        targets=[target.name for target in route.targets],
        input=dict(validated),
        request=dict(params),
        priority=priority,
        webhook=webhook,
        created_at=utcnow(),
        deadline_at=None
        if deadline_seconds is None
        else utcnow() + timedelta(seconds=deadline_seconds),
    )


def plain_job(
    key: VirtualKey,
    catalog: Catalog,
    media_type: str,
    model: str,
    params: Mapping[str, Any],
    **options: Any,
) -> Job | None:
    """The job, validated, when nothing about it needs the database: a catalog model (not an
    alias), no media to look up, a key without limits. None: `create_job` must decide."""
    if (key.max_concurrent_jobs, key.max_bytes, key.max_objects) != (None, None, None):
        return None
    spec = catalog.get(model)
    if spec is None:
        return None
    route = check_route(Route(model, (spec,)), media_type, model)
    validated = validate_input(spec, params)
    if references(validated):
        return None
    return build_job(key.id, route, params, validated, **options)


async def create_job(
    session: AsyncSession,
    key: VirtualKey,
    catalog: Catalog,
    media_type: str,
    model: str,
    params: Mapping[str, Any],
    *,
    allow_private_urls: bool = False,
    **options: Any,
) -> Job:
    route = await resolve_model(session, catalog, media_type, model)
    # Valid for every fallback target, so moving to the next one cannot fail on the input.
    validated = [validate_input(spec, params) for spec in route.targets]
    await check_references(session, key.id, validated[0], allow_private_urls=allow_private_urls)
    # The key's row, locked: concurrent submits of one key check its limits one after another.
    await check_submit(session, await lock_key(session, key.id))
    job = build_job(key.id, route, params, validated[0], **options)
    session.add(job)
    await session.flush()
    return job


async def queued_jobs(session: AsyncSession, key_id: str) -> int:
    """How many of the key's jobs wait in the queue (fair share places the next one after),
    counted up to FAIR_COUNT_CAP: more would not move it further back."""
    queued = (
        select(col(Job.id))
        .where(col(Job.key_id) == key_id, col(Job.status) == JobStatus.QUEUED)
        .limit(FAIR_COUNT_CAP)
        .subquery()
    )
    count = await session.exec(select(func.count()).select_from(queued))
    return int(count.one())


async def get_job(session: AsyncSession, key_id: str, job_id: str) -> Job:
    job = await session.get(Job, job_id)
    if job is None or job.key_id != key_id or job.deleted_at is not None:
        raise NotFoundError(f"No job found with id {job_id!r}.", param="id")
    return job


async def list_jobs(
    session: AsyncSession,
    key_id: str,
    *,
    status: str | None = None,
    media_type: str | None = None,
    limit: int = 20,
    after: str | None = None,
    oldest_first: bool = False,
) -> tuple[Sequence[Job], bool]:
    """Newest first (or oldest first); `after` is the last id of the previous page.
    Returns (page, has_more)."""
    if status is not None and status not in tuple(JobStatus):
        raise InvalidRequestError(f"status must be one of {', '.join(JobStatus)}", param="status")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_PAGE}", param="limit")
    query = select(Job).where(Job.key_id == key_id, col(Job.deleted_at).is_(None))
    if media_type is not None:
        query = query.where(Job.type == media_type)
    if status is not None:
        query = query.where(Job.status == status)
    if after is not None:
        query = query.where(col(Job.id) > after if oldest_first else col(Job.id) < after)
    order = col(Job.id).asc() if oldest_first else col(Job.id).desc()
    rows = (await session.exec(query.order_by(order).limit(limit + 1))).all()
    return rows[:limit], len(rows) > limit


async def delete_job(session: AsyncSession, key_id: str, job_id: str) -> tuple[Job, list[str]]:
    """Mark the job deleted (canceling it if it still runs) and its media too; returns the storage
    keys to remove once the transaction commits."""
    job = await get_job(session, key_id, job_id)
    now = utcnow()
    await session.exec(
        update(Job)
        .where(col(Job.id) == job.id, col(Job.status).in_(ACTIVE_STATUSES))
        .values(status=JobStatus.CANCELED, finished_at=now, cancel_requested_at=now)
    )
    await session.exec(update(Job).where(col(Job.id) == job.id).values(deleted_at=now))
    storage_keys = await mark_job_media_deleted(session, job.id, "owner")
    await session.refresh(job)
    return job, storage_keys


async def cancel_job(session: AsyncSession, key_id: str, job_id: str) -> Job:
    job = await get_job(session, key_id, job_id)
    now = utcnow()
    result = await session.exec(
        update(Job)
        .where(col(Job.id) == job.id, col(Job.status).in_(ACTIVE_STATUSES))
        .values(status=JobStatus.CANCELED, finished_at=now, cancel_requested_at=now)
    )
    if result.rowcount == 0:
        await session.refresh(job)
        raise ConflictError(
            f"Job {job_id!r} is already {job.status} and cannot be canceled.",
            code=ErrorCode.JOB_NOT_CANCELABLE,
        )
    await session.refresh(job)
    return job


async def outputs_of(session: AsyncSession, job_ids: Iterable[str]) -> dict[str, list[MediaObject]]:
    ids = list(job_ids)
    found: dict[str, list[MediaObject]] = {job_id: [] for job_id in ids}
    if not ids:
        return found
    rows = await session.exec(
        select(MediaObject)
        .where(
            col(MediaObject.job_id).in_(ids),
            col(MediaObject.variant) == Variant.OUTPUT,
            col(MediaObject.deleted_at).is_(None),
        )
        .order_by(col(MediaObject.index))
    )
    for media in rows:
        if media.job_id is not None:
            found[media.job_id].append(media)
    return found


async def outputs_for(resources: Resources, job: Job) -> list[MediaObject]:
    """The job's outputs, read in a session of its own."""
    async with resources.sessionmaker() as session:
        return (await outputs_of(session, [job.id]))[job.id]


def job_snapshot(job: Job, outputs: Sequence[MediaObject]) -> dict[str, Any]:
    """The job object without output URLs (they are signed per response by the API)."""
    error = None
    if job.error_code is not None:
        error = {"code": job.error_code, "message": job.error_message or ""}
    return {
        "id": job.id,
        "object": "job",
        "type": job.type,
        "model": job.model,
        "provider": job.provider,
        "served_by": job.targets[job.target_index] if job.targets else job.model,
        "status": job.status,
        "progress": job.progress,
        "attempts": job.attempts,
        "priority": job.priority,
        "deadline_at": iso(job.deadline_at),
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "input": job.input,
        "outputs": [
            {
                "id": m.id,
                "index": m.index,
                "content_type": m.content_type,
                "bytes": m.bytes,
                "sha256": m.sha256,
            }
            for m in outputs
        ],
        "error": error,
    }


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES
