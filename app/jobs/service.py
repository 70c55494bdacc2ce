"""The jobs service: one function per use case (submit, read, list, cancel, delete, end a late
job), each owning its unit of work (it opens the session, commits or rolls back), so that the
HTTP controllers, the OpenAI-compatible endpoints, the workers and the outbox share one way of
doing each. Commit, then enqueue: a worker must find the row."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.jobs import events as job_events
from app.jobs import idempotency, intake, transitions
from app.jobs.queries import get_job, list_jobs
from app.jobs.queue import allowed_priority, enqueue_new, place_in_queue, queue_length
from app.jobs.snapshot import job_snapshot
from app.media import uploads as upload_service
from app.media.service import mark_job_media_deleted, outputs_of
from app.platform import arq_seam
from app.platform.errors import ConflictError, QuotaExceededError
from app.platform.events import EventHub
from app.platform.idempotency import Claim
from app.platform.ids import new_id
from app.platform.liveness import alive
from app.platform.resources import Resources
from app.platform.tables import Job, MediaObject, VirtualKey
from app.platform.tasks import deserialize
from app.platform.vocabulary import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    ErrorCode,
    EventType,
    JobStatus,
    Priority,
)
from app.webhooks import service as webhooks
from providers.base import MediaType

log = logging.getLogger("mediagate.jobs")


@dataclass(frozen=True, slots=True)
class JobView:
    """A job with its live outputs, as every job response shows it."""

    job: Job
    outputs: Sequence[MediaObject] = ()


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: Sequence[Job]
    has_more: bool
    outputs: Mapping[str, Sequence[MediaObject]] = field(default_factory=dict)


# -- reading ----------------------------------------------------------------------------------


async def read(
    resources: Resources, key_id: str, job_id: str, media_type: MediaType | None = None
) -> JobView:
    async with resources.sessionmaker() as session:
        job = await get_job(session, key_id, job_id, media_type)
        return JobView(job, (await outputs_of(session, [job.id]))[job.id])


async def owner(resources: Resources, job_id: str) -> VirtualKey | None:
    """The key a (not deleted) job belongs to, as it is now."""
    async with resources.sessionmaker() as session:
        job = await session.get(Job, job_id)
        if job is None or job.deleted_at is not None:
            return None
        return await session.get(VirtualKey, job.key_id)


async def queue_place(resources: Resources, job: Job) -> dict[str, Any] | None:
    """A queued job's place: position and ETA. Asked for only where it is shown (GET of one
    job): it costs Redis reads that the streams, waits and lists have no use for."""
    if job.status != JobStatus.QUEUED:
        return None
    settings = resources.settings
    beats = await alive(
        resources.redis, settings.redis_namespace, settings.worker_heartbeat_seconds
    )
    throughput = sum(beat.throughput for beat in beats)
    return await place_in_queue(resources.redis, resources.queue_name, job.id, throughput)


async def page(
    resources: Resources,
    key_id: str,
    *,
    status: str | None = None,
    media_type: MediaType | None = None,
    limit: int = 20,
    after: str | None = None,
    oldest_first: bool = False,
    with_outputs: bool = True,
) -> JobPage:
    async with resources.sessionmaker() as session:
        jobs, has_more = await list_jobs(
            session,
            key_id,
            status=status,
            media_type=media_type,
            limit=limit,
            after=after,
            oldest_first=oldest_first,
        )
        outputs = await outputs_of(session, [j.id for j in jobs]) if with_outputs else {}
    return JobPage(jobs, has_more, outputs)


# -- submitting -------------------------------------------------------------------------------


async def check_queue(
    resources: Resources,
    key: VirtualKey,
    adding: int = 1,
    session: AsyncSession | None = None,
) -> None:
    """Refuse at once, rather than queue for hours, when the pool's queue is full (or would be,
    with `adding` more jobs), or when the key would hold more than its share of it (its
    `max_queued_jobs`, else MEDIAGATE_MAX_QUEUED_PER_KEY): one key flooding the queue leaves
    room for the others. The key's jobs are counted (in `session`, or a short one of its own)
    only when the whole queue holds more than its share, so the common submit pays nothing."""
    settings = resources.settings
    limit = settings.max_queue_length
    share = key.max_queued_jobs or settings.max_queued_per_key
    if limit is None and share is None:
        return
    waiting = await queue_length(resources.redis, resources.queue_name)
    if limit is not None and waiting + adding > limit:
        raise QuotaExceededError(
            f"The queue holds {waiting} jobs, its limit is {limit}. Retry later.",
            code=ErrorCode.QUEUE_FULL,
            retry_after=30,
        )
    if share is None or waiting + adding <= share:
        return
    async with contextlib.AsyncExitStack() as stack:
        if session is None:
            session = await stack.enter_async_context(resources.sessionmaker())
        queued = await intake.queued_jobs(session, key.id, up_to=share + 1)
    if queued + adding > share:
        raise QuotaExceededError(
            f"This key has {queued} jobs waiting in the queue; its share is {share}. Retry "
            "once some have started.",
            code=ErrorCode.QUEUE_SHARE_EXCEEDED,
            retry_after=30,
        )


async def enqueue(resources: Resources, job: Job, queued_ahead: int) -> None:
    """Publish `job.queued` and hand the committed job to arq under its own id, placed by its
    priority and its key's queued jobs. The job is already safe in the database: if Redis fails
    now, the outbox reconciler queues it later."""
    try:
        await enqueue_new(
            resources.redis,
            resources.bus,
            resources.queue_name,
            job.id,
            job.priority,
            queued_ahead,
            job_snapshot(job, []),
        )
    except (RedisError, OSError) as exc:
        log.warning("job.enqueue_deferred job_id=%s error=%s", job.id, type(exc).__name__)


async def submit(
    resources: Resources,
    key: VirtualKey,
    media_type: str,
    model: str,
    params: dict[str, Any],
    claim: Claim | None = None,
    *,
    session: AsyncSession | None = None,
    priority: Priority | str = Priority.NORMAL,
    deadline_seconds: int | None = None,
    webhook: dict[str, Any] | None = None,
    webhook_checked: bool = False,
) -> tuple[Job, bool]:
    """Create and enqueue a job: `(job, True)`. With an `Idempotency-Key` that an earlier (or a
    concurrent) request already used: `(that request's job, False)`, and nothing is created.
    `session` holds what must commit with the job (uploads the job names); without one, a session
    is opened only if the job needs the ORM path. The webhook's host is looked up first, before
    any session (`webhook_checked`: the caller did, before opening `session`)."""
    priority = allowed_priority(key, priority, resources.settings.default_max_priority)
    if not webhook_checked:
        webhook = await checked_webhook(resources, webhook)
    # Refuse while Redis is down rather than accept jobs that only the outbox could start.
    await redis_reachable(resources)
    options: dict[str, Any] = {
        "job_id": new_id("job"),
        "priority": priority,
        "deadline_seconds": deadline_seconds,
        "webhook": webhook,
    }
    async with contextlib.AsyncExitStack() as stack:
        if claim is not None:
            # First: a repeated request gets its job back even if the queue is full.
            if session is None:
                session = await stack.enter_async_context(resources.sessionmaker())
            ttl = resources.settings.idempotency_ttl_seconds
            earlier = await idempotency.claim_for_job(
                session, key.id, claim, options["job_id"], ttl
            )
            if earlier is not None:
                await session.rollback()
                return await get_job(session, key.id, earlier), False
        await check_queue(resources, key, session=session)
        found = None
        if session is None:
            found = await _insert_plain(resources, key, media_type, model, params, options)
        if found is None:
            if session is None:
                session = await stack.enter_async_context(resources.sessionmaker())
            job = await intake.create_job(
                session,
                key,
                resources.catalog,
                media_type,
                model,
                params,
                allow_private_urls=resources.settings.allow_private_urls,
                **options,
            )
            found = job, await intake.queued_jobs(session, key.id) - 1
            await session.commit()  # commit, then enqueue: a worker must find the row
    job, queued_ahead = found
    await enqueue(resources, job, queued_ahead)
    log.info("job.queued job_id=%s key_id=%s type=%s model=%s", job.id, key.id, job.type, job.model)
    return job, True


async def submit_with_uploads(
    resources: Resources,
    key: VirtualKey,
    media_type: str,
    model: str,
    params: dict[str, Any],
    files: Mapping[str, bytes],
    claim: Claim | None = None,
    *,
    webhook: dict[str, Any] | None = None,
) -> Job:
    """Store `files` as the key's inputs and submit the job that names them (each file under its
    own parameter), in one transaction. A refused job leaves no upload behind; a request
    repeating an `Idempotency-Key` gets the job the first one created, and stores nothing. The
    files are written, and the webhook's host looked up, before the transaction opens: no
    database connection waits on the network."""
    if claim is not None:
        async with resources.sessionmaker() as session:
            ttl = resources.settings.idempotency_ttl_seconds
            earlier = await idempotency.find(session, key.id, claim, ttl)
            if earlier is not None:
                return await get_job(session, key.id, earlier)
    checked = await checked_webhook(resources, webhook)
    stored = await upload_service.store_all(resources, key, files)
    try:
        async with resources.sessionmaker() as session:
            uploads = await upload_service.record_all(resources, session, key, stored)
            params = {**params, **{name: {"media_id": m.id} for name, m in uploads.items()}}
            job, created = await submit(
                resources,
                key,
                media_type,
                model,
                params,
                claim,
                session=session,
                webhook=checked,
                webhook_checked=True,
            )
    except BaseException:  # refused (or failed) before anything was committed
        await upload_service.discard(resources, stored)
        raise
    if not created:  # a concurrent duplicate won: its job stands, our uploads go
        await upload_service.discard(resources, stored)
    return job


async def checked_webhook(
    resources: Resources, webhook: dict[str, Any] | None
) -> dict[str, Any] | None:
    if webhook is None:
        return None
    return await webhooks.check_target(
        str(webhook.get("url", "")),
        webhook.get("events"),
        "webhook.url",
        allow_private=resources.settings.allow_private_urls,
        resolve_seconds=resources.settings.url_resolve_seconds,
    )


async def _insert_plain(
    resources: Resources,
    key: VirtualKey,
    media_type: str,
    model: str,
    params: dict[str, Any],
    options: dict[str, Any],
) -> tuple[Job, int] | None:
    """The common case without the checked path: a catalog model, nothing to look up, a key
    without limits, inserted by the job store in one commit (on PostgreSQL, one round trip and
    no ORM). None: the job needs the checked path (which decides, and says why if it
    refuses)."""
    job = intake.plain_job(key, resources.catalog, media_type, model, params, **options)
    if job is None:
        return None
    queued_ahead = await resources.jobs.insert_queued(job)
    return None if queued_ahead is None else (job, queued_ahead)


async def redis_reachable(resources: Resources) -> None:
    """Raises the Redis outage error when Redis does not answer. While the API's event hub holds
    its connection (it notices a lost one at once), no round trip is spent on asking."""
    if not resources.redis_connected():
        await resources.redis.ping()


async def wait(
    resources: Resources,
    hub: EventHub,
    job_id: str,
    seconds: float,
    *,
    changed_from: JobStatus | None = None,
) -> Job:
    """The job once it ends (or, with `changed_from`, once its status is another), or as it is
    when `seconds` run out. Woken by the job's events on the hub, not by polling."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with hub.subscribe(job_id) as sub:
        while True:
            # Subscribed first, then read: an ending published in between is not missed.
            async with resources.sessionmaker() as session:
                job = await session.get(Job, job_id)
            assert job is not None
            remaining = deadline - loop.time()
            moved = changed_from is not None and job.status != changed_from
            if job.status in TERMINAL_STATUSES or moved or remaining <= 0:
                return job
            # At least once a second, re-read: the hub may miss a notice while reconnecting.
            await sub.next(within=min(remaining, 1.0))


# -- ending -----------------------------------------------------------------------------------


async def announce_canceled(
    resources: Resources,
    job: Job,
    outputs: Sequence[MediaObject] = (),
    *,
    stop_task: bool = True,
) -> None:
    """After the database says canceled: tell followers (events, webhooks, which a worker
    delivers) and, with `stop_task`, stop the worker's task. Queued: arq skips it; running: the
    task is cancelled. The worker's writes are conditional on `running`."""
    snapshot = job_snapshot(job, outputs)
    await job_events.publish(resources.bus, job.id, EventType.CANCELED, snapshot)
    await webhooks.notify(resources, job, EventType.CANCELED, snapshot)
    if stop_task:
        try:  # asynchronous: a worker that is not told at once picks it up on its next poll
            await arq_seam.abort(resources.redis, resources.queue_name, job.id, deserialize)
        except RedisError as exc:
            log.warning("job.abort_failed job_id=%s error=%s", job.id, type(exc).__name__)
    log.info("job.canceled job_id=%s code=%s", job.id, job.error_code or "owner")


async def cancel(resources: Resources, key_id: str | None, job_id: str) -> JobView:
    """The owner (or, with `key_id` None, the operator) cancels a queued or running job (409
    once it has ended)."""
    async with resources.sessionmaker() as session:
        job = await get_job(session, key_id, job_id)
        canceled = await transitions.cancel(session, job.id)
        await session.commit()
        await session.refresh(job)
        if not canceled:
            raise ConflictError(
                f"Job {job_id!r} is already {job.status} and cannot be canceled.",
                code=ErrorCode.JOB_NOT_CANCELABLE,
            )
        outputs = (await outputs_of(session, [job.id]))[job.id]
    await announce_canceled(resources, job, outputs)
    return JobView(job, outputs)


async def retry(resources: Resources, job_id: str) -> Job:
    """The operator runs a failed job again (409 unless it failed)."""
    async with resources.sessionmaker() as session:
        job = await get_job(session, None, job_id)
        requeued = await transitions.requeue(session, job.id)
        await session.commit()
        await session.refresh(job)
    if not requeued:
        raise ConflictError(
            f"Job {job_id!r} is {job.status}: only a failed job can be retried.",
            code=ErrorCode.CONFLICT,
        )
    await resources.bus.reopen(job.id)
    await enqueue(resources, job, 0)
    log.info("job.retried job_id=%s", job.id)
    return job


async def delete(
    resources: Resources, key_id: str, job_id: str, media_type: MediaType | None = None
) -> Job:
    """Delete the job (stopping it if it still runs) and its media: the rows first, then the
    objects once that is committed."""
    async with resources.sessionmaker() as session:
        job = await get_job(session, key_id, job_id, media_type)
        was_active = job.status in ACTIVE_STATUSES
        await transitions.cancel(session, job.id)
        await transitions.mark_deleted(session, job.id)
        storage_keys = await mark_job_media_deleted(session, job.id, "owner")
        await session.commit()
        await session.refresh(job)
    if was_active:
        await announce_canceled(resources, job)
    await resources.store.delete_many(storage_keys)
    return job


async def cancel_if_late(resources: Resources, job_id: str) -> Job | None:
    """End a queued job that was not started before its deadline, and say so; None if it is not
    late. From the worker that picked it up, or the cron that does not wait for one."""
    late = await resources.jobs.cancel_if_late(job_id)
    if late is not None:
        await announce_canceled(resources, late, stop_task=False)
    return late
