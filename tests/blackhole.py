"""A TCP proxy on loopback that can stop forwarding without closing anything: a network partition
as a worker sees it (connections stay open, nothing flows, no error), then heals. Runs its own
event loop in a thread, so tests drive it from any loop or none."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

CHUNK = 65536


class Blackhole:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.pause_on: bytes | None = None
        """A client chunk starting with these bytes pauses this proxy (held, not forwarded) and
        calls `on_pause`, once: a partition at an exact moment, e.g. an upload's `PUT`."""
        self.on_pause: Callable[[], None] = lambda: None
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def pause(self) -> None:
        """Stop forwarding, in both directions, on every connection (new ones wait too)."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                if self.pause_on is not None and data.startswith(self.pause_on):
                    self.pause_on = None
                    self._flowing.clear()
                    self.on_pause()
                await self._flowing.wait()  # read just before the partition: held, not lost
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def url_for(self, url: str) -> str:
        """`url` (host:port of the target) pointed at this proxy instead."""
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        netloc[-1] = host
        return urlunsplit(parts._replace(netloc="@".join(netloc)))


@contextlib.contextmanager
def blackholes(*urls: str) -> Iterator[list[Blackhole]]:
    """One proxy per URL's host:port, for the length of a `with`."""
    proxies = []
    try:
        for url in urls:
            parts = urlsplit(url)
            proxy = Blackhole(parts.hostname or "127.0.0.1", parts.port or 80)
            proxy.start()
            proxies.append(proxy)
        yield proxies
    finally:
        for proxy in proxies:
            proxy.close()
