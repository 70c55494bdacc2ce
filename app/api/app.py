"""create_app(): the Litestar application, its lifespan and its wiring."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from litestar import Litestar
from litestar.config.response_cache import ResponseCacheConfig
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from app.api.dependencies import DEPENDENCIES
from app.api.errors import EXCEPTION_HANDLERS
from app.api.events import job_events
from app.api.health import healthz, readyz
from app.api.jobs import JobController
from app.api.keys import AdminKeyController
from app.api.media import get_media_file
from app.core.events import EventHub
from app.core.resources import open_resources
from app.core.settings import Settings
from storage.base import MediaStore

log = logging.getLogger("mediagate.api")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def create_app(
    settings: Settings, *, embedded_worker: bool = False, store: MediaStore | None = None
) -> Litestar:
    """The API. With `embedded_worker`, an arq worker runs in the same process and shares the
    API's clients (and so its memory store): the `mediagate dev` mode."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_resources(settings, store=store) as resources:
            hub = EventHub(resources.redis, resources.bus)
            await hub.start()
            app.state.resources = resources
            app.state.hub = hub
            worker_task: asyncio.Task[None] | None = None
            worker = None
            if embedded_worker:
                from workers.settings import build_worker  # noqa: PLC0415 - dev mode only

                worker = build_worker(settings, resources=resources, handle_signals=False)
                worker_task = asyncio.create_task(worker.main(), name="mediagate-embedded-worker")
            try:
                yield
            finally:
                if worker is not None and worker_task is not None:
                    worker_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await worker_task
                    with contextlib.suppress(Exception):
                        await worker.close()
                await hub.stop()

    return Litestar(
        route_handlers=[
            JobController,
            job_events,
            get_media_file,
            AdminKeyController,
            healthz,
            readyz,
        ],
        lifespan=[lifespan],
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        response_headers=[],
        before_send=[_security_headers],
        response_cache_config=ResponseCacheConfig(),
        openapi_config=OpenAPIConfig(
            title="mediagate",
            version="0.1.0",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="mg_...")
                }
            ),
            security=[{"bearer": []}],
        ),
        logging_config=None,
        debug=False,
    )


async def _security_headers(message: dict, scope: dict) -> None:  # type: ignore[type-arg]
    if message["type"] == "http.response.start":
        headers = message.setdefault("headers", [])
        present = {name.lower() for name, _ in headers}
        for name, value in SECURITY_HEADERS.items():
            if name.lower().encode() not in present:
                headers.append((name.lower().encode(), value.encode()))
