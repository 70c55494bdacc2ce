"""The job row's statements on the hottest paths, on PostgreSQL: each one round trip, straight on
the pooled driver connection (`database.driver_connection`). Each keeps the guarantee of the
ORM path it stands in for; where it cannot tell, it does nothing and says so, and the caller
takes the ORM path."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from app.jobs.queue import FAIR_STEP, FAIR_WINDOW
from app.keys.spend import day_of
from app.platform.database import driver_connection
from app.platform.ids import new_id
from app.platform.tables import Job, MediaObject, VirtualKey, media_kind, transient, utcnow

FAIR_COUNT_CAP = int(FAIR_WINDOW / FAIR_STEP)
"""Queued jobs of a key beyond this many no longer move its next job back (see queueing.py), so
the count stops there: a submit costs the same with 100 or 100,000 jobs queued."""

# The key row under a share lock, as `keys.lock_key` takes it: a key's deletion (which locks it
# for update) waits for this insert, or this insert for the deletion, and then finds nothing. A
# key with a quota, a concurrency limit or a hard budget is not matched: those checks need the
# ORM path's exclusive lock, so concurrent submits of that key decide one after another. Keys
# without limits never wait for each other. `ahead` counts the key's queued jobs before this one.
_INSERT_QUEUED = f"""
WITH k AS (
    SELECT id FROM virtual_keys
    WHERE id = $2 AND revoked_at IS NULL AND deleted_at IS NULL
      AND max_concurrent_jobs IS NULL AND max_bytes IS NULL AND max_objects IS NULL
      AND max_spend_micros_per_month IS NULL
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


async def insert_queued(engine: AsyncEngine, job: Job) -> int | None:
    """Insert the (new, queued) job in one committed statement if its key may write and has no
    limits; returns how many of the key's jobs were queued before it. None: nothing was
    inserted (the key has limits, or was revoked or deleted meanwhile): take the ORM path,
    which checks them and says which."""
    async with driver_connection(engine) as conn:
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


def job_of(record: Any) -> Job:
    # json columns arrive parsed: the engine's connections decode them (database.py).
    return transient(Job, **dict(record))


# A new attempt, as `runs.start_attempt` makes it, for a job that is queued (and not past its
# deadline) or running (its last attempt's worker was lost). Any other job is left to the ORM
# path, which ends a late job, or skips one that is gone or has ended.
_START_ATTEMPT = """
UPDATE jobs SET status = 'running', attempts = attempts + 1, tries = tries + 1,
       heartbeat_at = $2, started_at = coalesce(started_at, $2)
WHERE id = $1 AND deleted_at IS NULL
  AND (status = 'running' OR (status = 'queued' AND (deadline_at IS NULL OR deadline_at > $2)))
RETURNING *
"""
_KEY = "SELECT * FROM virtual_keys WHERE id = $1"


async def start_attempt(engine: AsyncEngine, job_id: str) -> tuple[Job, VirtualKey] | None:
    """Mark the job running and count the attempt (one statement: the row is locked for its
    length), with the job's key; None when the ORM path must decide (see above)."""
    async with driver_connection(engine) as conn:
        record = await conn.fetchrow(_START_ATTEMPT, job_id, utcnow())
        if record is None:
            return None
        key = await conn.fetchrow(_KEY, record["key_id"])
    return job_of(record), transient(VirtualKey, **dict(key))


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


async def finish(
    engine: AsyncEngine,
    job_id: str,
    attempt: int,
    status: str,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
    charged: int = 0,
) -> Job | None:
    """`runs.finish` in one statement: the attempt's job moved to a terminal status (with its
    charge), as it is now; None if the job no longer runs that attempt (nothing changed)."""
    message = None if error_code is None else (error_message or "")[:2000]
    now = utcnow()
    async with driver_connection(engine) as conn:
        record = await conn.fetchrow(
            _FINISH, job_id, attempt, status, now, error_code, message, charged, day_of(now)
        )
    return None if record is None else job_of(record)


# An attempt's output, as `JobRun._record` records it, when nothing is in the way: the key's row
# under a share lock (its deletion waits, or this finds it deleted and does nothing), the job's
# row held by this attempt (the fence, and the heartbeat), the media row inserted unless one for
# (job, variant, index) exists, and the key's usage moved with it. A key with a quota, an attempt
# that was superseded, a re-run that replaces an earlier row: nothing changes, and the caller
# takes the ORM path, which checks the quota, says why, or replaces the row.
_RECORD_OUTPUT = """
WITH k AS (
    SELECT id FROM virtual_keys
    WHERE id = $2 AND deleted_at IS NULL AND max_bytes IS NULL AND max_objects IS NULL
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


async def record_output(
    engine: AsyncEngine,
    *,
    job_id: str,
    key_id: str,
    attempt: int,
    variant: str,
    index: int,
    storage_key: str,
    content_type: str,
    size: int,
    sha256: str,
    expires_at: datetime | None,
) -> MediaObject | None:
    """Record a new output in one statement (see above); None: nothing was recorded."""
    media = transient(
        MediaObject,
        id=new_id("med"),
        job_id=job_id,
        key_id=key_id,
        variant=variant,
        index=index,
        storage_key=storage_key,
        content_type=content_type,
        bytes=size,
        sha256=sha256,
        kind=media_kind(content_type),
        created_at=utcnow(),
        expires_at=expires_at,
    )
    async with driver_connection(engine) as conn:
        inserted = await conn.fetchval(
            _RECORD_OUTPUT,
            job_id,
            key_id,
            attempt,
            media.id,
            variant,
            index,
            storage_key,
            content_type,
            size,
            sha256,
            media.created_at,
            media.kind,
            expires_at,
        )
    return media if inserted == 1 else None


_BEAT = """
UPDATE jobs SET heartbeat_at = $3
WHERE id = $1 AND status = 'running' AND attempts = $2
"""


async def beat(engine: AsyncEngine, job_id: str, attempt: int) -> bool:
    """`transitions.hold` outside a transaction, as the lease's heartbeat: one statement, so the
    row is locked only while it runs. (In a transaction, a worker paused between the UPDATE and
    its COMMIT would hold the row, and no other worker could take the job over until it woke.)
    False if the job no longer runs this attempt."""
    async with driver_connection(engine) as conn:
        status: str = await conn.execute(_BEAT, job_id, attempt, utcnow())
    return status != "UPDATE 0"


_SET_PROGRESS = """
UPDATE jobs SET progress = greatest(progress, $3)
WHERE id = $1 AND status = 'running' AND attempts = $2
"""


async def set_progress(engine: AsyncEngine, job_id: str, attempt: int, progress: int) -> bool:
    """`runs.set_progress` in one statement: False if the job no longer runs this attempt."""
    async with driver_connection(engine) as conn:
        status: str = await conn.execute(_SET_PROGRESS, job_id, attempt, progress)
    return status != "UPDATE 0"
