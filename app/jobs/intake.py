"""A new job: its model resolved (an alias to its targets), its input validated for every target,
the media it names checked to be the key's, its cost estimated, the key's limits and budget
checked under its row lock, and the row built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.catalog import routing
from app.catalog.routing import Route
from app.jobs import transitions
from app.jobs.inputs import references, validate_input
from app.jobs.queue import FAIR_COUNT_CAP
from app.keys import spend
from app.keys.service import lock_key
from app.media.usage import check_capacity
from app.platform.errors import InvalidRequestError
from app.platform.ids import new_id
from app.platform.tables import (
    Job,
    MediaObject,
    VirtualKey,
    transient_job,
    unlimited,
    utcnow,
)
from app.platform.tenant_urls import check_url
from app.platform.vocabulary import (
    ErrorCode,
    JobStatus,
    Priority,
)
from providers.base import MEDIA_TYPES
from providers.prices import job_cost
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
        cost_estimate_micros=job_cost(spec.price, spec.type, validated),
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
    if not unlimited(key):
        return None
    spec = catalog.get(model)
    if spec is None:
        return None
    route = check_route(Route(model, (spec,)), media_type, model)
    validated = validate_input(spec, params)
    if references(validated):
        return None
    return build_job(key.id, route, params, validated, **options)


async def prepare_job(
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
    """The job row, not yet kept: its model resolved, its input valid for every target (so a
    fallback cannot fail on it), the media it names checked to be the key's."""
    route = await resolve_model(session, catalog, media_type, model)
    validated = [validate_input(spec, params) for spec in route.targets]
    await check_references(session, key.id, validated[0], allow_private_urls=allow_private_urls)
    return build_job(key.id, route, params, validated[0], **options)


async def check_limits(session: AsyncSession, key_id: str, jobs: Sequence[Job]) -> None:
    """The key's limits (storage quota, concurrency, hard budget) for these new jobs together,
    under the key's row lock, taken here: concurrent submits of one key decide in turn."""
    locked = await lock_key(session, key_id)
    await check_capacity(session, locked, adding=len(jobs))
    estimate = sum(job.cost_estimate_micros or 0 for job in jobs)
    await spend.check_budget(session, locked, estimate)


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
    job = await prepare_job(
        session,
        key,
        catalog,
        media_type,
        model,
        params,
        allow_private_urls=allow_private_urls,
        **options,
    )
    await check_limits(session, key.id, [job])
    return await transitions.add_queued(session, job)


async def queued_jobs(session: AsyncSession, key_id: str, up_to: int = FAIR_COUNT_CAP) -> int:
    """How many of the key's jobs wait in the queue (fair share places the next one after),
    counted up to `up_to` (FAIR_COUNT_CAP: more would not move it further back)."""
    queued = (
        select(col(Job.id))
        .where(col(Job.key_id) == key_id, col(Job.status) == JobStatus.QUEUED)
        .limit(up_to)
        .subquery()
    )
    count = await session.exec(select(func.count()).select_from(queued))
    return int(count.one())
