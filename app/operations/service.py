"""The pool's state for operators, read when asked: from the database (the source of truth for
what waits, over the partial index of queued jobs) and Redis (the workers' heartbeats). Two
grouped queries and one Redis read per scrape."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import col, select

from app.platform.liveness import Heartbeat, alive, count_alive
from app.platform.metrics import PoolSnapshot, exposition
from app.platform.resources import Resources
from app.platform.tables import Job, KeyUsage, as_utc, utcnow
from app.platform.vocabulary import JobStatus, Priority


async def workers(resources: Resources) -> list[Heartbeat]:
    """The live workers, oldest first."""
    settings = resources.settings
    return await alive(resources.redis, settings.redis_namespace, settings.worker_heartbeat_seconds)


async def workers_alive(resources: Resources) -> int:
    settings = resources.settings
    return await count_alive(
        resources.redis, settings.redis_namespace, settings.worker_heartbeat_seconds
    )


async def snapshot(resources: Resources) -> PoolSnapshot:
    """Queue depth and the oldest queued job's age per priority, live workers, and the usage
    ledger's totals by kind of media."""
    found = PoolSnapshot()
    async with resources.sessionmaker() as session:
        queued = await session.exec(
            select(col(Job.priority), func.count(), func.min(col(Job.created_at)))
            .where(col(Job.status) == JobStatus.QUEUED, col(Job.deleted_at).is_(None))
            .group_by(col(Job.priority))
        )
        wall = utcnow()
        for priority, count, oldest in queued:
            found.queued[str(priority)] = int(count)
            found.oldest_age[str(priority)] = max(0.0, (wall - as_utc(oldest)).total_seconds())
        ledger = await session.exec(
            select(
                col(KeyUsage.kind),
                func.sum(KeyUsage.bytes),
                func.sum(KeyUsage.bytes_written),
                func.sum(KeyUsage.bytes_deleted),
            ).group_by(col(KeyUsage.kind))
        )
        for kind, stored, written, deleted in ledger:
            found.stored_bytes[kind] = int(stored or 0)
            found.written_bytes[kind] = int(written or 0)
            found.deleted_bytes[kind] = int(deleted or 0)
    found.workers_alive = await workers_alive(resources)
    return found


async def metrics_text(resources: Resources) -> bytes:
    """What `GET /metrics` answers."""
    return exposition(await snapshot(resources), [str(p) for p in Priority])
