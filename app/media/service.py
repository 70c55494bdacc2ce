"""Media service: signed expiring links, and recording outputs with usage exactly once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.jobs.links import job_urls
from app.media import usage
from app.platform.errors import GoneError, NotFoundError
from app.platform.ids import new_id
from app.platform.resources import Resources
from app.platform.settings import Settings
from app.platform.tables import MediaObject, VirtualKey, as_utc, media_kind, utcnow
from app.platform.vocabulary import ErrorCode, Variant
from storage.base import MediaStore, StorageNotFoundError


def sign(secret: bytes, media_id: str, expires: int) -> str:
    mac = hmac.new(secret, f"{media_id}.{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def signed_path(secret: bytes, media_id: str, expires: int) -> str:
    return f"/v1/media/{media_id}?exp={expires}&sig={sign(secret, media_id, expires)}"


def signed_url(base: str, settings: Settings, media_id: str, until: int | None = None) -> str:
    """A link to the media under `base` that works for `media_url_ttl_seconds` from now, and no
    longer than `until` (the expiry of the link it is handed out through)."""
    expires = int(time.time()) + settings.media_url_ttl_seconds
    if until is not None:
        expires = min(expires, until)
    return base + signed_path(settings.signing_secret, media_id, expires)


def with_signed_links(
    base: str, settings: Settings, snapshot: dict[str, Any], until: int | None = None
) -> dict[str, Any]:
    """A job snapshot with its links under `base`: a fresh signed link on each output, and the
    job's `urls` (get, cancel, and a fresh signed stream link). Every job response, event and
    webhook is made so. `until`: the snapshot is read through a signed stream link expiring
    then, and no link it hands out outlives that one."""
    outputs = [
        {**o, "url": signed_url(base, settings, o["id"], until)}
        for o in snapshot.get("outputs", [])
    ]
    linked = {**snapshot, "outputs": outputs}
    if snapshot.get("object") == "job":
        linked["urls"] = job_urls(base, settings, snapshot["id"], until)
    return linked


def verify(secret: bytes, media_id: str, expires: int, signature: str, now: float) -> bool:
    if expires < now:
        return False
    # As bytes: compare_digest refuses str with non-ASCII characters (a forged link may have any).
    expected = sign(secret, media_id, expires).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass"))


def is_expired(media: MediaObject, now: datetime | None = None) -> bool:
    return media.expires_at is not None and as_utc(media.expires_at) <= (now or utcnow())


async def get_media(session: AsyncSession, media_id: str, key_id: str | None) -> MediaObject:
    """A live media object; with `key_id`, only if that key owns it. Expired media is gone:
    its owner hears so (410 `media_expired`), anyone else that it does not exist."""
    media = await session.get(MediaObject, media_id)
    if media is None or (key_id and media.key_id != key_id):
        raise NotFoundError(f"No media found with id {media_id!r}.", param="id")
    expired = media.deleted_reason == "expired" or (media.deleted_at is None and is_expired(media))
    if expired and key_id:
        raise GoneError(
            f"Media {media_id!r} has expired.", code=ErrorCode.MEDIA_EXPIRED, param="id"
        )
    if media.deleted_at is not None or expired:
        raise NotFoundError(f"No media found with id {media_id!r}.", param="id")
    return media


async def open_by_link(
    resources: Resources, media_id: str, expires: int, signature: str, now: float
) -> tuple[MediaObject, int] | None:
    """The media a signed link opens, and for how many seconds more a direct link to it may be
    handed out (no longer than the signed link itself lives); None if the link does not open it.
    A link stops working with its key: revoked or deleted (its purge may still run)."""
    settings = resources.settings
    if not verify(settings.signing_secret, media_id, expires, signature, now):
        return None
    async with resources.sessionmaker() as session:
        media = await get_media(session, media_id, None)
        owner = await session.get(VirtualKey, media.key_id)
    if owner is None or owner.revoked_at is not None or owner.deleted_at is not None:
        return None
    return media, max(1, min(settings.media_url_ttl_seconds, int(expires - now)))


async def read(resources: Resources, key_id: str, media_id: str) -> MediaObject:
    async with resources.sessionmaker() as session:
        return await get_media(session, media_id, key_id)


async def delete(resources: Resources, key_id: str, media_id: str) -> None:
    """The owner deletes one object: its row (and usage) first, then the object."""
    async with resources.sessionmaker() as session:
        media = await get_media(session, media_id, key_id)
        storage_keys = await mark_deleted(session, [media], "owner")
        await session.commit()
    await resources.store.delete_many(storage_keys)


async def record_output(
    session: AsyncSession,
    *,
    job_id: str,
    key_id: str,
    index: int,
    storage_key: str,
    content_type: str,
    size: int,
    sha256: str,
    variant: Variant = Variant.OUTPUT,
    expires_at: datetime | None = None,
) -> tuple[MediaObject, str | None]:
    """Insert the (job, variant, index) row, or update it on a re-run; usage moves by the
    difference. Also returns the storage key of the object the re-run replaced when it is not the
    one just written (the output came back as another format), which the caller deletes once the
    transaction commits.

    The unique (job_id, variant, index) constraint is the source of truth: a re-run after a crash
    replaces the row, never adds a second one.
    """
    for _ in range(2):
        existing = (
            await session.exec(
                select(MediaObject)
                .where(
                    MediaObject.job_id == job_id,
                    MediaObject.variant == variant,
                    MediaObject.index == index,
                )
                .with_for_update()
            )
        ).first()
        if existing is None:
            media = MediaObject(
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
                expires_at=expires_at,
            )
            session.add(media)
            try:
                async with session.begin_nested():
                    await session.flush()
            except IntegrityError:
                # Another attempt recorded it between our read and write: update that row.
                session.expunge(media)
                continue
            await usage.count_write(session, key_id, media.kind, size)
            return media, None
        replaced: str | None = None
        if existing.deleted_at is None:
            # The re-run replaced the object: the old one is gone, the new one written.
            await usage.count_delete(session, key_id, existing.kind, existing.bytes)
            if existing.storage_key != storage_key:
                replaced = existing.storage_key
        existing.storage_key = storage_key
        existing.content_type = content_type
        existing.kind = media_kind(content_type)
        existing.bytes = size
        existing.sha256 = sha256
        existing.expires_at = expires_at
        existing.deleted_at = None
        existing.deleted_reason = None
        session.add(existing)
        await session.flush()
        await usage.count_write(session, key_id, existing.kind, size)
        return existing, replaced
    raise RuntimeError(f"media row ({job_id}, {index}) neither inserted nor found")


async def record_input(
    session: AsyncSession,
    *,
    media_id: str,
    key_id: str,
    storage_key: str,
    content_type: str,
    size: int,
    sha256: str,
    expires_at: datetime | None = None,
) -> MediaObject:
    """An uploaded input: a media object of the key with no job, counted in its usage."""
    media = MediaObject(
        id=media_id,
        job_id=None,
        key_id=key_id,
        variant=Variant.INPUT,
        storage_key=storage_key,
        content_type=content_type,
        bytes=size,
        sha256=sha256,
        kind=media_kind(content_type),
        expires_at=expires_at,
    )
    session.add(media)
    await session.flush()
    await usage.count_write(session, key_id, media.kind, size)
    return media


async def outputs_of(
    session: AsyncSession, job_ids: Iterable[str], variant: Variant = Variant.OUTPUT
) -> dict[str, list[MediaObject]]:
    """The live media of each job (its outputs, or their thumbnails), in index order."""
    ids = list(job_ids)
    found: dict[str, list[MediaObject]] = {job_id: [] for job_id in ids}
    if not ids:
        return found
    rows = await session.exec(
        select(MediaObject)
        .where(
            col(MediaObject.job_id).in_(ids),
            col(MediaObject.variant) == variant,
            col(MediaObject.deleted_at).is_(None),
        )
        .order_by(col(MediaObject.index))
    )
    for media in rows:
        if media.job_id is not None:
            found[media.job_id].append(media)
    return found


async def outputs_for(
    resources: Resources, job_id: str, variant: Variant = Variant.OUTPUT
) -> list[MediaObject]:
    """One job's outputs (or thumbnails), read in a session of its own."""
    async with resources.sessionmaker() as session:
        return (await outputs_of(session, [job_id], variant))[job_id]


async def mark_deleted(
    session: AsyncSession, rows: Sequence[MediaObject], reason: str
) -> list[str]:
    """Mark live rows deleted and move usage down; returns their storage keys, which the caller
    deletes from storage (a crash in between leaves orphans that reconciliation removes)."""
    now = utcnow()
    keys: list[str] = []
    for media in rows:
        if media.deleted_at is not None:
            continue
        media.deleted_at = now
        media.deleted_reason = reason
        session.add(media)
        await usage.count_delete(session, media.key_id, media.kind, media.bytes)
        keys.append(media.storage_key)
    await session.flush()
    return keys


async def mark_job_media_deleted(session: AsyncSession, job_id: str, reason: str) -> list[str]:
    """Mark every live object of the job deleted; returns their storage keys."""
    rows = (
        await session.exec(
            select(MediaObject)
            .where(MediaObject.job_id == job_id, col(MediaObject.deleted_at).is_(None))
            .with_for_update()
        )
    ).all()
    return await mark_deleted(session, rows, reason)


async def open_object(
    store: MediaStore, media: MediaObject, *, start: int = 0, end: int | None = None
) -> AsyncIterator[bytes]:
    """The object's bytes with the first chunk already read, so that an object the store lost
    (a row whose object is gone) is a `410 media_missing` before any response starts, never a
    200 cut short."""
    chunks = store.iter_bytes(media.storage_key, start=start, end=end)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""
    except StorageNotFoundError:
        raise GoneError(
            f"The file of media {media.id!r} is missing from storage.",
            code=ErrorCode.MEDIA_MISSING,
            param="id",
        ) from None

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    return rest()
