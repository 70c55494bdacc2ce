"""What every provider emulator shares: serving a Starlette app on a loopback port, a log of the
requests it saw, injected faults, and real media files to hand out by URL."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from providers.local import encode_audio, encode_png, render_image, render_video
from tests.builders import free_port

API_KEY = "sk-emulator-key"


@dataclass
class Fault:
    path: str
    """Applies to requests whose path starts with this."""
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    every: int = 1
    """Fail every n-th matching request (1: each of them), `times` times in all: a flaky API."""
    matched: int = 0


def png_bytes(size: str = "256x256", prompt: str = "emulated") -> bytes:
    return encode_png(render_image(prompt, size, 1))


def mp4_bytes(size: str = "320x180") -> bytes:
    return render_video("emulated", size, 1, 12, 1)


def audio_bytes(fmt: str = "mp3") -> tuple[bytes, str]:
    return encode_audio("emulated speech", "alloy", fmt)


class Emulator:
    """A provider's HTTP API on loopback. Subclasses add routes; tests steer it with `fail`,
    `hold` (tasks stay in progress until released) and read `seen`."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.faults: list[Fault] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self.created: list[str] = []
        self.canceled: list[str] = []
        self.held = threading.Event()
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self.url = ""

    # steering -----------------------------------------------------------------------------
    def fail(
        self,
        path: str,
        status: int,
        body: dict[str, Any] | None = None,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        every: int = 1,
    ) -> None:
        with self.lock:
            self.faults.append(Fault(path, status, body or {}, headers or {}, times, every))

    def hold(self) -> None:
        """Tasks created from now on stay in progress until `release`."""
        self.held.set()

    def release(self) -> None:
        self.held.clear()

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.faults.clear()
            self.created.clear()
            self.canceled.clear()
        self.held.clear()

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for m, p in list(self.seen) if m == method and p.startswith(prefix))

    # serving ------------------------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    def add_file(self, data: bytes, content_type: str) -> str:
        file_id = self.new_id("f")
        self.files[file_id] = (data, content_type)
        return f"{self.url}/files/{file_id}"

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {API_KEY}"

    async def _file(self, request: Request) -> Response:
        data, content_type = self.files[request.path_params["file_id"]]
        return Response(data, media_type=content_type)

    def app(self) -> Starlette:
        def wrap(endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
            async def handler(request: Request) -> Response:
                self.seen.append((request.method, request.url.path))
                with self.lock:
                    for fault in self.faults:
                        if fault.times > 0 and request.url.path.startswith(fault.path):
                            fault.matched += 1
                            if fault.matched % fault.every:
                                continue
                            fault.times -= 1
                            return JSONResponse(fault.body, fault.status, headers=fault.headers)
                response: Response = await endpoint(request)
                return response

            return handler

        # The files first: an emulator may end its routes with a catch-all path.
        declared = [Route("/files/{file_id}", self._file, methods=["GET"]), *self.routes()]
        return Starlette(
            routes=[
                Route(r.path, wrap(r.endpoint), methods=list(r.methods or ["GET"]))
                for r in declared
            ]
        )


class Servable(Protocol):
    url: str

    def app(self) -> Starlette: ...


Served = TypeVar("Served", bound=Servable)


@contextlib.contextmanager
def serve(emulator: Served) -> Iterator[Served]:
    port = free_port()
    emulator.url = f"http://127.0.0.1:{port}"
    config = uvicorn.Config(emulator.app(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"emulator-{port}")
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("emulator did not start")
        time.sleep(0.02)
    try:
        yield emulator
    finally:
        server.should_exit = True
        thread.join(10)
