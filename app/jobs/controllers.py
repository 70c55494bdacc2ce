"""/v1/jobs: submit, read, list and cancel generation jobs."""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated, Any

from arq.jobs import Job as ArqJob
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import Parameter
from redis.exceptions import RedisError
from sqlmodel.ext.asyncio.session import AsyncSession

from app.http.dependencies import KEY_DEPENDENCY
from app.http.render import render_delivery, render_job
from app.http.schemas import JobCreate, JobList, JobObject
from app.jobs import idempotency
from app.jobs import service as job_service
from app.jobs.idempotency import Claim
from app.jobs.queue import allowed_priority, enqueue_new, queue_length
from app.jobs.service import job_snapshot
from app.jobs.statements import insert_queued
from app.platform.contract import deserialize
from app.platform.errors import ConflictError, NotFoundError, QuotaExceededError
from app.platform.ids import new_id
from app.platform.resources import Resources
from app.platform.tables import Job, MediaObject, VirtualKey, WebhookDelivery, utcnow
from app.platform.vocabulary import ACTIVE_STATUSES, DeliveryStatus, ErrorCode, EventType, Priority
from app.webhooks import service as webhooks

log = logging.getLogger("mediagate.api")


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


async def check_queue(resources: Resources) -> None:
    """Refuse at once, rather than queue for hours, when the pool's queue is full."""
    limit = resources.settings.max_queue_length
    if limit is None:
        return
    waiting = await queue_length(resources.redis, resources.queue_name)
    if waiting >= limit:
        raise QuotaExceededError(
            f"The queue holds {waiting} jobs, its limit is {limit}. Retry later.",
            code=ErrorCode.QUEUE_FULL,
            retry_after=30,
        )


async def submit(
    resources: Resources,
    key: VirtualKey,
    media_type: str,
    model: str,
    params: dict[str, Any],
    claim: Claim | None = None,
    *,
    session: AsyncSession | None = None,
    priority: str = Priority.NORMAL,
    deadline_seconds: int | None = None,
    webhook: dict[str, Any] | None = None,
) -> tuple[Job, bool]:
    """Create and enqueue a job: `(job, True)`. With an `Idempotency-Key` that an earlier (or a
    concurrent) request already used: `(that request's job, False)`, and nothing is created.
    `session` holds what must commit with the job (uploads the job names); without one, a session
    is opened only if the job needs the ORM path."""
    priority = allowed_priority(key, priority, resources.settings.default_max_priority)
    # Refuse while Redis is down rather than accept jobs that only the outbox could start.
    await _redis_reachable(resources)
    options: dict[str, Any] = {
        "job_id": new_id("job"),
        "priority": priority,
        "deadline_seconds": deadline_seconds,
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
                return await job_service.get_job(session, key.id, earlier), False
        await check_queue(resources)
        options["webhook"] = await _checked_webhook(resources, webhook)
        found = None
        if session is None:
            found = await _insert_plain(resources, key, media_type, model, params, options)
        if found is None:
            if session is None:
                session = await stack.enter_async_context(resources.sessionmaker())
            job = await job_service.create_job(
                session,
                key,
                resources.catalog,
                media_type,
                model,
                params,
                allow_private_urls=resources.settings.allow_private_urls,
                **options,
            )
            found = job, await job_service.queued_jobs(session, key.id) - 1
            await session.commit()  # commit, then enqueue: a worker must find the row
    job, queued_ahead = found
    await enqueue(resources, job, queued_ahead)
    log.info("job.queued job_id=%s key_id=%s type=%s model=%s", job.id, key.id, job.type, job.model)
    return job, True


async def _checked_webhook(
    resources: Resources, webhook: dict[str, Any] | None
) -> dict[str, Any] | None:
    if webhook is None:
        return None
    return await webhooks.check_target(
        str(webhook.get("url", "")),
        webhook.get("events"),
        "webhook.url",
        allow_private=resources.settings.allow_private_urls,
    )


async def _insert_plain(
    resources: Resources,
    key: VirtualKey,
    media_type: str,
    model: str,
    params: dict[str, Any],
    options: dict[str, Any],
) -> tuple[Job, int] | None:
    """The common case in one round trip and no ORM: a catalog model, nothing to look up, a key
    without limits, on PostgreSQL. None: the job needs the ORM path (which decides, and says
    why if it refuses)."""
    if not resources.one_statement_paths:
        return None
    job = job_service.plain_job(key, resources.catalog, media_type, model, params, **options)
    if job is None:
        return None
    queued_ahead = await insert_queued(resources.engine, job)
    return None if queued_ahead is None else (job, queued_ahead)


async def _redis_reachable(resources: Resources) -> None:
    """Raises the Redis outage error when Redis does not answer. While the API's event hub holds
    its connection (it notices a lost one at once), no round trip is spent on asking."""
    if not resources.redis_connected():
        await resources.redis.ping()


async def abort_running(
    resources: Resources, job: Job, outputs: list[MediaObject] | None = None
) -> None:
    """After the database says canceled: tell followers, and stop the worker's task. Queued: arq
    skips it; running: the task is cancelled. The worker's writes are conditional on `running`."""
    snapshot = job_snapshot(job, outputs or [])
    await resources.bus.publish(job.id, EventType.CANCELED, snapshot)
    # Recorded here, delivered by a worker.
    await webhooks.notify(resources, job, EventType.CANCELED, snapshot)
    arq_job = ArqJob(
        job.id, resources.redis, _queue_name=resources.queue_name, _deserializer=deserialize
    )
    try:
        await arq_job.abort(timeout=0.05, poll_delay=0.05)
    except TimeoutError:
        pass  # abort is asynchronous: the worker picks it up on its next poll
    except RedisError as exc:
        log.warning("job.abort_failed job_id=%s error=%s", job.id, type(exc).__name__)
    log.info("job.canceled job_id=%s", job.id)


async def delete_with_media(
    resources: Resources, session: AsyncSession, key: VirtualKey, job: Job
) -> None:
    """Delete the job (stopping it if it still runs), then its objects once that is committed."""
    active = job.status in ACTIVE_STATUSES
    job, storage_keys = await job_service.delete_job(session, key.id, job.id)
    await session.commit()
    if active:
        await abort_running(resources, job)
    await resources.store.delete_many(storage_keys)


class JobController(Controller):
    path = "/v1/jobs"
    tags = ["jobs"]
    dependencies = KEY_DEPENDENCY

    @post("/", status_code=202, summary="Submit a generation job")
    async def create(
        self,
        request: Request[Any, Any, Any],
        data: JobCreate,
        key: VirtualKey,
        resources: Resources,
    ) -> Response[JobObject]:
        header = request.headers.get(idempotency.HEADER)
        claim = None
        if header is not None:
            body = data.model_dump(mode="json")
            claim = idempotency.claim_of(header, request.method, request.url.path, body)
        job, created = await submit(
            resources,
            key,
            data.type,
            data.model,
            data.input,
            claim,
            priority=data.priority,
            deadline_seconds=data.deadline_seconds,
            webhook=data.webhook.model_dump() if data.webhook else None,
        )
        # A new job has no outputs yet; a repeated request's job may have.
        outputs = [] if created else await job_service.outputs_for(resources, job)
        return Response(
            render_job(request, resources.settings, job, outputs),  # type: ignore[arg-type]
            status_code=202,
            headers={"Location": f"/v1/jobs/{job.id}"},
        )

    @get("/", summary="List jobs, newest first")
    async def list_jobs(
        self,
        request: Request[Any, Any, Any],
        key: VirtualKey,
        session: AsyncSession,
        resources: Resources,
        status: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        after: str | None = None,
    ) -> JobList:
        page, has_more = await job_service.list_jobs(
            session, key.id, status=status, limit=limit, after=after
        )
        outputs = await job_service.outputs_of(session, [j.id for j in page])
        data = [render_job(request, resources.settings, j, outputs[j.id]) for j in page]
        return JobList.model_validate(
            {
                "data": data,
                "has_more": has_more,
                "first_id": page[0].id if page else None,
                "last_id": page[-1].id if page else None,
            }
        )

    @get("/{job_id:str}", summary="Get a job")
    async def get_job(
        self,
        request: Request[Any, Any, Any],
        job_id: str,
        key: VirtualKey,
        session: AsyncSession,
        resources: Resources,
    ) -> JobObject:
        job = await job_service.get_job(session, key.id, job_id)
        outputs = await job_service.outputs_of(session, [job.id])
        return JobObject.model_validate(
            render_job(request, resources.settings, job, outputs[job.id])
        )

    @post("/{job_id:str}/cancel", status_code=200, summary="Cancel a queued or running job")
    async def cancel(
        self,
        request: Request[Any, Any, Any],
        job_id: str,
        key: VirtualKey,
        session: AsyncSession,
        resources: Resources,
    ) -> JobObject:
        job = await job_service.cancel_job(session, key.id, job_id)
        await session.commit()
        outputs = (await job_service.outputs_of(session, [job.id]))[job.id]
        await abort_running(resources, job, outputs)
        return JobObject.model_validate(render_job(request, resources.settings, job, outputs))

    @get("/{job_id:str}/webhooks", summary="The job's webhook deliveries, with every attempt")
    async def webhook_deliveries(
        self, job_id: str, key: VirtualKey, session: AsyncSession
    ) -> dict[str, Any]:
        job = await job_service.get_job(session, key.id, job_id)
        found = await webhooks.deliveries_of(session, job.id)
        return {"object": "list", "data": [render_delivery(d) for d in found]}

    @post(
        "/{job_id:str}/webhooks/{delivery_id:str}/resend",
        status_code=202,
        summary="Deliver a webhook again",
    )
    async def resend_webhook(
        self,
        job_id: str,
        delivery_id: str,
        key: VirtualKey,
        session: AsyncSession,
        resources: Resources,
    ) -> dict[str, Any]:
        job = await job_service.get_job(session, key.id, job_id)
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.job_id != job.id:
            raise NotFoundError(f"No webhook delivery {delivery_id!r}.", param="delivery_id")
        if delivery.status == DeliveryStatus.PENDING:
            # Its retries are still under way: a second chain beside them would deliver twice.
            raise ConflictError(
                f"Webhook delivery {delivery_id!r} is still being retried.",
                code=ErrorCode.WEBHOOK_PENDING,
            )
        delivery.status, delivery.created_at = (
            DeliveryStatus.PENDING,
            utcnow(),
        )  # a fresh day of retries
        session.add(delivery)
        await session.commit()
        await webhooks.enqueue(resources, delivery.id, f":resend-{len(delivery.attempts)}")
        return render_delivery(delivery)

    @delete("/{job_id:str}", status_code=200, summary="Delete a job and its media")
    async def delete_job(
        self, job_id: str, key: VirtualKey, session: AsyncSession, resources: Resources
    ) -> dict[str, Any]:
        job = await job_service.get_job(session, key.id, job_id)
        await delete_with_media(resources, session, key, job)
        return {"id": job.id, "object": "job.deleted", "deleted": True}
