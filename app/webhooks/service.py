"""Webhooks, signed as Standard Webhooks specifies (https://www.standardwebhooks.com):
`webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`, keyed with the key's `whsec_` secret (and, for a day after a
rotation, the previous one too: both signatures are sent). A job's events become delivery rows
that workers deliver (never the API), retrying with backoff for a day; only a 2xx counts, and
redirects are not followed. The URL is checked at submit and again before every attempt, after
DNS, so a name that turns private later is refused (DNS rebinding)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
import orjson
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.jobs.queries import get_job
from app.keys import spend
from app.media.service import with_signed_links
from app.platform.backoff import Backoff
from app.platform.errors import ConflictError, InvalidRequestError, NotFoundError
from app.platform.events import EVENT_NAMES
from app.platform.ids import new_id
from app.platform.metrics import WEBHOOK_ATTEMPTS
from app.platform.resources import Resources
from app.platform.tables import Job, VirtualKey, WebhookDelivery, as_utc, iso, utcnow
from app.platform.tasks import WEBHOOK_TASK
from app.platform.tenant_urls import check_resolves_public, check_url, failure_reason
from app.platform.tracing import job_kwargs
from app.platform.vocabulary import (
    TERMINAL_EVENTS,
    DeliveryStatus,
    ErrorCode,
    EventType,
    JobStatus,
    KeyEvent,
)

log = logging.getLogger("mediagate.webhooks")

DEFAULT_EVENTS = (EventType.SUCCEEDED, EventType.FAILED, EventType.CANCELED)
ROTATION_OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def signing_secrets(key: VirtualKey) -> list[str]:
    found = [key.webhook_secret] if key.webhook_secret else []
    until = key.webhook_previous_until
    if key.webhook_previous_secret and until is not None and as_utc(until) > utcnow():
        found.append(key.webhook_previous_secret)
    return found


def rotate_secret(key: VirtualKey) -> str:
    """A new secret; the old one keeps signing (beside it) for a day."""
    if key.webhook_secret:
        key.webhook_previous_secret = key.webhook_secret
        key.webhook_previous_until = utcnow() + ROTATION_OVERLAP
    key.webhook_secret = new_secret()
    return key.webhook_secret


async def check_target(
    url: str,
    events: Sequence[str] | None,
    param: str,
    *,
    allow_private: bool,
    resolve_seconds: float,
) -> dict[str, Any]:
    """A webhook as given at submit or on a key: a public https URL (its host resolved within
    `resolve_seconds`) and known events. It waits on DNS: call it before a database session is
    opened, never inside one."""
    check_url(url, param, allow_private=allow_private)
    if not allow_private:
        await check_resolves_public(url, param, within=resolve_seconds)
    chosen = list(events) if events else list(DEFAULT_EVENTS)
    unknown = sorted(set(chosen) - set(EVENT_NAMES))
    if unknown:
        raise InvalidRequestError(
            f"unknown webhook events {unknown}; choose from {', '.join(EVENT_NAMES)}",
            param=f"{param.rsplit('.', 1)[0]}.events" if "." in param else "events",
        )
    return {"url": url, "events": chosen}


def wants(job: Job, key: VirtualKey, event: str) -> bool:
    """Whether anyone subscribed to this event of this job (cheap: no I/O)."""
    return bool(_targets(job, key, event))


def _targets(job: Job, key: VirtualKey, event: str) -> list[str]:
    urls: list[str] = []
    for target in (job.webhook, {"url": key.webhook_url, "events": key.webhook_events}):
        if not target or not target.get("url"):
            continue
        if event in (target.get("events") or DEFAULT_EVENTS) and target["url"] not in urls:
            urls.append(str(target["url"]))
    return urls


async def schedule(
    session: AsyncSession,
    job: Job,
    key: VirtualKey,
    event: str,
    data: dict[str, Any],
    urls: Sequence[str] | None = None,
) -> list[str]:
    """Delivery rows of `event` for the job's subscribers to it (or for `urls`); the caller
    commits, then enqueues `deliver` for each id returned."""
    ids: list[str] = []
    for url in _targets(job, key, event) if urls is None else urls:
        delivery = WebhookDelivery(
            id=new_id("whd"),
            job_id=job.id,
            key_id=key.id,
            event=event,
            url=url,
            payload={"type": event, "timestamp": iso(utcnow()), "data": data},
        )
        session.add(delivery)
        ids.append(delivery.id)
    if ids:
        if key.webhook_secret is None:  # a key made before webhooks existed
            key.webhook_secret = new_secret()
            session.add(key)
        await session.flush()
    return ids


async def enqueue(res: Resources, delivery_id: str, attempt_tag: str = "") -> None:
    """Hand one delivery to a worker, carrying the current trace (the attempt that ended the
    job, or the request that resends it)."""
    kwargs = job_kwargs()
    await res.redis.enqueue_job(
        WEBHOOK_TASK, delivery_id, _job_id=f"{delivery_id}{attempt_tag}", **kwargs
    )


async def notify(
    res: Resources, job: Job, event: str, data: dict[str, Any], *, attempt: int | None = None
) -> None:
    """Schedule and enqueue the deliveries of one event (from a worker, or from the API's cancel
    path, which only records them: a worker delivers). A worker's `attempt` fences them: nothing
    is scheduled unless the job is still that attempt's (and, before its end, running)."""
    if event not in EVENT_NAMES:
        return
    settings = res.settings
    if settings.public_url:  # links to the outputs, as the API would sign them
        data = with_signed_links(settings.public_url.rstrip("/"), settings, data)
    async with res.sessionmaker() as session:
        key = await session.get(VirtualKey, job.key_id)
        fresh = (
            await session.exec(
                select(Job)
                .where(Job.id == job.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).first()
        if key is None or fresh is None:
            return
        if attempt is not None and (
            fresh.attempts != attempt
            or (event not in TERMINAL_EVENTS and fresh.status != JobStatus.RUNNING)
        ):
            log.info("webhook.fenced job_id=%s event=%s attempt=%d", job.id, event, attempt)
            return
        ids = await schedule(session, fresh, key, event, data)
        await session.commit()
    for delivery_id in ids:
        await enqueue(res, delivery_id)


async def warn_budget(res: Resources, job: Job, key: VirtualKey) -> None:
    """Send `key.budget_warning` to the key's webhook URL once a month, when this job's charge
    took the key's spend past its soft budget (whichever worker's charge does it first)."""
    async with res.sessionmaker() as session:
        data = await spend.claim_warning(session, key.id)
        fresh = await session.get(VirtualKey, key.id)
        if data is None or fresh is None:
            await session.rollback()
            return
        data["job_id"] = job.id
        urls = [fresh.webhook_url] if fresh.webhook_url else []
        ids = await schedule(session, job, fresh, KeyEvent.BUDGET_WARNING, data, urls)
        await session.commit()
    log.info("key.budget_warning key_id=%s month=%s", key.id, data["month"])
    for delivery_id in ids:
        await enqueue(res, delivery_id)


MAX_RETRY_GAP = 3600.0
"""Seconds: deliveries are retried for a day, at least hourly."""


async def deliver(res: Resources, delivery_id: str) -> tuple[str, float | None]:
    """One attempt. Returns the delivery's status and, when it should be tried again, the delay."""
    settings = res.settings
    async with res.sessionmaker() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
        key = await session.get(VirtualKey, delivery.key_id) if delivery else None
    if delivery is None or key is None or delivery.status != DeliveryStatus.PENDING:
        return ("missing" if delivery is None else delivery.status), None
    if len(delivery.attempts) >= settings.webhook_max_attempts:
        # Its last attempts died with their workers: they count, and there is no other.
        async with res.sessionmaker() as session:
            await session.exec(
                update(WebhookDelivery)
                .where(col(WebhookDelivery.id) == delivery_id)
                .values(status=DeliveryStatus.FAILED)
            )
            await session.commit()
        return DeliveryStatus.FAILED, None
    body = orjson.dumps(delivery.payload)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "mediagate-webhooks/1",
        "webhook-id": delivery.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret, delivery.id, timestamp, body) for secret in signing_secrets(key)
        ),
    }
    record: dict[str, Any] = {"at": iso(utcnow()), "status_code": None, "latency_ms": None}
    # The attempt is recorded before it is made: one that dies with its worker still counts
    # towards the limit, so a receiver that kills workers cannot be retried forever.
    await _record_attempt(res, delivery_id, {**record, "error": "interrupted"}, None)
    started = time.monotonic()
    try:
        # The whole attempt, not each read: a receiver trickling a byte every few seconds
        # holds a worker's slot no longer than the timeout.
        async with asyncio.timeout(settings.webhook_timeout_seconds):
            # Again at every attempt; where the name resolves now is checked by the tenant
            # client as it connects (to the address it checked).
            check_url(delivery.url, "webhook.url", allow_private=settings.allow_private_urls)
            async with res.tenant_http.stream(
                "POST", delivery.url, content=body, headers=headers, follow_redirects=False
            ) as resp:
                # The status is the whole answer we need: nothing of the body is read, so a
                # receiver answering gigabytes costs nothing.
                record["status_code"] = resp.status_code
        ok = 200 <= resp.status_code < 300
        if not ok:
            record["error"] = f"HTTP {resp.status_code}"
    except InvalidRequestError as exc:
        record["error"] = f"refused: {exc.message}"
        ok = False
    except TimeoutError:
        record["error"] = "timeout"
        ok = False
    except httpx.HTTPError as exc:
        record["error"] = failure_reason(exc)
        ok = False
    record["latency_ms"] = int((time.monotonic() - started) * 1000)
    status, attempts = await _record_attempt(res, delivery_id, record, ok, replace_last=True)
    log.info(
        "webhook.attempt delivery_id=%s event=%s status=%s code=%s ms=%s",
        delivery_id,
        delivery.event,
        status,
        record["status_code"],
        record["latency_ms"],
    )
    outcome = "retrying" if status == DeliveryStatus.PENDING else str(status)
    WEBHOOK_ATTEMPTS.labels(outcome).inc()
    if status == DeliveryStatus.PENDING:
        return status, Backoff(settings.webhook_retry_base_seconds, MAX_RETRY_GAP).delay(attempts)
    return status, None


async def _record_attempt(
    res: Resources,
    delivery_id: str,
    record: dict[str, Any],
    ok: bool | None,
    *,
    replace_last: bool = False,
) -> tuple[str, int]:
    """Append `record` to the delivery's attempts (or, with `replace_last`, put it in place of
    the one recorded before sending) and settle its status: delivered when `ok`, failed once it
    has used its attempts or its retry window. Returns (status, attempts so far)."""
    settings = res.settings
    async with res.sessionmaker() as session:
        fresh = (
            await session.exec(
                select(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).first()
        assert fresh is not None
        earlier = fresh.attempts[:-1] if replace_last else fresh.attempts
        fresh.attempts = [*earlier, record]
        given_up = as_utc(fresh.created_at) + timedelta(seconds=settings.webhook_retry_seconds)
        if ok:
            fresh.status, fresh.delivered_at = DeliveryStatus.DELIVERED, utcnow()
        elif ok is False and (
            utcnow() >= given_up or len(fresh.attempts) >= settings.webhook_max_attempts
        ):
            fresh.status = DeliveryStatus.FAILED
        session.add(fresh)
        await session.commit()
        return fresh.status, len(fresh.attempts)


async def deliveries_of(session: AsyncSession, job_id: str) -> list[WebhookDelivery]:
    rows = await session.exec(
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id)
        .order_by(col(WebhookDelivery.created_at), col(WebhookDelivery.id))
    )
    return list(rows)


async def deliveries(
    resources: Resources, key_id: str | None, job_id: str
) -> list[WebhookDelivery]:
    """The key's job's deliveries, with every attempt."""
    async with resources.sessionmaker() as session:
        job = await get_job(session, key_id, job_id)
        return await deliveries_of(session, job.id)


async def resend(
    resources: Resources, key_id: str | None, job_id: str, delivery_id: str
) -> WebhookDelivery:
    """Deliver one of the job's webhooks again, with a fresh day of retries (409 while its
    retries are still under way: a second chain beside them would deliver twice)."""
    async with resources.sessionmaker() as session:
        job = await get_job(session, key_id, job_id)
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.job_id != job.id:
            raise NotFoundError(f"No webhook delivery {delivery_id!r}.", param="delivery_id")
        if delivery.status == DeliveryStatus.PENDING:
            raise ConflictError(
                f"Webhook delivery {delivery_id!r} is still being retried.",
                code=ErrorCode.WEBHOOK_PENDING,
            )
        delivery.status, delivery.created_at = DeliveryStatus.PENDING, utcnow()
        session.add(delivery)
        await session.commit()
    await enqueue(resources, delivery.id, f":resend-{len(delivery.attempts)}")
    return delivery
