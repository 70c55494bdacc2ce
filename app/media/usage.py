"""Per-key storage usage and quotas. Usage is one row per (key, kind of media), moved in the same
transaction as the media rows it counts: `bytes == bytes_written - bytes_deleted` always, and a
re-run that overwrites an output counts as deleting the old object and writing the new one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.keys import spend
from app.platform.errors import QuotaExceededError
from app.platform.resources import Resources
from app.platform.tables import (
    MEDIA_KINDS,
    STORAGE_LIMITS,
    Job,
    KeyUsage,
    MediaObject,
    VirtualKey,
    unlimited,
    utcnow,
)
from app.platform.vocabulary import ACTIVE_STATUSES, ErrorCode


async def create_usage_rows(session: AsyncSession, key_id: str) -> None:
    for kind in MEDIA_KINDS:
        session.add(KeyUsage(key_id=key_id, kind=kind))
    await session.flush()


async def _move(session: AsyncSession, key_id: str, kind: str, **deltas: int) -> None:
    values: dict[str, Any] = {
        name: getattr(KeyUsage, name) + delta for name, delta in deltas.items()
    }
    await session.exec(
        update(KeyUsage)
        .where(col(KeyUsage.key_id) == key_id, col(KeyUsage.kind) == kind)
        .values(**values, updated_at=utcnow())
    )


async def count_write(session: AsyncSession, key_id: str, kind: str, size: int) -> None:
    await _move(session, key_id, kind, bytes=size, objects=1, bytes_written=size, objects_written=1)


async def count_delete(session: AsyncSession, key_id: str, kind: str, size: int) -> None:
    await _move(
        session, key_id, kind, bytes=-size, objects=-1, bytes_deleted=size, objects_deleted=1
    )


async def totals(session: AsyncSession, key_id: str) -> tuple[int, int]:
    """(bytes, objects) the key stores now, all kinds together."""
    row = (
        await session.exec(
            select(
                func.coalesce(func.sum(KeyUsage.bytes), 0),
                func.coalesce(func.sum(KeyUsage.objects), 0),
            ).where(KeyUsage.key_id == key_id)
        )
    ).one()
    return int(row[0]), int(row[1])


async def active_jobs(session: AsyncSession, key_id: str) -> int:
    count = (
        await session.exec(
            select(func.count())
            .select_from(Job)
            .where(Job.key_id == key_id, col(Job.status).in_(ACTIVE_STATUSES))
        )
    ).one()
    return int(count)


@dataclass(frozen=True, slots=True)
class Breach:
    """A storage limit that a write would take the key past."""

    unit: str
    """`bytes` or `objects`."""
    used: int
    limit: int


def breach(key: VirtualKey, used: tuple[int, int], more: tuple[int, int]) -> Breach | None:
    """The one quota calculation: storing `more` (bytes, objects) on top of `used` takes the key
    past which of its limits, if any. A new job stores at least one byte in one object, so it is
    refused when `(1, 1)` more would not fit, which is when the key is at a limit already."""
    for unit, limit, now, added in (
        ("bytes", key.max_bytes, used[0], more[0]),
        ("objects", key.max_objects, used[1], more[1]),
    ):
        if limit is not None and now + added > limit:
            return Breach(unit, now, limit)
    return None


def has_quota(key: VirtualKey) -> bool:
    return not unlimited(key, STORAGE_LIMITS)


async def check_capacity(session: AsyncSession, key: VirtualKey, adding: int = 1) -> None:
    """Refuse `adding` new jobs (a submit: one; a batch: all of its jobs) when the key is at a
    storage limit or they would take it past its concurrency (429 with the limit and the use)."""
    if has_quota(key):
        found = breach(key, await totals(session, key.id), (1, 1))
        if found is not None:
            raise QuotaExceededError(
                f"This key stores {found.used} {found.unit}, at or over its quota of "
                f"{found.limit} {found.unit}. Delete media or ask for a larger quota.",
                code=ErrorCode.STORAGE_QUOTA_EXCEEDED,
            )
    if key.max_concurrent_jobs is not None:
        running = await active_jobs(session, key.id)
        if running + adding > key.max_concurrent_jobs:
            jobs = "job" if running == 1 else "jobs"
            more = "" if adding == 1 else f"; these {adding} more would pass it"
            raise QuotaExceededError(
                f"This key has {running} {jobs} queued or running, its limit is "
                f"{key.max_concurrent_jobs}{more}. Retry once one has finished.",
                code=ErrorCode.CONCURRENCY_LIMIT_EXCEEDED,
                retry_after=5,
            )


async def check_room(session: AsyncSession, key: VirtualKey, size: int) -> None:
    """Refuse storing `size` more bytes (one more object) past the key's quota. With `key` the
    row the caller locked (`keys.lock_key`), concurrent uploads decide one after another."""
    if not has_quota(key):
        return
    found = breach(key, await totals(session, key.id), (size, 1))
    if found is not None:
        raise QuotaExceededError(
            f"Storing {size} more bytes in one more object would take this key over its quota "
            f"of {found.limit} {found.unit} (it stores {found.used}).",
            code=ErrorCode.STORAGE_QUOTA_EXCEEDED,
        )


async def output_over_quota(
    session: AsyncSession, key: VirtualKey, job_id: str, variant: str, index: int, size: int
) -> bool:
    """Would recording this output (replacing an earlier attempt's at the same place) take the
    key over its storage quota? `key` is the row the caller locked (`keys.lock_key`), so
    concurrent jobs of one key decide one after another."""
    if not has_quota(key):
        return False
    replaced = (
        await session.exec(
            select(MediaObject).where(
                MediaObject.job_id == job_id,
                MediaObject.variant == variant,
                MediaObject.index == index,
                col(MediaObject.deleted_at).is_(None),
            )
        )
    ).first()
    more = (size - replaced.bytes, 0) if replaced else (size, 1)
    return breach(key, await totals(session, key.id), more) is not None


def expiry(
    key: VirtualKey, default_days: int | None, now: datetime | None = None
) -> datetime | None:
    """When media a key stores now expires: the key's retention, else the global default."""
    days = key.retention_days if key.retention_days is not None else default_days
    return None if days is None else (now or utcnow()) + timedelta(days=days)


def quota_object(key: VirtualKey) -> dict[str, Any]:
    return {
        "max_bytes": key.max_bytes,
        "max_objects": key.max_objects,
        "max_concurrent_jobs": key.max_concurrent_jobs,
        "retention_days": key.retention_days,
        "requests_per_minute": key.requests_per_minute,
    }


def _usage_object(key: VirtualKey, rows: Sequence[KeyUsage]) -> dict[str, Any]:
    by_type = {
        row.kind: {
            "bytes": row.bytes,
            "objects": row.objects,
            "bytes_written": row.bytes_written,
            "objects_written": row.objects_written,
            "bytes_deleted": row.bytes_deleted,
            "objects_deleted": row.objects_deleted,
        }
        for row in sorted(rows, key=lambda r: MEDIA_KINDS.index(r.kind))
    }
    return {
        "object": "usage",
        "key_id": key.id,
        "bytes": sum(row.bytes for row in rows),
        "objects": sum(row.objects for row in rows),
        "by_type": by_type,
        "quota": quota_object(key),
    }


async def usage_of(session: AsyncSession, key: VirtualKey) -> dict[str, Any]:
    rows = (await session.exec(select(KeyUsage).where(KeyUsage.key_id == key.id))).all()
    return {**_usage_object(key, rows), "spend": (await spend.reports(session, [key]))[key.id]}


async def all_usage(
    session: AsyncSession, *, order: Literal["asc", "desc"] = "desc", limit: int = 100
) -> list[dict[str, Any]]:
    """Every key's usage, sorted by bytes stored."""
    total = func.sum(KeyUsage.bytes)
    ranked = (
        await session.exec(
            select(KeyUsage.key_id, total.label("total"))
            .group_by(col(KeyUsage.key_id))
            .order_by(total.desc() if order == "desc" else total.asc(), col(KeyUsage.key_id))
            .limit(limit)
        )
    ).all()
    ids = [key_id for key_id, _ in ranked]
    keys = {
        k.id: k
        for k in (await session.exec(select(VirtualKey).where(col(VirtualKey.id).in_(ids)))).all()
    }
    rows = (await session.exec(select(KeyUsage).where(col(KeyUsage.key_id).in_(ids)))).all()
    grouped: dict[str, list[KeyUsage]] = {key_id: [] for key_id in ids}
    for row in rows:
        grouped[row.key_id].append(row)
    spent = await spend.reports(session, list(keys.values()))
    return [
        {**_usage_object(keys[key_id], grouped[key_id]), "spend": spent[key_id]} for key_id in ids
    ]


async def report(resources: Resources, key: VirtualKey) -> dict[str, Any]:
    async with resources.sessionmaker() as session:
        return await usage_of(session, key)


async def report_all(
    resources: Resources, *, order: Literal["asc", "desc"] = "desc", limit: int = 100
) -> list[dict[str, Any]]:
    async with resources.sessionmaker() as session:
        return await all_usage(session, order=order, limit=limit)
