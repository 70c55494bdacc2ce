"""A webhook receiver on loopback: records every request it gets."""

from __future__ import annotations

import threading

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class Receiver:
    """Records every request; answers `planned` statuses first, then 200."""

    def __init__(self) -> None:
        self.url = ""
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.paths: list[str] = []
        self.planned: list[int] = []
        self.lock = threading.Lock()

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.received.append((dict(request.headers), body))
            self.paths.append(request.url.path)
            status = self.planned.pop(0) if self.planned else 200
        if status in (301, 302, 307):
            return Response(status_code=status, headers={"location": self.url + "/elsewhere"})
        return Response(status_code=status)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._hook, methods=["POST", "GET"])])
