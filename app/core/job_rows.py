"""The job row's statements on the hottest paths, on PostgreSQL: each one round trip, straight on
the pooled driver connection (`database.driver_connection`). Each keeps the guarantee of the
ORM path it stands in for; where it cannot tell, it does nothing and says so, and the caller
takes the ORM path."""

from __future__ import annotations

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.database import driver_connection
from app.core.models import Job
from app.core.queueing import FAIR_STEP, FAIR_WINDOW

FAIR_COUNT_CAP = int(FAIR_WINDOW / FAIR_STEP)
"""Queued jobs of a key beyond this many no longer move its next job back (see queueing.py), so
the count stops there: a submit costs the same with 100 or 100,000 jobs queued."""

# The key row under a share lock, as `keys.lock_key` takes it: a key's deletion (which locks it
# for update) waits for this insert, or this insert for the deletion, and then finds nothing. A
# key with a quota or a concurrency limit is not matched: those checks need the ORM path's
# exclusive lock, so concurrent submits of that key decide one after another. Keys without
# limits never wait for each other. `ahead` counts the key's queued jobs before this one.
_INSERT_QUEUED = f"""
WITH k AS (
    SELECT id FROM virtual_keys
    WHERE id = $2 AND revoked_at IS NULL AND deleted_at IS NULL
      AND max_concurrent_jobs IS NULL AND max_bytes IS NULL AND max_objects IS NULL
    FOR SHARE
), ins AS (
    INSERT INTO jobs (id, key_id, type, model, provider, provider_model, input, request, status,
                      progress, attempts, tries, targets, target_index, created_at, webhook,
                      priority, deadline_at)
    SELECT $1, k.id, $3, $4, $5, $6, $7, $8, 'queued', 0, 0, 0, $9, 0, $10, $11, $12, $13
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
        )
    if row["inserted"] != 1:
        return None
    return int(row["ahead"])
