"""Media links in responses: signed for this response, under the URL the client reached us at."""

from __future__ import annotations

from typing import Any

from litestar import Request

from app.http.render import base_url
from app.media.service import signed_url, with_signed_links
from app.platform.settings import Settings


def media_url(request: Request[Any, Any, Any], settings: Settings, media_id: str) -> str:
    return signed_url(base_url(request, settings), settings, media_id)


def with_urls(
    request: Request[Any, Any, Any], settings: Settings, snapshot: dict[str, Any]
) -> dict[str, Any]:
    return with_signed_links(base_url(request, settings), settings, snapshot)
