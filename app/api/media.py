"""GET /v1/media/{id}: an output, by signed link or the owner's key; 404 for anyone else."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, get
from litestar.response import Redirect, Stream

from app.api.dependencies import bearer_token, lookup_key
from app.core.errors import NotFoundError
from app.core.media import download_name, get_media, verify
from app.core.models import MediaObject
from app.core.resources import Resources


async def _authorize(
    request: Request[Any, Any, Any],
    resources: Resources,
    media_id: str,
    exp: int | None,
    sig: str | None,
) -> MediaObject:
    settings = resources.settings
    if exp is not None and sig is not None:
        if verify(settings.signing_secret, media_id, exp, sig, time.time()):
            async with resources.sessionmaker() as session:
                return await get_media(session, media_id, None)
    else:
        key = await lookup_key(resources, bearer_token(request.headers))
        if key is not None:
            async with resources.sessionmaker() as session:
                return await get_media(session, media_id, key.id)
    # Wrong signature, expired link, no key or another key's media all look the same.
    raise NotFoundError(f"No media found with id {media_id!r}.", param="id")


@get("/v1/media/{media_id:str}", tags=["media"], summary="Download a generated file")
async def get_media_file(
    request: Request[Any, Any, Any],
    media_id: str,
    resources: Resources,
    exp: int | None = None,
    sig: str | None = None,
) -> Response[Any]:
    media = await _authorize(request, resources, media_id, exp, sig)
    filename = download_name(media.storage_key)
    direct = await resources.store.url(
        media.storage_key, expires_in=resources.settings.media_url_ttl_seconds, filename=filename
    )
    if direct is not None:
        return Redirect(direct, status_code=302)
    return Stream(
        resources.store.iter_bytes(media.storage_key),
        media_type=media.content_type,
        headers={
            "Content-Length": str(media.bytes),
            "Content-Disposition": f'inline; filename="{filename}"',
            "Cache-Control": "private, max-age=3600",
            "ETag": f'"{media.sha256}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
