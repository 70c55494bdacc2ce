"""create_app(): the Litestar application, its lifespan and its wiring."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl

from litestar import Litestar, Request, Router
from litestar.config.cors import CORSConfig
from litestar.middleware import DefineMiddleware
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.template.config import TemplateConfig
from litestar.types import Message, Scope

from app.batches.controllers import BatchController
from app.catalog import routing
from app.catalog.controllers import AdminModelController, ModelController
from app.dashboard.controllers import TEMPLATES, dashboard_router, session_config
from app.http.dependencies import DEPENDENCIES, window_of
from app.http.errors import EXCEPTION_HANDLERS
from app.http.metrics_middleware import HttpMetrics
from app.http.openapi import document_errors
from app.http.sse import server_should_exit
from app.http.state import ApiState, set_api_state
from app.jobs.controllers import JobController
from app.jobs.stream_controller import job_events
from app.jobs.transitions.store import job_store
from app.keys.controllers import AdminKeyController, all_usage
from app.keys.service import active_digests
from app.media.controllers import MediaController, key_usage
from app.openai_compat.audio import create_speech
from app.openai_compat.images import create_images, edit_images
from app.openai_compat.videos import VideoController
from app.operations.controllers import AdminWorkerController, metrics
from app.operations.health_controller import healthz, readyz
from app.platform import tracing
from app.platform.errors import InvalidRequestError, NotFoundError
from app.platform.events import EventHub
from app.platform.key_cache import KeyCache
from app.platform.limits import RATE_LIMIT_HEADERS, Holds
from app.platform.redis_keys import keys_channel
from app.platform.resources import Resources, open_resources
from app.platform.settings import Settings
from app.platform.vocabulary import ErrorCode
from app.webhooks.controllers import WebhookDeliveryController
from storage.base import MediaStore

log = logging.getLogger("mediagate.api")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
}
# Nothing we serve is a page that runs code, except the API reference under /schema.
CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
# The dashboard's pages: our own scripts, styles and forms only (no inline code); outputs may be
# served from storage (a presigned or CDN URL) after a redirect.
DASHBOARD_POLICY = (
    "default-src 'self'; img-src 'self' https: http:; media-src 'self' https: http:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


FORM_OVERHEAD_BYTES = 64 * 1024
"""Room beyond the largest file in an upload's multipart body: boundaries, part headers, fields."""

Companion = Callable[[Resources], contextlib.AbstractAsyncContextManager[None]]


_RESOURCE_ID = re.compile(r"/(?:job|med|key|whd)_[0-9a-z]{16,40}(?=/|$)")


def _route_of(scope: Scope) -> tuple[str, dict[Any, str]]:
    """A request span's name and route, with our resource ids in the path made `{id}`
    (`GET /v1/jobs/{id}/events`): span names stay few. Litestar's default names a span by the
    path itself, and the span is named before routing, so the route's template is not known."""
    route = _RESOURCE_ID.sub("/{id}", str(scope.get("path", "")))
    name = f"{scope.get('method', '')} {route}".strip()
    return name, {"http.route": route}


TRACING = OpenTelemetryConfig(scope_span_details_extractor=_route_of)


def create_app(
    settings: Settings, *, companions: Sequence[Companion] = (), store: MediaStore | None = None
) -> Litestar:
    """The API. `companions` run beside it for its lifetime with its resources: `mediagate dev`
    passes an embedded worker that shares the API's clients (and so its memory store)."""

    traced = tracing.setup("mediagate-api", enabled=settings.tracing)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_resources(settings, job_store=job_store, store=store) as resources:
            if traced:
                tracing.instrument_engine(resources.engine)
            await routing.seed_from_models_file(resources)
            keys = KeyCache(settings.key_cache_seconds)
            keys.known.update(await active_digests(resources, KeyCache.MAX_ENTRIES))
            hub = EventHub(
                resources.redis,
                resources.bus,
                ping_seconds=settings.sse_ping_seconds,
                should_exit=server_should_exit,
                listeners={keys_channel(settings.redis_namespace): keys.on_notice},
            )
            keys.live = hub.connected.is_set  # change notices arrive only while it is
            resources.redis_connected = hub.connected.is_set
            await hub.start()
            # Streams opened through a job's signed link (browsers an app sent there) are
            # counted apart: they do not spend the key's own slots, nor the other way round.
            set_api_state(
                app.state,
                ApiState(
                    resources=resources,
                    hub=hub,
                    key_cache=keys,
                    upload_slots=asyncio.Semaphore(settings.max_concurrent_uploads),
                    batch_slots=asyncio.Semaphore(settings.max_concurrent_batches),
                    streams=Holds(
                        settings.max_streams_per_key, "event streams", ErrorCode.TOO_MANY_STREAMS
                    ),
                    link_streams=Holds(
                        settings.max_streams_per_key,
                        "event streams opened through signed links",
                        ErrorCode.TOO_MANY_STREAMS,
                    ),
                    waits=Holds(
                        settings.max_waits_per_key,
                        "requests waiting for their job",
                        ErrorCode.TOO_MANY_WAITS,
                    ),
                ),
            )
            try:
                async with contextlib.AsyncExitStack() as stack:
                    for companion in companions:
                        await stack.enter_async_context(companion(resources))
                    yield
            finally:
                await hub.stop()

    # The routes that take file uploads (multipart) may receive MEDIAGATE_MAX_UPLOAD_BYTES, plus
    # room for the form's framing and fields; every other body is held to MAX_BODY_BYTES. Both
    # are Litestar's own limits, counted as the body streams in (chunked bodies included).
    uploads = Router(
        path="/",
        route_handlers=[MediaController, edit_images, VideoController],
        request_max_body_size=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
    )
    # A batch is up to 1,000 job bodies, held to what they can need.
    batches = Router(
        path="/",
        route_handlers=[BatchController],
        request_max_body_size=settings.max_batch_bytes,
    )
    app = Litestar(
        route_handlers=[
            JobController,
            WebhookDeliveryController,
            job_events,
            uploads,
            batches,
            key_usage,
            ModelController,
            create_images,
            create_speech,
            AdminKeyController,
            AdminModelController,
            all_usage,
            healthz,
            readyz,
            metrics,
            AdminWorkerController,
            dashboard_router(),
        ],
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine),
        lifespan=[lifespan],
        middleware=[*_proxy_headers(settings), HttpMetrics, session_config(settings).middleware],
        plugins=[OpenTelemetryPlugin(TRACING)] if traced else [],
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.max_body_bytes,
        cors_config=cors_config(settings),
        before_request=_check_request,
        before_send=[_answer_headers],
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
    document_errors(app.openapi_schema)
    return app


def _proxy_headers(settings: Settings) -> list[DefineMiddleware]:
    """uvicorn's proxy-headers middleware, in the app (so every server and test runs it): the
    client address and scheme from X-Forwarded-For/-Proto, believed only from the proxies
    MEDIAGATE_FORWARDED_ALLOW_IPS lists. Empty: every peer is the client."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    trusted = settings.forwarded_allow_ips
    if not trusted:
        return []
    # uvicorn types its ASGI app apart from Litestar; both are plain ASGI.
    return [DefineMiddleware(ProxyHeadersMiddleware, trusted_hosts=trusted)]  # type: ignore[arg-type]


async def _check_request(request: Request[Any, Any, Any]) -> None:
    """What no handler can use is refused before any handler runs: a NUL character in the path
    (an id that cannot exist) or the query (PostgreSQL cannot store or compare one)."""
    _refuse_nul(request.scope)


def _refuse_nul(scope: Scope) -> None:
    if "\x00" in scope["path"]:
        raise NotFoundError("No such resource.")
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if "\x00" in name or "\x00" in value:
                raise InvalidRequestError(
                    f"{name!r} contains a NUL character, which is not allowed.", param=name
                )


_SECURITY_HEADERS = [
    (name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()
]
_CSP = (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())
_DASHBOARD_CSP = (b"content-security-policy", DASHBOARD_POLICY.encode())
_NO_STORE = (b"cache-control", b"no-store")


CORS_ALLOW_HEADERS = ["Authorization", "Content-Type", "Idempotency-Key", "Prefer", "Last-Event-ID"]
CORS_EXPOSE_HEADERS = [
    "Location",
    "Retry-After",
    "Preference-Applied",
    "Content-Range",
    "Accept-Ranges",
    "Content-Length",
    *RATE_LIMIT_HEADERS,
]
"""What a page on an allowed origin may read besides the safelisted headers: where a new job
lives, when to retry (429s and 202s carry Retry-After), an applied wait, a media range's bounds,
and where its key stands in its rate limit."""


def cors_config(settings: Settings) -> CORSConfig | None:
    """Litestar's own CORS handling for MEDIAGATE_CORS_ORIGINS; none at all when it is empty.
    No credentials: keys travel in the Authorization header (or a signed link), never cookies."""
    origins = settings.cors_origin_list
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=CORS_ALLOW_HEADERS,
        expose_headers=CORS_EXPOSE_HEADERS,
        allow_credentials=False,
        max_age=600,
    )


async def _answer_headers(message: Message, scope: Scope) -> None:
    """What every answer carries: the security headers, and where the caller's key stands in
    its rate limit when the request was counted."""
    if message["type"] != "http.response.start":
        return
    headers = cast(list[tuple[bytes, bytes]], message.setdefault("headers", []))
    present = {name.lower(): value for name, value in headers}
    wanted = list(_SECURITY_HEADERS)
    path = str(scope.get("path", ""))
    if path.startswith("/dashboard"):
        wanted.append(_DASHBOARD_CSP)
    elif not path.startswith("/schema"):
        wanted.append(_CSP)
    # API answers (jobs, keys, usage, errors) are per key and change: no cache may keep them.
    if present.get(b"content-type", b"").startswith(b"application/json"):
        wanted.append(_NO_STORE)
    window = window_of(scope)
    if window is not None:  # where the key stands in its requests-per-minute window
        wanted.extend(window.headers())
    headers.extend(header for header in wanted if header[0] not in present)
