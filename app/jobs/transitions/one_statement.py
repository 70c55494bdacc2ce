"""The job store on PostgreSQL (`app.platform.job_store`): its hottest writes as single statements,
each one round trip straight on the pooled driver connection (`database.driver_connection`).
Where a statement cannot decide alone (a key with limits, a re-run's replaced output), it does
nothing and the ORM store's way, which this store inherits, decides; every other write is the
ORM store's as it is."""

from __future__ import annotations

from typing import Any

import orjson

from app.jobs.queue import FAIR_COUNT_CAP
from app.jobs.transitions.orm_store import OrmJobStore
from app.keys.spend import day_of
from app.platform.database import driver_connection
from app.platform.ids import new_id
from app.platform.job_store import Output, Recorded, Started
from app.platform.tables import (
    STORAGE_LIMITS,
    SUBMIT_LIMITS,
    Job,
    MediaObject,
    VirtualKey,
    media_kind,
    transient,
    unlimited_sql,
    utcnow,
)

# The key row under a share lock: a key's deletion (which locks it for update) waits for this
# insert, or this insert for the deletion, and then finds nothing. A key with any of
# SUBMIT_LIMITS is not matched: those checks need the key's exclusive lock, so concurrent submits
# of that key decide one after another. Keys without limits never wait for each other. `ahead`
# counts the key's queued jobs before this one.
_INSERT_QUEUED = f"""
WITH k AS (
    SELECT id FROM virtual_keys
    WHERE id = $2 AND revoked_at IS NULL AND deleted_at IS NULL AND {unlimited_sql(SUBMIT_LIMITS)}
    FOR SHARE
), ins AS (
    INSERT INTO jobs (id, key_id, type, model, provider, provider_model, input, request, status,
                      progress, attempts, tries, targets, target_index, created_at, webhook,
                      priority, deadline_at, cost_estimate_micros, cost_micros)
    SELECT $1, k.id, $3, $4, $5, $6, $7, $8, 'queued', 0, 0, 0, $9, 0, $10, $11, $12, $13, $14, 0
    FROM k
    RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS inserted,
       (SELECT count(*) FROM (
            SELECT 1 FROM jobs WHERE key_id = $2 AND status = 'queued' LIMIT {FAIR_COUNT_CAP}
       ) AS q) AS ahead
"""


def _json(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def job_of(record: Any) -> Job:
    # json columns arrive parsed: the engine's connections decode them (database.py).
    return transient(Job, **dict(record))


# A new attempt, for a job that is queued (and not past its deadline) or running (its last
# attempt's worker was lost), as `orm_store.startable` says.
_START_ATTEMPT = """
UPDATE jobs SET status = 'running', attempts = attempts + 1, tries = tries + 1,
       heartbeat_at = $2, started_at = coalesce(started_at, $2)
WHERE id = $1 AND deleted_at IS NULL
  AND (status = 'running' OR (status = 'queued' AND (deadline_at IS NULL OR deadline_at > $2)))
RETURNING *
"""

_KEY = "SELECT * FROM virtual_keys WHERE id = $1"

# The charge moves the key's spend of the day in the same statement (`s` runs although
# nothing reads it: PostgreSQL runs every data-modifying CTE).
_FINISH = """
WITH j AS (
    UPDATE jobs SET status = $3::varchar, finished_at = $4,
           progress = CASE WHEN $3::varchar = 'succeeded' THEN 100 ELSE progress END,
           error_code = coalesce($5, error_code), error_message = coalesce($6, error_message),
           cost_micros = cost_micros + $7
    WHERE id = $1 AND status = 'running' AND attempts = $2
    RETURNING *
), s AS (
    INSERT INTO key_spend (key_id, day, micros)
    SELECT key_id, $8, $7 FROM j WHERE $7 > 0
    ON CONFLICT (key_id, day) DO UPDATE SET micros = key_spend.micros + excluded.micros
)
SELECT * FROM j
"""

# An attempt's output, as the ORM store records it, when nothing is in the way: the key's row
# under a share lock (its deletion waits, or this finds it deleted and does nothing), the job's
# row held by this attempt (the fence, and the heartbeat), the media row inserted unless one for
# (job, variant, index) exists, and the key's usage moved with it. A key with a quota, an attempt
# that was superseded, a re-run that replaces an earlier row: nothing changes, and the ORM
# store's way decides: it checks the quota, says why, or replaces the row.
_RECORD_OUTPUT = f"""
WITH k AS (
    SELECT id FROM virtual_keys
    WHERE id = $2 AND deleted_at IS NULL AND {unlimited_sql(STORAGE_LIMITS)}
    FOR SHARE
), j AS (
    UPDATE jobs SET heartbeat_at = $11
    WHERE id = $1 AND status = 'running' AND attempts = $3 AND EXISTS (SELECT 1 FROM k)
    RETURNING id
), m AS (
    INSERT INTO media_objects (id, job_id, key_id, variant, "index", storage_key, content_type,
                               bytes, sha256, kind, created_at, expires_at)
    SELECT $4, j.id, $2, $5, $6, $7, $8, $9, $10, $12, $11, $13 FROM j
    ON CONFLICT (job_id, variant, "index") DO NOTHING
    RETURNING id
), u AS (
    UPDATE key_usage SET bytes = bytes + $9, objects = objects + 1,
           bytes_written = bytes_written + $9, objects_written = objects_written + 1,
           updated_at = $11
    WHERE key_id = $2 AND kind = $12 AND EXISTS (SELECT 1 FROM m)
    RETURNING 1
)
SELECT (SELECT count(*) FROM m) AS inserted
"""

_HOLD = """
UPDATE jobs SET heartbeat_at = $3
WHERE id = $1 AND status = 'running' AND attempts = $2
"""

_SET_PROGRESS = """
UPDATE jobs SET progress = greatest(progress, $3)
WHERE id = $1 AND status = 'running' AND attempts = $2
"""


class OneStatementJobStore(OrmJobStore):
    async def insert_queued(self, job: Job) -> int | None:
        async with driver_connection(self.engine) as conn:
            row = await conn.fetchrow(
                _INSERT_QUEUED,
                job.id,
                job.key_id,
                job.type,
                job.model,
                job.provider,
                job.provider_model,
                _json(job.input),
                _json(job.request),
                _json(job.targets),
                job.created_at,
                _json(job.webhook),
                job.priority,
                job.deadline_at,
                job.cost_estimate_micros,
            )
        if row["inserted"] != 1:
            return None
        return int(row["ahead"])

    async def start_attempt(self, job_id: str) -> Started | None:
        async with driver_connection(self.engine) as conn:
            record = await conn.fetchrow(_START_ATTEMPT, job_id, utcnow())
            if record is None:
                return None
            key = await conn.fetchrow(_KEY, record["key_id"])
        return Started(job_of(record), transient(VirtualKey, **dict(key)))

    async def _matched(self, statement: str, *args: Any) -> bool:
        """Run one UPDATE on the driver connection, in autocommit: the row is locked only while
        it runs. (In a transaction, a worker paused between the UPDATE and its COMMIT would hold
        the row, and no other worker could take the job over until it woke.)"""
        async with driver_connection(self.engine) as conn:
            status: str = await conn.execute(statement, *args)
        return status != "UPDATE 0"

    async def hold(self, job_id: str, attempt: int) -> bool:
        return await self._matched(_HOLD, job_id, attempt, utcnow())

    async def set_progress(self, job_id: str, attempt: int, progress: int) -> bool:
        return await self._matched(_SET_PROGRESS, job_id, attempt, progress)

    async def record_output(self, output: Output) -> Recorded:
        """The new output in one statement; anything else (a key with a quota, a deleted key, a
        superseded attempt, a re-run's replacement) the ORM store's way, which says which."""
        media = transient(
            MediaObject,
            id=new_id("med"),
            job_id=output.job_id,
            key_id=output.key_id,
            variant=output.variant,
            index=output.index,
            storage_key=output.storage_key,
            content_type=output.content_type,
            bytes=output.size,
            sha256=output.sha256,
            kind=media_kind(output.content_type),
            created_at=utcnow(),
            expires_at=output.expires_at,
        )
        async with driver_connection(self.engine) as conn:
            inserted = await conn.fetchval(
                _RECORD_OUTPUT,
                output.job_id,
                output.key_id,
                output.attempt,
                media.id,
                output.variant,
                output.index,
                output.storage_key,
                output.content_type,
                output.size,
                output.sha256,
                media.created_at,
                media.kind,
                output.expires_at,
            )
        if inserted == 1:
            return Recorded(media, None)
        return await super().record_output(output)

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
        message = None if error_code is None else (error_message or "")[:2000]
        now = utcnow()
        async with driver_connection(self.engine) as conn:
            record = await conn.fetchrow(
                _FINISH, job_id, attempt, status, now, error_code, message, charged, day_of(now)
            )
        return None if record is None else job_of(record)
