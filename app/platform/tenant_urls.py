"""URLs tenants give (input images, webhooks): checked at submit (scheme, port, no private
address literal, every address the name resolves to public), and fetched through a client that
checks again on the connection itself (`CheckedBackend`), with a size limit and a timeout,
redirects refused (a redirect could point anywhere)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from app.platform.errors import InvalidRequestError
from app.platform.settings import Settings
from providers.base import InputFile, sniff_content_type

NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
TEREDO = ipaddress.ip_network("2001::/32")


def _is_public(address: str) -> bool:
    """Whether `address` reaches only the public internet, including through every IPv6 form
    that carries an IPv4 address (mapped, compatible, NAT64, 6to4) and never Teredo, whose
    client address is hidden."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a zone index names a local link
    if ip.is_multicast or not ip.is_global:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return True
    if ip in TEREDO or ip.is_site_local:
        return False
    embedded: ipaddress.IPv4Address | None = ip.ipv4_mapped or ip.sixtofour
    if embedded is None and (ip in IPV4_COMPATIBLE or any(ip in net for net in NAT64)):
        embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return embedded is None or _is_public(str(embedded))


class BlockedAddress(httpcore.ConnectError):
    """The host resolved (at connect time) to an address a tenant's URL may not reach."""


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend for tenants' URLs: resolves the host once, refuses it unless
    every address is public, and connects to the address it checked, so that a name that
    resolves elsewhere a moment later (DNS rebinding) cannot slip past the check. TLS still
    names the host (SNI and certificate checks) and so does the Host header."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError("the host does not resolve") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses or not (
            self._allow_private or all(_is_public(address) for address in addresses)
        ):
            raise BlockedAddress("the host resolves to an address that may not be reached")
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("tenants' URLs cannot name a socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def open_tenant_client(*, allow_private: bool, timeout: float) -> httpx.AsyncClient:
    """The client for URLs a tenant gave us (inputs, webhooks): every connection through
    `CheckedBackend`, no proxy from the environment (a proxy would connect for us, unchecked),
    no redirects."""
    transport = httpx.AsyncHTTPTransport()
    # httpx takes no network backend of its own; its pool is httpcore's, which does.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=100,
        max_keepalive_connections=20,
        network_backend=CheckedBackend(allow_private=allow_private),
    )
    return httpx.AsyncClient(
        transport=transport,
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(timeout),
        headers={"User-Agent": "mediagate"},
    )


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
    if parts.port not in (None, 443):
        raise InvalidRequestError(f"{param} must use the standard https port", param=param)
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        if parts.hostname.lower() in ("localhost",) or parts.hostname.endswith(".localhost"):
            raise InvalidRequestError(f"{param} must not point at this host", param=param) from None
        return
    if not _is_public(str(literal)):
        raise InvalidRequestError(f"{param} must not point at a private address", param=param)


async def check_resolves_public(url: str, param: str, *, within: float) -> None:
    """Every address the host resolves to must be public (no loopback, private, link-local);
    a host that does not resolve within `within` seconds is refused like one that does not
    resolve (a slow resolver must not hold the request, or what it holds, for long)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(within):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        raise InvalidRequestError(
            f"{param}: the host {host!r} does not resolve", param=param
        ) from exc
    if not infos or not all(_is_public(str(info[4][0])) for info in infos):
        raise InvalidRequestError(f"{param} must not point at a private address", param=param)


def failure_reason(exc: BaseException) -> str:
    """What a tenant is told when their URL could not be fetched: the kind of failure, never the
    exception (a port scanner would read a refused connection apart from a filtered one)."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout"
    if isinstance(exc, httpx.HTTPError) and isinstance(exc.__cause__, BlockedAddress):
        return "refused: private address"
    return "connection failed"


async def fetch_input(
    client: httpx.AsyncClient, settings: Settings, url: str, param: str
) -> InputFile:
    """Fetch an input image through the tenant client (`open_tenant_client`)."""
    # Where the name resolves now is checked by the tenant client as it connects.
    check_url(url, param, allow_private=settings.allow_private_urls)
    limit = settings.max_upload_bytes
    deadline = settings.input_url_timeout_seconds
    try:
        # httpx's timeout bounds each read; the deadline bounds the whole fetch, so a server
        # trickling a byte at a time cannot hold a worker slot for hours.
        async with (
            asyncio.timeout(deadline),
            client.stream("GET", url, follow_redirects=False, timeout=deadline) as response,
        ):
            if response.status_code != 200:
                raise InvalidRequestError(
                    f"{param}: fetching it answered {response.status_code}", param=param
                )
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data.extend(chunk)
                if len(data) > limit:
                    raise InvalidRequestError(f"{param} is larger than {limit} bytes", param=param)
    except (httpx.HTTPError, TimeoutError) as exc:
        raise InvalidRequestError(
            f"{param} could not be fetched ({failure_reason(exc)})", param=param
        ) from exc
    content_type = sniff_content_type(bytes(data[:16]))
    if content_type is None or not content_type.startswith("image/"):
        raise InvalidRequestError(f"{param} is not a PNG, JPEG or WebP image", param=param)
    name = urlsplit(url).path.rsplit("/", 1)[-1] or "input"
    return InputFile(name, content_type, bytes(data))
