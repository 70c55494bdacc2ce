"""The URL the client reached us at (or `MEDIAGATE_PUBLIC_URL`): the base of every link a
response carries."""

from __future__ import annotations

from typing import Any

from litestar import Request

from app.platform.settings import Settings


def base_url(request: Request[Any, Any, Any], settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")
