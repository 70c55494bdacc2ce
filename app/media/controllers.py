"""/v1/media: upload an input (`POST`), download a file by signed link or the owner's key (`GET`,
with byte ranges when the API serves the bytes), delete one (`DELETE`); `/v1/usage` shows what the
caller's key stores. Another key's media answers 404; expired media 410 to its owner."""

from __future__ import annotations

import re
import time
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Redirect, Stream

from app.http.bodies import read_body
from app.http.dependencies import admit
from app.http.openapi import BINARY
from app.http.schemas import RequestModel
from app.keys.dependencies import KEY_DEPENDENCY, caller_key
from app.media import service as media_service
from app.media import uploads, usage
from app.media.responses import media_url
from app.media.schemas import MediaDeleted, MediaFile, Usage
from app.media.service import open_object
from app.media.storage_keys import download_name
from app.platform.errors import InvalidRequestError, NotFoundError
from app.platform.resources import Resources
from app.platform.tables import MediaObject, VirtualKey

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
    if exp is not None and sig is not None:
        opened = await media_service.open_by_link(resources, media_id, exp, sig, time.time())
        if opened is not None:
            return opened
    else:
        key = await caller_key(request, resources)
        if key is not None:
            # Downloads count against the key's rate limit too.
            await admit(request.scope, resources, key)
            media = await media_service.read(resources, key.id, media_id)
            return media, resources.settings.media_url_ttl_seconds
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


class MediaController(Controller):
    path = "/v1/media"
    tags = ["media"]

    @get(
        "/{media_id:str}",
        summary="Download a file (signed link or the owner's key)",
        responses={
            200: BINARY,
            206: ResponseSpec(
                data_container=bytes,
                media_type="*/*",
                description="The byte range asked for (`Range: bytes=...`)",
                generate_examples=False,
            ),
            302: ResponseSpec(
                data_container=None, description="To the object in S3 (presigned, or the CDN)"
            ),
        },
    )
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
        resources: Resources,
    ) -> MediaFile:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise InvalidRequestError("send the file as multipart/form-data, field 'file'")
        files = (await read_body(request, _NoFields, resources.settings.max_upload_bytes)).files
        data = files.get("file")
        if data is None or set(files) != {"file"}:
            raise InvalidRequestError("send exactly one file, as the field 'file'", param="file")
        media = await uploads.upload(resources, key, data, "file")
        return MediaFile.of(media, media_url(request, resources.settings, media.id))

    @delete("/{media_id:str}", status_code=200, dependencies=KEY_DEPENDENCY, summary="Delete")
    async def delete_media(
        self, media_id: str, key: VirtualKey, resources: Resources
    ) -> MediaDeleted:
        await media_service.delete(resources, key.id, media_id)
        return MediaDeleted(id=media_id)


class _NoFields(RequestModel):
    """An upload takes a file and nothing else."""


@get("/v1/usage", dependencies=KEY_DEPENDENCY, tags=["usage"], summary="This key's usage")
async def key_usage(key: VirtualKey, resources: Resources) -> Usage:
    return Usage.model_validate(await usage.report(resources, key))
