"""/v1/media: upload an input (`POST`), download a file by signed link or the owner's key (`GET`,
with byte ranges when the API serves the bytes), delete one (`DELETE`); `/v1/usage` shows what the
caller's key stores. Another key's media answers 404; expired media 410 to its owner."""

from __future__ import annotations

import re
import time
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.response import Redirect, Stream
from sqlmodel.ext.asyncio.session import AsyncSession

from app.http.dependencies import KEY_DEPENDENCY, admit, caller_key
from app.http.render import media_url
from app.http.schemas import RequestModel
from app.media import usage
from app.media.service import download_name, get_media, mark_deleted, open_object, verify
from app.media.uploads import MEDIA_TYPES, save_upload
from app.openai_compat.common import read_body
from app.platform.errors import InvalidRequestError, NotFoundError
from app.platform.resources import Resources
from app.platform.tables import MediaObject, VirtualKey, iso

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


async def _authorize(
    request: Request[Any, Any, Any],
    resources: Resources,
    media_id: str,
    exp: int | None,
    sig: str | None,
) -> tuple[MediaObject, int]:
    """The media a signed link or the owner's key opens, and for how many seconds more a direct
    link to it may be handed out: no longer than the signed link itself lives."""
    settings = resources.settings
    now = time.time()
    if exp is not None and sig is not None:
        if verify(settings.signing_secret, media_id, exp, sig, now):
            async with resources.sessionmaker() as session:
                media = await get_media(session, media_id, None)
                owner = await session.get(VirtualKey, media.key_id)
            # A link stops working with its key: revoked or deleted (its purge may still run).
            if owner is not None and owner.revoked_at is None and owner.deleted_at is None:
                return media, max(1, min(settings.media_url_ttl_seconds, int(exp - now)))
    else:
        key = await caller_key(request, resources)
        if key is not None:
            await admit(resources, key)  # downloads count against the key's rate limit too
            async with resources.sessionmaker() as session:
                return await get_media(session, media_id, key.id), settings.media_url_ttl_seconds
    # Wrong signature, expired link, no key or another key's media all look the same.
    raise NotFoundError(f"No media found with id {media_id!r}.", param="id")


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for a single `bytes=` range; None to send everything."""
    if not header:
        return None
    match = RANGE.match(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None  # not a form we serve: RFC 9110 lets us answer 200 with everything
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), size - 1) if match[2] else size - 1
    else:  # a suffix: the last n bytes
        start, end = max(0, size - int(match[2])), size - 1
    if start >= size or start > end:
        raise _Unsatisfiable
    return start, end


class _Unsatisfiable(Exception):
    pass


def media_object(
    request: Request[Any, Any, Any], resources: Resources, media: MediaObject
) -> dict[str, Any]:
    return {
        "id": media.id,
        "object": "media",
        "kind": media.kind,
        "variant": media.variant,
        "job_id": media.job_id,
        "content_type": media.content_type,
        "bytes": media.bytes,
        "sha256": media.sha256,
        "created_at": iso(media.created_at),
        "expires_at": iso(media.expires_at),
        "url": media_url(request, resources.settings, media.id),
    }


class MediaController(Controller):
    path = "/v1/media"
    tags = ["media"]

    @get("/{media_id:str}", summary="Download a file (signed link or the owner's key)")
    async def download(
        self,
        request: Request[Any, Any, Any],
        media_id: str,
        resources: Resources,
        exp: int | None = None,
        sig: str | None = None,
    ) -> Response[Any]:
        media, lifetime = await _authorize(request, resources, media_id, exp, sig)
        filename = download_name(media.storage_key)
        direct = await resources.store.url(
            media.storage_key, expires_in=lifetime, filename=filename
        )
        if direct is not None:
            return Redirect(direct, status_code=302)
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{filename}"',
            "Cache-Control": f"private, max-age={lifetime}",
            "ETag": f'"{media.sha256}"',
        }
        try:
            span = _byte_range(request.headers.get("range"), media.bytes)
        except _Unsatisfiable:
            return Response(
                b"", status_code=416, headers={**headers, "Content-Range": f"bytes */{media.bytes}"}
            )
        if span is None:
            return Stream(
                await open_object(resources.store, media),
                media_type=media.content_type,
                headers={**headers, "Content-Length": str(media.bytes)},
            )
        start, end = span
        return Stream(
            await open_object(resources.store, media, start=start, end=end),
            status_code=206,
            media_type=media.content_type,
            headers={
                **headers,
                "Content-Length": str(end - start + 1),
                "Content-Range": f"bytes {start}-{end}/{media.bytes}",
            },
        )

    @post(
        "/",
        status_code=201,
        dependencies=KEY_DEPENDENCY,
        summary="Upload an input file (multipart field `file`)",
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        key: VirtualKey,
        session: AsyncSession,
        resources: Resources,
    ) -> dict[str, Any]:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise InvalidRequestError("send the file as multipart/form-data, field 'file'")
        files = (await read_body(request, _NoFields, resources.settings.max_upload_bytes)).files
        data = files.get("file")
        if data is None or set(files) != {"file"}:
            raise InvalidRequestError("send exactly one file, as the field 'file'", param="file")
        media = await save_upload(
            session,
            resources.store,
            key.id,
            data,
            param="file",
            allowed=MEDIA_TYPES,
            expires_at=usage.expiry(key, resources.settings.retention_days),
        )
        try:
            await session.commit()
        except BaseException:
            await resources.store.delete(media.storage_key)
            raise
        return media_object(request, resources, media)

    @delete("/{media_id:str}", status_code=200, dependencies=KEY_DEPENDENCY, summary="Delete")
    async def delete_media(
        self, media_id: str, key: VirtualKey, session: AsyncSession, resources: Resources
    ) -> dict[str, Any]:
        media = await get_media(session, media_id, key.id)
        storage_keys = await mark_deleted(session, [media], "owner")
        await session.commit()
        await resources.store.delete_many(storage_keys)
        return {"id": media_id, "object": "media.deleted", "deleted": True}


class _NoFields(RequestModel):
    """An upload takes a file and nothing else."""


@get("/v1/usage", dependencies=KEY_DEPENDENCY, tags=["usage"], summary="This key's usage")
async def key_usage(key: VirtualKey, session: AsyncSession) -> dict[str, Any]:
    return await usage.usage_of(session, key)
