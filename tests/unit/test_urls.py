"""Input URLs: refused at submit for the wrong scheme or a private address literal, and after DNS
for names that resolve to private addresses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from app.platform.errors import InvalidRequestError
from app.platform.tenant_urls import (
    _is_public,
    check_resolves_public,
    check_url,
    failure_reason,
    open_tenant_client,
)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a.png",
        "ftp://example.com/a.png",
        "https://127.0.0.1/a.png",
        "https://10.1.2.3/a.png",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/a.png",
        "https://localhost/a.png",
        "https:///nohost",
    ],
)
def test_refused_without_dns(url: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        check_url(url, "input.image", allow_private=False)
    assert refused.value.param == "input.image"


def test_public_https_passes_and_the_setting_allows_private() -> None:
    check_url("https://images.example.com/a.png", "input.image", allow_private=False)
    check_url("http://127.0.0.1:9000/a.png", "input.image", allow_private=True)


async def test_names_resolving_to_private_addresses_are_refused() -> None:
    with pytest.raises(InvalidRequestError):
        await check_resolves_public("https://localhost./a.png", "input.image", within=5)
    with pytest.raises(InvalidRequestError):
        await check_resolves_public("https://no-such-host.invalid/a.png", "input.image", within=5)


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::127.0.0.1",  # IPv4-compatible
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of the metadata address
        "64:ff9b:1::a00:1",  # local-use NAT64
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo: the client address is hidden
        "fec0::1",  # site-local
        "fd00::1",  # unique local
        "fe80::1%eth0",  # link-local with a zone
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space (carrier NAT)
        "0.0.0.0",
        "ff02::1",
    ],
)
def test_every_form_of_a_private_address_is_private(address: str) -> None:
    assert not _is_public(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808"])
def test_public_addresses_are_public(address: str) -> None:
    assert _is_public(address)


def test_only_the_standard_port() -> None:
    with pytest.raises(InvalidRequestError, match="standard https port"):
        check_url("https://example.com:8443/a.png", "webhook.url", allow_private=False)
    check_url("https://example.com:443/a.png", "webhook.url", allow_private=False)
    check_url("http://localhost:8443/a.png", "webhook.url", allow_private=True)


async def test_unusual_literals_resolve_to_what_they_are() -> None:
    """2130706433 and 0x7f.1 are 127.0.0.1 to the resolver: checked after resolving, refused."""
    for host in ("2130706433", "0x7f.0.0.1", "017700000001"):
        with pytest.raises(InvalidRequestError):
            await check_resolves_public(f"https://{host}/a.png", "input.image", within=5)


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A loopback HTTP server that records each request's head and answers 200 with 'ok'."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()


async def test_the_check_is_made_on_the_connection_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tenant client refuses at connect time whatever the name resolves to then (a name
    checked a moment earlier may resolve elsewhere now), keeps the name in the Host header,
    and ignores proxy variables (a proxy would connect for us, unchecked)."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    async with _server() as (port, heads):
        strict = open_tenant_client(allow_private=False, timeout=5)
        try:
            with pytest.raises(httpx.ConnectError) as refused:
                await strict.get(f"http://localhost:{port}/x")
            assert failure_reason(refused.value) == "refused: private address"
            assert heads == []  # nothing reached the server
        finally:
            await strict.aclose()
        lenient = open_tenant_client(allow_private=True, timeout=5)
        try:
            answer = await lenient.get(f"http://localhost:{port}/x")
        finally:
            await lenient.aclose()
        assert answer.text == "ok"
        assert f"host: localhost:{port}".encode() in heads[0].lower()
