"""Media service: signed expiring links, and recording outputs with usage exactly once."""

from __future__ import annotations

import base64
import hashlib
import hmac

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.errors import NotFoundError
from app.core.ids import new_id
from app.core.models import KeyUsage, MediaObject, utcnow


def sign(secret: bytes, media_id: str, expires: int) -> str:
    mac = hmac.new(secret, f"{media_id}.{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def signed_path(secret: bytes, media_id: str, expires: int) -> str:
    return f"/v1/media/{media_id}?exp={expires}&sig={sign(secret, media_id, expires)}"


def verify(secret: bytes, media_id: str, expires: int, signature: str, now: float) -> bool:
    if expires < now:
        return False
    return hmac.compare_digest(sign(secret, media_id, expires), signature)


def storage_key_for(
    key_id: str, job_id: str, index: int, extension: str, variant: str = "output"
) -> str:
    suffix = "" if variant == "output" else f".{variant}"
    return f"{key_id}/{job_id}/{index}{suffix}.{extension}"


def input_storage_key(key_id: str, media_id: str, extension: str) -> str:
    return f"{key_id}/inputs/{media_id}.{extension}"


def download_name(storage_key: str) -> str:
    """`{key}/{job}/{index}.{ext}` downloads as `{job}-{index}.{ext}`, an input as its id."""
    *_, parent, leaf = storage_key.split("/")
    return leaf if parent == "inputs" else f"{parent}-{leaf}"


async def get_media(session: AsyncSession, media_id: str, key_id: str | None) -> MediaObject:
    """A live media object; with `key_id`, only if that key owns it."""
    media = await session.get(MediaObject, media_id)
    if media is None or media.deleted_at is not None or (key_id and media.key_id != key_id):
        raise NotFoundError(f"No media found with id {media_id!r}.", param="id")
    return media


async def _move_usage(session: AsyncSession, key_id: str, bytes_: int, objects: int) -> None:
    await session.exec(
        update(KeyUsage)
        .where(col(KeyUsage.key_id) == key_id)
        .values(
            bytes=KeyUsage.bytes + bytes_,
            objects=KeyUsage.objects + objects,
            updated_at=utcnow(),
        )
    )


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
    variant: str = "output",
) -> MediaObject:
    """Insert the (job, variant, index) row, or update it on a re-run; usage moves by the
    difference.

    The unique (job_id, variant, index) constraint is the source of truth: a re-run after a crash
    overwrote the same storage key, so it must replace the row, never add a second one.
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
            )
            session.add(media)
            try:
                async with session.begin_nested():
                    await session.flush()
            except IntegrityError:
                # Another attempt recorded it between our read and write: update that row.
                session.expunge(media)
                continue
            await _move_usage(session, key_id, size, 1)
            return media
        was_counted = existing.deleted_at is None
        delta_bytes = size - (existing.bytes if was_counted else 0)
        existing.storage_key = storage_key
        existing.content_type = content_type
        existing.bytes = size
        existing.sha256 = sha256
        existing.deleted_at = None
        session.add(existing)
        await session.flush()
        await _move_usage(session, key_id, delta_bytes, 0 if was_counted else 1)
        return existing
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
) -> MediaObject:
    """An uploaded input: a media object of the key with no job, counted in its usage."""
    media = MediaObject(
        id=media_id,
        job_id=None,
        key_id=key_id,
        variant="input",
        storage_key=storage_key,
        content_type=content_type,
        bytes=size,
        sha256=sha256,
    )
    session.add(media)
    await session.flush()
    await _move_usage(session, key_id, size, 1)
    return media


async def media_of_job(session: AsyncSession, job_id: str, variant: str) -> list[MediaObject]:
    rows = await session.exec(
        select(MediaObject)
        .where(
            MediaObject.job_id == job_id,
            MediaObject.variant == variant,
            col(MediaObject.deleted_at).is_(None),
        )
        .order_by(col(MediaObject.index))
    )
    return list(rows)


async def mark_job_media_deleted(session: AsyncSession, job_id: str) -> list[str]:
    """Mark every live object of the job deleted and move usage down; returns their storage keys
    (the caller deletes them from storage after committing)."""
    rows = (
        await session.exec(
            select(MediaObject)
            .where(MediaObject.job_id == job_id, col(MediaObject.deleted_at).is_(None))
            .with_for_update()
        )
    ).all()
    now = utcnow()
    for media in rows:
        media.deleted_at = now
        session.add(media)
        await _move_usage(session, media.key_id, -media.bytes, -1)
    await session.flush()
    return [media.storage_key for media in rows]
