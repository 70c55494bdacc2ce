"""Idempotent submits. A client's `Idempotency-Key` maps, per virtual key and for a day, to the job
its first request created and a fingerprint of that request: the same key with the same request
gets that job back; with another request, 409 `idempotency_key_reused`. The key's row is inserted
in the same transaction as the job, before it, so of concurrent duplicates exactly one commits a
job and the others wait on the primary key, then read the winner."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, insert
from sqlmodel.ext.asyncio.session import AsyncSession

from app.platform.errors import ConflictError
from app.platform.idempotency import HEADER, Claim
from app.platform.tables import IdempotencyKey, as_utc, utcnow
from app.platform.vocabulary import ErrorCode


def _reused(claim: Claim) -> ConflictError:
    return ConflictError(
        f"This {HEADER} was already used with a different request; use a new key for a new "
        "request.",
        code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
        param=HEADER,
    )


async def find(session: AsyncSession, key_id: str, claim: Claim, ttl_seconds: int) -> str | None:
    """The job an earlier request with this claim created, if it is still remembered."""
    row = await session.get(IdempotencyKey, (key_id, claim.key))
    if row is None or as_utc(row.created_at) <= utcnow() - timedelta(seconds=ttl_seconds):
        return None
    if row.fingerprint != claim.fingerprint:
        raise _reused(claim)
    return row.job_id


async def claim_for_job(
    session: AsyncSession, key_id: str, claim: Claim, job_id: str, ttl_seconds: int
) -> str | None:
    """Take the claim for `job_id`, the job this transaction is about to create. If an earlier or
    concurrent request holds it, returns that request's job instead (the caller rolls back)."""
    if (earlier := await find(session, key_id, claim, ttl_seconds)) is not None:
        return earlier
    # Never used, or expired: an expired row would only be in the way. Only an expired one is
    # deleted, or a concurrent duplicate's row, committed meanwhile, would go too.
    cutoff = utcnow() - timedelta(seconds=ttl_seconds)
    await session.exec(
        delete(IdempotencyKey).where(
            col(IdempotencyKey.key_id) == key_id,
            col(IdempotencyKey.idempotency_key) == claim.key,
            col(IdempotencyKey.created_at) <= cutoff,
        )
    )
    insert_row = insert(IdempotencyKey).values(
        key_id=key_id,
        idempotency_key=claim.key,
        fingerprint=claim.fingerprint,
        job_id=job_id,
        created_at=utcnow(),
    )
    try:
        # A statement, not a flush: a failed flush would spoil the session's transaction.
        async with session.begin_nested():
            await session.exec(insert_row)
    except IntegrityError:
        # A concurrent duplicate committed first (our insert waited for it): its job wins.
        winner = await session.get(IdempotencyKey, (key_id, claim.key), populate_existing=True)
        if winner is None:
            raise
        if winner.fingerprint != claim.fingerprint:
            raise _reused(claim) from None
        return winner.job_id
    return None


async def forget_expired(session: AsyncSession, ttl_seconds: int) -> int:
    cutoff = utcnow() - timedelta(seconds=ttl_seconds)
    result = await session.exec(
        delete(IdempotencyKey).where(col(IdempotencyKey.created_at) <= cutoff)
    )
    return int(result.rowcount or 0)
