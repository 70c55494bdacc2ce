"""What the operator's dashboard shows, read per page: jobs with filters, one job with its
events, outputs and deliveries, the keys with their usage, the providers' recent outcomes. Its
actions (cancel, retry, resend) are the jobs and webhooks services' own, as the operator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import col, select

from app.jobs.queries import get_job
from app.media.service import outputs_of
from app.media.usage import usage_of
from app.platform.events import JobEvent
from app.platform.resources import Resources
from app.platform.tables import Job, MediaObject, VirtualKey, WebhookDelivery, utcnow
from app.platform.vocabulary import JobStatus
from app.webhooks.service import deliveries_of

PAGE = 50


@dataclass(frozen=True, slots=True)
class JobFilter:
    status: str | None = None
    model: str | None = None
    key_id: str | None = None
    since_minutes: int | None = None

    @staticmethod
    def of(
        status: str | None, model: str | None, key_id: str | None, since: str | None
    ) -> JobFilter:
        return JobFilter(
            status=status if status in tuple(JobStatus) else None,
            model=(model or "").strip() or None,
            key_id=(key_id or "").strip() or None,
            since_minutes=int(since) if since and since.isdigit() else None,
        )


async def jobs(resources: Resources, found: JobFilter) -> Sequence[Job]:
    """The newest jobs that pass the filter (deleted ones too: the operator sees them)."""
    query = select(Job)
    if found.status:
        query = query.where(col(Job.status) == found.status)
    if found.model:
        query = query.where(col(Job.model) == found.model)
    if found.key_id:
        query = query.where(col(Job.key_id) == found.key_id)
    if found.since_minutes:
        query = query.where(
            col(Job.created_at) >= utcnow() - timedelta(minutes=found.since_minutes)
        )
    async with resources.sessionmaker() as session:
        return (await session.exec(query.order_by(col(Job.id).desc()).limit(PAGE))).all()


@dataclass
class JobPage:
    job: Job
    outputs: list[MediaObject]
    events: list[JobEvent]
    deliveries: list[WebhookDelivery]
    key: VirtualKey | None


async def job_page(resources: Resources, job_id: str) -> JobPage:
    async with resources.sessionmaker() as session:
        job = await get_job(session, None, job_id)
        outputs = (await outputs_of(session, [job.id]))[job.id]
        deliveries = await deliveries_of(session, job.id)
        key = await session.get(VirtualKey, job.key_id)
    events = await resources.bus.history(job.id)
    return JobPage(job, outputs, events, deliveries, key)


@dataclass
class KeyRow:
    key: VirtualKey
    usage: dict[str, object]


async def keys(resources: Resources) -> list[KeyRow]:
    async with resources.sessionmaker() as session:
        rows = (await session.exec(select(VirtualKey).order_by(col(VirtualKey.id).desc()))).all()
        return [KeyRow(key, await usage_of(session, key)) for key in rows]


@dataclass
class ProviderRow:
    provider: str
    finished: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        return self.failed / self.finished if self.finished else 0.0


async def providers(resources: Resources, hours: int = 1) -> list[ProviderRow]:
    """Jobs that ended in the last `hours`, by provider: how many, how many failed, and why."""
    since: datetime = utcnow() - timedelta(hours=hours)
    async with resources.sessionmaker() as session:
        found = await session.exec(
            select(col(Job.provider), col(Job.status), col(Job.error_code), func.count())
            .where(col(Job.finished_at) >= since)
            .group_by(col(Job.provider), col(Job.status), col(Job.error_code))
        )
        rows: dict[str, ProviderRow] = {}
        for provider, status, code, count in found:
            row = rows.setdefault(provider, ProviderRow(provider))
            row.finished += int(count)
            if status == JobStatus.FAILED:
                row.failed += int(count)
                row.errors[code or "unknown"] = row.errors.get(code or "unknown", 0) + int(count)
    return sorted(rows.values(), key=lambda r: r.provider)
