"""The batches service: submit up to 1,000 jobs as one (all or none, idempotent as a whole), read a
batch with its counts, page its jobs for the results, and cancel it.

A batch's jobs are ordinary jobs of its key (`jobs.batch_id`), so everything that holds for a
job holds for them: the outbox, retries, webhooks, cost. In the queue they are the key's jobs, so
fair share places them as it places any key's many jobs: a batch of 1,000 does not hold back
another key's single job. Their endings are appended to the batch's own event stream by the
same atomic step that ends them (app/platform/events.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from sqlalchemy import func
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.batches import events as batch_events
from app.jobs import idempotency, intake, transitions
from app.jobs import service as job_service
from app.jobs.queue import allowed_priority
from app.media.service import outputs_of
from app.platform.errors import (
    ConflictError,
    InvalidRequestError,
    MediagateError,
    NotFoundError,
)
from app.platform.idempotency import Claim
from app.platform.ids import new_id
from app.platform.resources import Resources
from app.platform.tables import Batch, Job, MediaObject, VirtualKey, utcnow
from app.platform.vocabulary import (
    ACTIVE_STATUSES,
    BatchStatus,
    JobStatus,
)

log = logging.getLogger("mediagate.batches")


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One job of a batch, as a `POST /v1/jobs` body gives it, with the client's id for it."""

    custom_id: str
    type: str
    model: str
    input: dict[str, Any]
    priority: str = "normal"
    deadline_seconds: int | None = None
    webhook: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class BatchView:
    batch: Batch
    counts: dict[str, int]
    estimate: int | None
    actual: int | None

    @property
    def status(self) -> BatchStatus:
        active = self.counts[JobStatus.QUEUED] + self.counts[JobStatus.RUNNING]
        if self.batch.cancel_requested_at is not None:
            return BatchStatus.CANCELING if active else BatchStatus.CANCELED
        return BatchStatus.IN_PROGRESS if active else BatchStatus.COMPLETED


def _within(index: int, exc: MediagateError) -> MediagateError:
    """An item's error, its `param` naming the item (`requests[3].input.size`)."""
    exc.param = f"requests[{index}]" + (f".{exc.param}" if exc.param else "")
    return exc


MAX_WEBHOOK_HOSTS = 10
"""Distinct webhook hosts one batch may name: each is looked up at submit."""


async def _checked_webhooks(
    resources: Resources, items: Sequence[BatchRequest]
) -> list[dict[str, Any] | None]:
    """Each item's webhook checked as a submit checks one, before the batch's transaction opens:
    each distinct URL once, all at once, so the lookups take one `url_resolve_seconds` at most
    (1,000 lookups in turn inside the transaction would pin a database connection as long as
    DNS is slow). A batch naming more than MAX_WEBHOOK_HOSTS hosts is refused unlooked-up."""
    specs: list[bytes | None] = []  # each item's webhook as a key, to look each up once
    first: dict[bytes, int] = {}  # each distinct webhook, and the first item naming it
    hosts: set[str] = set()
    for index, item in enumerate(items):
        if item.webhook is None:
            specs.append(None)
            continue
        spec = orjson.dumps(item.webhook, option=orjson.OPT_SORT_KEYS)
        specs.append(spec)
        if spec in first:
            continue
        first[spec] = index
        hosts.add(urlsplit(str(item.webhook.get("url", ""))).netloc.lower())
        if len(hosts) > MAX_WEBHOOK_HOSTS:
            raise InvalidRequestError(
                f"A batch's webhooks may name at most {MAX_WEBHOOK_HOSTS} hosts.",
                param=f"requests[{index}].webhook.url",
            )
    found = await asyncio.gather(
        *(job_service.checked_webhook(resources, items[i].webhook) for i in first.values()),
        return_exceptions=True,
    )
    checked: dict[bytes, dict[str, Any] | None] = {}
    for (spec, index), result in zip(first.items(), found, strict=True):
        if isinstance(result, MediagateError):
            raise _within(index, result)
        if isinstance(result, BaseException):
            raise result
        checked[spec] = result
    return [None if spec is None else checked[spec] for spec in specs]


async def _build_jobs(
    session: AsyncSession,
    resources: Resources,
    key: VirtualKey,
    batch_id: str,
    items: Sequence[BatchRequest],
    webhooks: Sequence[dict[str, Any] | None],
) -> list[Job]:
    """Every item prepared as a submit prepares its job, before any is kept; an item's error
    names it."""
    settings = resources.settings
    jobs = []
    for index, item in enumerate(items):
        try:
            job = await intake.prepare_job(
                session,
                key,
                resources.catalog,
                item.type,
                item.model,
                item.input,
                allow_private_urls=settings.allow_private_urls,
                priority=allowed_priority(key, item.priority, settings.default_max_priority),
                deadline_seconds=item.deadline_seconds,
                webhook=webhooks[index],
            )
        except MediagateError as exc:
            raise _within(index, exc) from None
        job.batch_id, job.custom_id = batch_id, item.custom_id
        jobs.append(job)
    return jobs


async def submit(
    resources: Resources, key: VirtualKey, items: Sequence[BatchRequest], claim: Claim | None
) -> tuple[BatchView, bool]:
    """Create the batch and all of its jobs in one transaction, then queue them: `(batch,
    True)`. A request repeating an `Idempotency-Key`: `(the earlier batch, False)`."""
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item.custom_id in seen:
            raise InvalidRequestError(
                f"custom_id {item.custom_id!r} is used twice in this batch; each job needs its "
                "own.",
                param=f"requests[{index}].custom_id",
            )
        seen.add(item.custom_id)
    await job_service.redis_reachable(resources)
    webhooks = await _checked_webhooks(resources, items)
    batch_id = new_id("bat")
    async with resources.sessionmaker() as session:
        if claim is not None:
            ttl = resources.settings.idempotency_ttl_seconds
            earlier = await idempotency.claim_for_job(session, key.id, claim, batch_id, ttl)
            if earlier is not None:
                await session.rollback()
                return await _view(session, key.id, earlier), False
        await job_service.check_queue(resources, key, len(items), session)
        jobs = await _build_jobs(session, resources, key, batch_id, items, webhooks)
        await intake.check_limits(session, key.id, jobs)
        ahead = await intake.queued_jobs(session, key.id)
        batch = Batch(id=batch_id, key_id=key.id, total=len(jobs), created_at=utcnow())
        session.add(batch)
        for job in jobs:
            await transitions.add_queued(session, job)
        await session.commit()  # commit, then enqueue: a worker must find the rows
        # Before the first job can end: its last job's end closes the batch's stream.
        await batch_events.open_stream(resources.redis, resources.bus, batch_id, len(jobs))
        for offset, job in enumerate(jobs):
            await job_service.enqueue(resources, job, ahead + offset)
        log.info("batch.queued batch_id=%s key_id=%s jobs=%d", batch_id, key.id, len(jobs))
        return await _view(session, key.id, batch_id), True


async def _batch(session: AsyncSession, key_id: str, batch_id: str) -> Batch:
    batch = await session.get(Batch, batch_id)
    if batch is None or batch.key_id != key_id or batch.deleted_at is not None:
        raise NotFoundError(f"No batch found with id {batch_id!r}.", param="batch_id")
    return batch


async def _view(session: AsyncSession, key_id: str, batch_id: str) -> BatchView:
    batch = await _batch(session, key_id, batch_id)
    return (await _views(session, [batch]))[0]


async def _views(session: AsyncSession, batches: Sequence[Batch]) -> list[BatchView]:
    rows = (
        await session.exec(
            select(  # type: ignore[call-overload]
                col(Job.batch_id),
                col(Job.status),
                func.count(),
                func.sum(col(Job.cost_estimate_micros)),
                func.sum(col(Job.cost_micros)),
                func.count(col(Job.cost_estimate_micros)),
            )
            .where(col(Job.batch_id).in_([b.id for b in batches]))
            .group_by(col(Job.batch_id), col(Job.status))
        )
    ).all()
    found: dict[str, dict[str, Any]] = {
        b.id: {"counts": dict.fromkeys(JobStatus, 0), "estimate": 0, "actual": 0, "priced": 0}
        for b in batches
    }
    for batch_id, status, count, estimate, actual, priced in rows:
        entry = found[str(batch_id)]
        entry["counts"][JobStatus(status)] += int(count)
        entry["estimate"] += int(estimate or 0)
        entry["actual"] += int(actual or 0)
        entry["priced"] += int(priced)
    views = []
    for batch in batches:
        entry = found[batch.id]
        priced = entry["priced"] > 0
        views.append(
            BatchView(
                batch,
                entry["counts"],
                entry["estimate"] if priced else None,
                entry["actual"] if priced else None,
            )
        )
    return views


async def read(resources: Resources, key_id: str, batch_id: str) -> BatchView:
    async with resources.sessionmaker() as session:
        return await _view(session, key_id, batch_id)


async def page(
    resources: Resources, key_id: str, *, limit: int, after: str | None
) -> tuple[list[BatchView], bool]:
    """The key's batches, newest first."""
    async with resources.sessionmaker() as session:
        query = select(Batch).where(col(Batch.key_id) == key_id, col(Batch.deleted_at).is_(None))
        if after is not None:
            query = query.where(col(Batch.id) < after)
        batches = (await session.exec(query.order_by(col(Batch.id).desc()).limit(limit + 1))).all()
        more = len(batches) > limit
        return await _views(session, batches[:limit]), more


async def jobs_of(
    resources: Resources, key_id: str, batch_id: str
) -> tuple[Sequence[Job], Mapping[str, Sequence[MediaObject]]]:
    """The batch's jobs (by id) with their outputs: what its results are made of."""
    async with resources.sessionmaker() as session:
        await _batch(session, key_id, batch_id)
        jobs = (
            await session.exec(
                select(Job).where(col(Job.batch_id) == batch_id).order_by(col(Job.id))
            )
        ).all()
        outputs = await outputs_of(session, [j.id for j in jobs])
    return jobs, outputs


async def cancel(resources: Resources, key_id: str, batch_id: str) -> BatchView:
    """Cancel every job of the batch still queued or running (each as its own cancel would:
    queued ones never run, running ones stop); ended ones stay as they are."""
    async with resources.sessionmaker() as session:
        batch = await _batch(session, key_id, batch_id)
        if batch.cancel_requested_at is None:
            await session.exec(
                update(Batch)
                .where(col(Batch.id) == batch.id, col(Batch.cancel_requested_at).is_(None))
                .values(cancel_requested_at=utcnow())
            )
            await session.commit()
        active = (
            await session.exec(
                select(col(Job.id)).where(
                    col(Job.batch_id) == batch_id, col(Job.status).in_(ACTIVE_STATUSES)
                )
            )
        ).all()
    for job_id in active:
        with contextlib.suppress(ConflictError):  # it ended meanwhile
            await job_service.cancel(resources, key_id, job_id)
    return await read(resources, key_id, batch_id)
