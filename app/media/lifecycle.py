"""The media lifecycle: expiry sweeps, deleting a key with all of its media, and reconciling the
bucket with the database. Rows are marked deleted (and usage moved) in a transaction first, then
the objects are deleted from storage; a crash in between leaves only orphans, which the next run
of the same task (or reconciliation) removes. Every step is safe to repeat."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.jobs import transitions
from app.keys.service import lock_key
from app.media.service import mark_deleted
from app.platform.redis_keys import purge_job_id
from app.platform.resources import Resources
from app.platform.tables import MediaObject, VirtualKey, utcnow
from app.platform.tasks import PURGE_KEY_TASK
from app.platform.vocabulary import PurgeStatus
from storage.base import DELETE_BATCH

log = logging.getLogger("mediagate.lifecycle")


async def sweep_expired(res: Resources, *, batch: int = DELETE_BATCH) -> int:
    """Delete expired media in batches; returns how many objects went."""
    total = 0
    while True:
        async with res.sessionmaker() as session:
            rows = (
                await session.exec(
                    select(MediaObject)
                    .where(
                        col(MediaObject.deleted_at).is_(None),
                        col(MediaObject.expires_at) <= utcnow(),
                    )
                    .order_by(col(MediaObject.expires_at))
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            storage_keys = await mark_deleted(session, rows, "expired")
            await session.commit()
        if storage_keys:
            await res.store.delete_many(storage_keys)
        total += len(storage_keys)
        if len(rows) < batch:
            break
    if total:
        log.info("media.expired count=%d", total)
    return total


async def delete_key(session: AsyncSession, key_id: str) -> VirtualKey:
    """Revoke the key at once, cancel its unfinished jobs and mark its media for purging (the
    caller enqueues the purge after committing). Under the key's row lock, which every write on
    the key's behalf takes too (`keys.lock_key`): one that has not committed by now never will."""
    key = await lock_key(session, key_id, writer=False)
    now = utcnow()
    if key.revoked_at is None:
        key.revoked_at = now
    if key.deleted_at is None:
        key.deleted_at = now
        key.purge_status = PurgeStatus.PENDING
        key.purge_deleted_objects = 0
    session.add(key)
    await transitions.cancel_all_of_key(session, key_id)
    await session.flush()
    return key


async def delete_key_and_media(resources: Resources, key_id: str) -> VirtualKey:
    """`DELETE /admin/keys/{id}`: the key is revoked and deleted, its jobs canceled, and a worker
    purges its media (the key's `purge` shows how far that has got)."""
    async with resources.sessionmaker() as session:
        key = await delete_key(session, key_id)
        await session.commit()
    await resources.redis.enqueue_job(PURGE_KEY_TASK, key.id, _job_id=purge_job_id(key.id))
    return key


async def purge_key(res: Resources, key_id: str, *, batch: int = DELETE_BATCH) -> int:
    """Delete every object of a deleted key, in batches, recording progress on the key; resumes
    where a crashed run stopped. Returns the objects deleted by this run."""
    async with res.sessionmaker() as session:
        key = await session.get(VirtualKey, key_id)
        if key is None or key.deleted_at is None or key.purge_status == PurgeStatus.DONE:
            return 0
        key.purge_status = PurgeStatus.RUNNING
        session.add(key)
        await session.commit()
    deleted = 0
    while True:
        async with res.sessionmaker() as session:
            await lock_key(
                session, key_id, writer=False
            )  # a write that beat the deletion has committed
            rows = (
                await session.exec(
                    select(MediaObject)
                    .where(MediaObject.key_id == key_id, col(MediaObject.deleted_at).is_(None))
                    .limit(batch)
                    .with_for_update()
                )
            ).all()
            storage_keys = await mark_deleted(session, rows, "key_deleted")
            await session.exec(
                update(VirtualKey)
                .where(col(VirtualKey.id) == key_id)
                .values(purge_deleted_objects=VirtualKey.purge_deleted_objects + len(rows))
            )
            await session.commit()
        if storage_keys:
            await res.store.delete_many(storage_keys)
        deleted += len(storage_keys)
        if len(rows) < batch:
            break
    # Whatever is left under the key's prefix has no live row: a crash's leftovers, or uploads
    # that never committed. The key is gone, so all of it goes.
    leftovers = await res.store.delete_prefix(f"{key_id}/")
    async with res.sessionmaker() as session:
        await session.exec(
            update(VirtualKey)
            .where(col(VirtualKey.id) == key_id)
            .values(purge_status=PurgeStatus.DONE, purge_finished_at=utcnow())
        )
        await session.commit()
    log.info("key.purged key_id=%s objects=%d leftovers=%d", key_id, deleted, leftovers)
    return deleted


async def unfinished_purges(session: AsyncSession) -> list[str]:
    rows = await session.exec(
        select(VirtualKey.id).where(
            col(VirtualKey.purge_status).in_((PurgeStatus.PENDING, PurgeStatus.RUNNING))
        )
    )
    return list(rows.all())


@dataclass(frozen=True, slots=True)
class Reconciliation:
    objects: int
    """Objects in the bucket."""
    rows: int
    """Live media rows."""
    orphans: int
    """Objects with no live row, older than the grace period."""
    orphans_deleted: int
    missing: int
    """Live rows whose object is gone."""
    missing_marked: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def reconcile(res: Resources, *, fix: bool) -> Reconciliation:
    """Compare the bucket with the database. With `fix`, delete orphans older than the grace
    period and mark rows whose object is missing (their usage moves down). Only the prefixes of
    this deployment's keys are looked at: a bucket shared with anything else keeps what is not
    ours, whatever its age."""
    async with res.sessionmaker() as session:
        key_ids = (await session.exec(select(VirtualKey.id))).all()
        live = dict(
            (
                await session.exec(
                    select(MediaObject.storage_key, MediaObject.id).where(
                        col(MediaObject.deleted_at).is_(None)
                    )
                )
            ).all()
        )
    present: set[str] = set()
    orphans: list[str] = []
    cutoff = time.time() - res.settings.reconcile_grace_seconds
    for key_id in key_ids:
        async for info in res.store.list_objects(f"{key_id}/"):
            present.add(info.key)
            # A young object may be an upload whose row is about to be committed: leave it.
            if info.key not in live and info.modified and info.modified < cutoff:
                orphans.append(info.key)
    missing = [media_id for storage_key, media_id in live.items() if storage_key not in present]
    orphans_deleted = missing_marked = 0
    if fix and orphans:
        orphans_deleted = await res.store.delete_many(orphans)
    if fix and missing:
        async with res.sessionmaker() as session:
            rows = (
                await session.exec(
                    select(MediaObject)
                    .where(col(MediaObject.id).in_(missing), col(MediaObject.deleted_at).is_(None))
                    .with_for_update()
                )
            ).all()
            missing_marked = len(await mark_deleted(session, rows, "missing"))
            await session.commit()
    result = Reconciliation(
        len(present), len(live), len(orphans), orphans_deleted, len(missing), missing_marked
    )
    log.info("storage.reconciled %s", " ".join(f"{k}={v}" for k, v in result.as_dict().items()))
    return result
