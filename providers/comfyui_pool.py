"""A pool of self-hosted ComfyUI servers: which are up (a `/system_stats` check, cached a few
seconds; a server that fails it is out until a later check passes), and a slot on one of them
per job. ComfyUI runs one prompt at a time, so each server takes `slots` jobs (1 unless the
operator says) and the others wait for a free one; the slots are counted across every worker
process by a `Slots` store (Redis in production, `LocalSlots` in one process), each holder's
claim expiring unless renewed, so a crashed worker's slot comes back by itself."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from providers.base import ProviderRetryableError, ProviderTimeoutError

SLOT_TTL_SECONDS = 60.0
"""How long a slot's claim lasts unrenewed; the holder renews it every third of that."""
SLOT_WAIT_SECONDS = 0.2
"""How often a job waiting for a free slot looks again."""


@dataclass(frozen=True, slots=True)
class ComfyServer:
    url: str
    """Its base URL (`http://gpu-1:8188`), also the server's name in slots and tasks."""
    slots: int = 1
    """Jobs it is given at once (ComfyUI queues the rest itself, where we could not move them)."""


class Slots(Protocol):
    """Counts the jobs each server has, across processes; a claim expires after `ttl` seconds
    unless renewed."""

    async def acquire(self, server: str, capacity: int, holder: str, ttl: float) -> bool:
        """Claim one of the server's `capacity` slots for `holder` (True), or find none free. A
        holder that has a claim already keeps it, renewed (a retry of the same job, or the
        holder renewing its claim)."""
        ...

    async def release(self, server: str, holder: str) -> None: ...


class LocalSlots:
    """Slots counted in this process only (tests, or a single worker process)."""

    def __init__(self) -> None:
        self._claims: dict[str, dict[str, float]] = {}

    def _live(self, server: str) -> dict[str, float]:
        now = time.monotonic()
        claims = self._claims.setdefault(server, {})
        for holder in [h for h, until in claims.items() if until <= now]:
            del claims[holder]
        return claims

    async def acquire(self, server: str, capacity: int, holder: str, ttl: float) -> bool:
        claims = self._live(server)
        if holder not in claims and len(claims) >= capacity:
            return False
        claims[holder] = time.monotonic() + ttl
        return True

    async def release(self, server: str, holder: str) -> None:
        self._live(server).pop(holder, None)


class ComfyPool:
    def __init__(
        self,
        client: httpx.AsyncClient,
        servers: Sequence[ComfyServer],
        slots: Slots,
        *,
        health_seconds: float = 10.0,
    ) -> None:
        self._client = client
        self.servers = tuple(servers)
        self._slots = slots
        self._health_seconds = health_seconds
        self._checked: dict[str, tuple[bool, float]] = {}
        """Server URL -> (up, when last checked)."""

    def server(self, url: str) -> ComfyServer | None:
        return next((s for s in self.servers if s.url == url), None)

    async def check(self, server: ComfyServer) -> bool:
        """Ask the server now whether it is up (`GET /system_stats` answering its JSON)."""
        try:
            response = await self._client.get(server.url.rstrip("/") + "/system_stats", timeout=5)
            up = response.status_code == 200 and "system" in response.json()
        except (httpx.HTTPError, ValueError):
            up = False
        self._checked[server.url] = (up, time.monotonic())
        return up

    def mark_down(self, server: ComfyServer) -> None:
        """Take the server out until a check in `health_seconds` or later finds it up again."""
        self._checked[server.url] = (False, time.monotonic())

    async def is_up(self, server: ComfyServer) -> bool:
        found = self._checked.get(server.url)
        if found is None or time.monotonic() - found[1] >= self._health_seconds:
            return await self.check(server)
        return found[0]

    async def _up(self) -> list[ComfyServer]:
        states = await asyncio.gather(*(self.is_up(s) for s in self.servers))
        return [s for s, up in zip(self.servers, states, strict=True) if up]

    @contextlib.asynccontextmanager
    async def slot(
        self, holder: str, *, prefer: str | None = None, deadline: float | None = None
    ) -> AsyncIterator[ComfyServer]:
        """A slot on a server that is up: `prefer`'s while it is up (the job's uploads, outputs
        and history live there), else any; waiting for one to be free until `deadline` (a
        `time.monotonic()`), renewed while held and given back after."""
        chosen: ComfyServer | None = None
        while chosen is None:
            up = await self._up()
            pinned = [s for s in up if s.url == prefer]
            candidates = pinned or up
            if not candidates:
                raise ProviderRetryableError(
                    "no ComfyUI server is up", retry_after=self._health_seconds
                )
            random.shuffle(candidates)  # spread the jobs; any free slot will do
            for server in candidates:
                if await self._slots.acquire(server.url, server.slots, holder, SLOT_TTL_SECONDS):
                    chosen = server
                    break
            if chosen is None:
                if deadline is not None and time.monotonic() >= deadline:
                    raise ProviderTimeoutError("every ComfyUI server stayed busy")
                await asyncio.sleep(SLOT_WAIT_SECONDS)
        renewer = asyncio.create_task(self._renew(chosen, holder))
        try:
            yield chosen
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(Exception):  # an unreachable store: the claim expires
                await asyncio.shield(self._slots.release(chosen.url, holder))

    async def _renew(self, server: ComfyServer, holder: str) -> None:
        while True:
            await asyncio.sleep(SLOT_TTL_SECONDS / 3)
            with contextlib.suppress(Exception):
                await self._slots.acquire(server.url, server.slots, holder, SLOT_TTL_SECONDS)
