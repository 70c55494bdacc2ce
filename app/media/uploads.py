"""Uploaded inputs (reference images for edits and image-to-video): checked by their bytes, stored
under the key like outputs, recorded as `input` media objects that count toward the key's usage."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from app.keys.service import lock_key, select_key
from app.media.service import record_input
from app.media.storage_keys import download_name, input_key
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

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
MEDIA_TYPES = (
    *IMAGE_TYPES,
    "video/mp4",
    "audio/mpeg",
    "audio/wav",
    "audio/ogg",
    "audio/flac",
)


@dataclass(frozen=True, slots=True)
class Stored:
    """An upload written to the store, not yet recorded."""

    param: str
    media_id: str
    storage_key: str
    content_type: str
    size: int
    sha256: str


def _content_type(data: bytes, param: str, allowed: tuple[str, ...]) -> str:
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
    return content_type


async def _store(
    resources: Resources, key_id: str, data: bytes, *, param: str, allowed: tuple[str, ...]
) -> Stored:
    """Check an upload by its bytes and write it to the store. No database connection is held
    while the bytes travel: the first look at the key's quota (so as not to store what would
    be refused at once) has a session of its own, given back before the write."""
    content_type = _content_type(data, param, allowed)
    async with resources.sessionmaker() as session:
        await check_room(session, await select_key(session, key_id), len(data))
    media_id = new_id("med")
    storage_key = input_key(key_id, media_id, extension_for(content_type))
    await resources.store.put(
        storage_key,
        iter_chunks(data),
        content_type=content_type,
        filename=download_name(storage_key),
    )
    digest = hashlib.sha256(data).hexdigest()
    return Stored(param, media_id, storage_key, content_type, len(data), digest)


async def _record(
    session: AsyncSession, key_id: str, stored: Stored, expires_at: datetime | None
) -> MediaObject:
    """Record a stored upload under the key's row lock (taken by a deletion too): an upload that
    finishes after its key was deleted, or past its quota, is refused. The caller commits."""
    await check_room(session, await lock_key(session, key_id), stored.size)
    return await record_input(
        session,
        media_id=stored.media_id,
        key_id=key_id,
        storage_key=stored.storage_key,
        content_type=stored.content_type,
        size=stored.size,
        sha256=stored.sha256,
        expires_at=expires_at,
    )


async def store_all(
    resources: Resources, key: VirtualKey, files: Mapping[str, bytes]
) -> list[Stored]:
    """Write each of a request's files to the store (before any session of the request is
    opened); `record_all` records them, `discard` deletes them when the request fails."""
    stored: list[Stored] = []
    try:
        for name, data in files.items():
            stored.append(await _store(resources, key.id, data, param=name, allowed=IMAGE_TYPES))
    except BaseException:
        await discard(resources, stored)
        raise
    return stored


async def record_all(
    resources: Resources, session: AsyncSession, key: VirtualKey, stored: Sequence[Stored]
) -> dict[str, MediaObject]:
    """Record stored files as inputs of the key, each under its parameter's name; the caller
    commits with what names them, or calls `discard` when that fails after all."""
    expires_at = expiry(key, resources.settings.retention_days)
    return {item.param: await _record(session, key.id, item, expires_at) for item in stored}


async def discard(resources: Resources, stored: Sequence[Stored]) -> None:
    for item in stored:
        await resources.store.delete(item.storage_key)


async def upload(resources: Resources, key: VirtualKey, data: bytes, param: str) -> MediaObject:
    """`POST /v1/media`: one file of any type we serve, stored and committed as the key's input."""
    stored = await _store(resources, key.id, data, param=param, allowed=MEDIA_TYPES)
    try:
        async with resources.sessionmaker() as session:
            media = (await record_all(resources, session, key, [stored]))[param]
            await session.commit()
    except BaseException:
        await discard(resources, [stored])  # no row points at it
        raise
    return media
