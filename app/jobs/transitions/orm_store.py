"""The job store on the ORM (`app.platform.job_store`): SQLite, and PostgreSQL behind PgBouncer.
A write of one row is one UPDATE in a transaction of its own (committed in the next round trip);
a write of several rows runs in one transaction.

Unlike the one-statement store, never autocommit: behind PgBouncer (Debian's 1.18 keeps no prepared
statements across server connections) a statement outside a transaction could be prepared on one
server connection and run on another, and on SQLite an autocommit connection is handed back with
the driver's own deferred BEGIN switched on again (which `database.py` turns off). So a worker
paused between a hold and its COMMIT keeps the row (on SQLite, the database's write lock) until it
wakes or its connection drops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Update, case, func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.jobs.queue import FAIR_COUNT_CAP
from app.keys import spend
from app.keys.service import lock_key
from app.media import usage
from app.media.service import mark_job_media_deleted, record_output
from app.platform.database import SessionMaker
from app.platform.errors import AuthenticationError
from app.platform.job_store import (
    KeyGone,
    NotThisAttempt,
    Output,
    OverQuota,
    Recorded,
    Started,
)
from app.platform.tables import Job, VirtualKey, as_utc, unlimited, utcnow
from app.platform.vocabulary import ErrorCode, JobStatus, Variant
from providers.registry import ModelSpec


def mine(job_id: str, attempt: int) -> tuple[Any, ...]:
    """The fence: the job runs, and runs this attempt."""
    return (
        col(Job.id) == job_id,
        col(Job.status) == JobStatus.RUNNING,
        col(Job.attempts) == attempt,
    )


def held(job_id: str, attempt: int) -> Update:
    """The attempt's hold: its heartbeat renewed, fenced. Inside a transaction it is also the
    attempt's lock on the row until commit, so what is recorded next cannot interleave with a
    takeover (which locks the same row)."""
    return update(Job).where(*mine(job_id, attempt)).values(heartbeat_at=utcnow())


def startable(job: Job) -> bool:
    """A job a new attempt may start: queued and not past its deadline, or running (its last
    attempt's worker was lost)."""
    if job.deleted_at is not None:
        return False
    if job.status == JobStatus.RUNNING:
        return True
    late = job.deadline_at is not None and as_utc(job.deadline_at) <= utcnow()
    return job.status == JobStatus.QUEUED and not late


class OrmJobStore:
    def __init__(self, engine: AsyncEngine, sessionmaker: SessionMaker) -> None:
        self.engine = engine
        self.sessionmaker = sessionmaker

    async def _one(self, statement: Update) -> bool:
        """Run one UPDATE in a transaction of its own; whether it matched a row."""
        async with self.engine.begin() as conn:
            result = await conn.execute(statement)
        return bool(result.rowcount)

    async def insert_queued(self, job: Job) -> int | None:
        async with self.sessionmaker() as session:
            # A share lock, as the one-statement store takes it: the key's deletion (which locks
            # it for update) waits for this insert, or this insert finds the key deleted.
            key = (
                await session.exec(
                    select(VirtualKey)
                    .where(
                        col(VirtualKey.id) == job.key_id,
                        col(VirtualKey.revoked_at).is_(None),
                        col(VirtualKey.deleted_at).is_(None),
                    )
                    .with_for_update(read=True)
                )
            ).first()
            if key is None or not unlimited(key):
                return None
            queued = (
                select(col(Job.id))
                .where(col(Job.key_id) == key.id, col(Job.status) == JobStatus.QUEUED)
                .limit(FAIR_COUNT_CAP)
                .subquery()
            )
            ahead = int((await session.exec(select(func.count()).select_from(queued))).one())
            session.add(job)
            await session.commit()
        return ahead

    async def start_attempt(self, job_id: str) -> Started | None:
        async with self.sessionmaker() as session:
            job = (
                await session.exec(select(Job).where(Job.id == job_id).with_for_update())
            ).first()
            if job is None or not startable(job):
                return None
            job.status = JobStatus.RUNNING
            job.attempts += 1
            job.tries += 1
            job.heartbeat_at = utcnow()
            if job.started_at is None:
                job.started_at = job.heartbeat_at
            session.add(job)
            key = await session.get(VirtualKey, job.key_id)
            await session.commit()
        assert key is not None  # a job's key row is never removed, only marked deleted
        return Started(job, key)

    async def read(self, job_id: str) -> Job | None:
        async with self.sessionmaker() as session:
            return await session.get(Job, job_id)

    async def hold(self, job_id: str, attempt: int) -> bool:
        return await self._one(held(job_id, attempt))

    async def set_progress(self, job_id: str, attempt: int, progress: int) -> bool:
        raised = case((col(Job.progress) < progress, progress), else_=col(Job.progress))
        return await self._one(update(Job).where(*mine(job_id, attempt)).values(progress=raised))

    async def set_task(self, job_id: str, attempt: int, task_id: str | None) -> bool:
        return await self._one(
            update(Job).where(*mine(job_id, attempt)).values(provider_task_id=task_id)
        )

    async def fall_back(
        self, job_id: str, attempt: int, index: int, target: ModelSpec, job_input: dict[str, Any]
    ) -> bool:
        return await self._one(
            update(Job)
            .where(*mine(job_id, attempt))
            .values(
                target_index=index,
                provider=target.provider,
                provider_model=target.provider_model,
                provider_task_id=None,
                tries=0,
                input=job_input,
            )
        )

    async def record_output(self, output: Output) -> Recorded:
        async with self.sessionmaker() as session:
            try:
                owner = await lock_key(session, output.key_id, allow_revoked=True)
            except AuthenticationError:
                raise KeyGone from None
            if not (await session.exec(held(output.job_id, output.attempt))).rowcount:
                raise NotThisAttempt
            # Concurrent jobs of the key: the quota is checked again under the key's row lock.
            if await usage.output_over_quota(
                session, owner, output.job_id, output.variant, output.index, output.size
            ):
                raise OverQuota
            media, replaced = await record_output(
                session,
                job_id=output.job_id,
                key_id=output.key_id,
                index=output.index,
                storage_key=output.storage_key,
                content_type=output.content_type,
                size=output.size,
                sha256=output.sha256,
                variant=Variant(output.variant),
                expires_at=output.expires_at,
            )
            await session.commit()
        return Recorded(media, replaced)

    async def discard_outputs(self, job_id: str, attempt: int, reason: str) -> list[str] | None:
        async with self.sessionmaker() as session:
            if not (await session.exec(held(job_id, attempt))).rowcount:
                return None
            storage_keys: Sequence[str] = await mark_job_media_deleted(session, job_id, reason)
            await session.commit()
        return list(storage_keys)

    async def finish(
        self,
        job_id: str,
        attempt: int,
        status: str,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        charged: int = 0,
    ) -> Job | None:
        values: dict[str, object] = {"status": status, "finished_at": utcnow()}
        if status == JobStatus.SUCCEEDED:
            values["progress"] = 100
        if error_code is not None:
            values.update(error_code=error_code, error_message=(error_message or "")[:2000])
        async with self.sessionmaker() as session:
            statement = update(Job).where(*mine(job_id, attempt))
            if not await _charged(session, statement, values, charged):
                return None
            await session.commit()
            return await session.get(Job, job_id, populate_existing=True)

    async def charge(self, job_id: str, amount: int) -> None:
        async with self.sessionmaker() as session:
            await _charged(session, update(Job).where(col(Job.id) == job_id), {}, amount)
            await session.commit()

    async def cancel_if_late(self, job_id: str) -> Job | None:
        now = utcnow()
        async with self.sessionmaker() as session:
            result = await session.exec(
                update(Job)
                .where(
                    col(Job.id) == job_id,
                    col(Job.status) == JobStatus.QUEUED,
                    col(Job.deadline_at).is_not(None),
                    col(Job.deadline_at) <= now,
                )
                .values(
                    status=JobStatus.CANCELED,
                    finished_at=now,
                    error_code=ErrorCode.DEADLINE_EXCEEDED,
                    error_message="The job was not started before its deadline.",
                )
            )
            if not result.rowcount:
                return None
            await session.commit()
            return await session.get(Job, job_id, populate_existing=True)


async def _charged(
    session: AsyncSession, statement: Update, values: dict[str, object], amount: int
) -> bool:
    """Run the job's update with `amount` added to its cost, and to its key's spend of the day;
    False if it matched no row (and nothing was charged)."""
    result = await session.exec(
        statement.values(**values, cost_micros=Job.cost_micros + amount).returning(col(Job.key_id))
    )
    key_id = result.scalar_one_or_none()
    if key_id is not None:
        await spend.add_charge(session, key_id, amount, spend.day_of())
    return key_id is not None
