"""Inputs given by URL: checked at submit (scheme, and no private or loopback address literal) and
again when a worker fetches them (every address the name resolves to must be public), fetched
with a size limit and a timeout, redirects refused (a redirect could point anywhere)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from app.core.errors import InvalidRequestError
from providers.base import InputFile, sniff_content_type

if TYPE_CHECKING:
    from app.core.resources import Resources


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_global and not ip.is_multicast


MAX_URL_LENGTH = 2000
"""As long as the columns that keep URLs (a webhook's, a key's)."""


def check_url(url: str, param: str, *, allow_private: bool) -> None:
    """Refuse what can be refused without a DNS lookup."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequestError(
            f"{param} must be at most {MAX_URL_LENGTH} characters", param=param
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one (over 65535)
    except ValueError:
        raise InvalidRequestError(f"{param} is not a valid URL", param=param) from None
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed or not parts.hostname:
        raise InvalidRequestError(f"{param} must be an https:// URL", param=param)
    if allow_private:
        return
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        if parts.hostname.lower() in ("localhost",) or parts.hostname.endswith(".localhost"):
            raise InvalidRequestError(f"{param} must not point at this host", param=param) from None
        return
    if not _is_public(str(literal)):
        raise InvalidRequestError(f"{param} must not point at a private address", param=param)


async def check_resolves_public(url: str, param: str) -> None:
    """Every address the host resolves to must be public (no loopback, private, link-local)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidRequestError(
            f"{param}: the host {host!r} does not resolve", param=param
        ) from exc
    if not infos or not all(_is_public(str(info[4][0])) for info in infos):
        raise InvalidRequestError(f"{param} must not point at a private address", param=param)


async def fetch_input(res: Resources, url: str, param: str) -> InputFile:
    settings = res.settings
    check_url(url, param, allow_private=settings.allow_private_urls)
    if not settings.allow_private_urls:
        await check_resolves_public(url, param)
    limit = settings.max_upload_bytes
    try:
        async with res.http.stream(
            "GET", url, follow_redirects=False, timeout=settings.input_url_timeout_seconds
        ) as response:
            if response.status_code != 200:
                raise InvalidRequestError(
                    f"{param}: fetching it answered {response.status_code}", param=param
                )
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data.extend(chunk)
                if len(data) > limit:
                    raise InvalidRequestError(f"{param} is larger than {limit} bytes", param=param)
    except httpx.HTTPError as exc:
        raise InvalidRequestError(
            f"{param} could not be fetched ({type(exc).__name__})", param=param
        ) from exc
    content_type = sniff_content_type(bytes(data[:16]))
    if content_type is None or not content_type.startswith("image/"):
        raise InvalidRequestError(f"{param} is not a PNG, JPEG or WebP image", param=param)
    name = urlsplit(url).path.rsplit("/", 1)[-1] or "input"
    return InputFile(name, content_type, bytes(data))
