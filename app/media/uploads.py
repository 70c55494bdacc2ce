"""Uploaded inputs (reference images for edits and image-to-video): checked by their bytes, stored
under the key like outputs, recorded as `input` media objects that count toward the key's usage."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from app.keys.service import get_key, lock_key
from app.media.service import download_name, input_storage_key, record_input
from app.media.usage import check_room, expiry
from app.platform.errors import InvalidRequestError
from app.platform.ids import new_id
from app.platform.resources import Resources
from app.platform.tables import MediaObject, VirtualKey
from providers.base import (
    ProviderError,
    check_input_image,
    extension_for,
    iter_chunks,
    sniff_content_type,
)
from storage.base import MediaStore

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
MEDIA_TYPES = (
    *IMAGE_TYPES,
    "video/mp4",
    "audio/mpeg",
    "audio/wav",
    "audio/ogg",
    "audio/flac",
)


async def save_upload(
    session: AsyncSession,
    store: MediaStore,
    key_id: str,
    data: bytes,
    *,
    param: str,
    allowed: tuple[str, ...] = IMAGE_TYPES,
    expires_at: datetime | None = None,
) -> MediaObject:
    """Store an upload and record it; the caller commits, and deletes the object if the commit
    fails. The type comes from the bytes, and the key's storage quota applies as to outputs. The
    object is written first and recorded after, under the key's row lock (taken by a deletion
    too): an upload that finishes after its key was deleted is refused and its object deleted,
    and no lock is held while the bytes travel."""
    if not data:
        raise InvalidRequestError(f"{param} is empty", param=param)
    content_type = sniff_content_type(data[:16])
    if content_type not in allowed:
        raise InvalidRequestError(
            f"{param} must be one of {', '.join(allowed)} (judged by its content)", param=param
        )
    if content_type in IMAGE_TYPES:
        try:
            check_input_image(data)
        except ProviderError as exc:
            raise InvalidRequestError(exc.public, param=param) from None
    # A first look without the lock, so as not to store what would be refused at once.
    await check_room(session, await get_key(session, key_id), len(data))
    media_id = new_id("med")
    storage_key = input_storage_key(key_id, media_id, extension_for(content_type))
    await store.put(
        storage_key,
        iter_chunks(data),
        content_type=content_type,
        filename=download_name(storage_key),
    )
    try:
        await check_room(session, await lock_key(session, key_id), len(data))
        return await record_input(
            session,
            media_id=media_id,
            key_id=key_id,
            storage_key=storage_key,
            content_type=content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            expires_at=expires_at,
        )
    except BaseException:
        await store.delete(storage_key)  # no row will point at it
        raise


async def save_all(
    resources: Resources, session: AsyncSession, key: VirtualKey, files: Mapping[str, bytes]
) -> dict[str, MediaObject]:
    """Save each of a request's files as an input of the key, under its parameter's name; the
    caller commits with what names them, or calls `discard` when that fails after all."""
    saved: dict[str, MediaObject] = {}
    try:
        for name, data in files.items():
            saved[name] = await save_upload(
                session,
                resources.store,
                key.id,
                data,
                param=name,
                expires_at=expiry(key, resources.settings.retention_days),
            )
    except BaseException:
        await discard(resources, saved)
        raise
    return saved


async def discard(resources: Resources, saved: Mapping[str, MediaObject]) -> None:
    for media in saved.values():
        await resources.store.delete(media.storage_key)


async def upload(resources: Resources, key: VirtualKey, data: bytes, param: str) -> MediaObject:
    """`POST /v1/media`: one file of any type we serve, stored and committed as the key's input."""
    async with resources.sessionmaker() as session:
        media = await save_upload(
            session,
            resources.store,
            key.id,
            data,
            param=param,
            allowed=MEDIA_TYPES,
            expires_at=expiry(key, resources.settings.retention_days),
        )
        try:
            await session.commit()
        except BaseException:
            await resources.store.delete(media.storage_key)
            raise
    return media
