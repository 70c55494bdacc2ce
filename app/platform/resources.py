"""Builds every client from the settings, in one place, for the API lifespan, the workers and
the CLI alike; nothing here is global."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from arq.connections import ArqRedis, RedisSettings, create_pool
from sqlalchemy.ext.asyncio import AsyncEngine

from app.platform.database import SessionMaker, create_engine, create_sessionmaker
from app.platform.events import EventBus
from app.platform.job_store import JobStore, JobStoreFactory
from app.platform.limits import ServerSlots
from app.platform.metrics import PROVIDER_REQUESTS
from app.platform.models_file import ModelsFile, load_models_file
from app.platform.redis_keys import connection_name, queue_name
from app.platform.settings import Settings
from app.platform.tasks import deserialize, serialize
from app.platform.tenant_urls import open_tenant_client
from providers.base import Provider
from providers.comfyui import ComfyUIProvider
from providers.comfyui_pool import ComfyPool, LocalSlots, Slots
from providers.comfyui_workflows import ComfyConfig
from providers.elevenlabs import ElevenLabsProvider
from providers.fal import FalProvider
from providers.google import GoogleProvider
from providers.local import LocalProvider
from providers.minimax import MiniMaxProvider
from providers.openai import OpenAIProvider
from providers.registry import Catalog, build_catalog
from providers.replicate import ReplicateProvider
from providers.upstream import UpstreamConfig
from storage.base import MediaStore
from storage.files import FileStore
from storage.memory import MemoryStore
from storage.s3 import S3Config, open_s3_store


@dataclass
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: SessionMaker
    redis: ArqRedis
    bus: EventBus
    store: MediaStore
    catalog: Catalog
    http: httpx.AsyncClient
    """For the upstream providers the operator configured."""
    tenant_http: httpx.AsyncClient
    """For URLs tenants give (inputs, webhooks): each connection checked (tenant_urls.py)."""
    jobs: JobStore
    """Every write of a worker's attempt to its job, and the submit's common case."""
    providers: dict[str, Provider] = field(default_factory=dict)
    models_file: ModelsFile = field(default_factory=ModelsFile)
    redis_connected: Callable[[], bool] = lambda: False
    """True while a long-lived connection to Redis is known to be up (the API's event hub sets
    this to its own state); False means: ask Redis."""

    @property
    def queue_name(self) -> str:
        return queue_name(self.settings.redis_namespace)


async def open_store(settings: Settings) -> MediaStore:
    if settings.storage == "memory":
        return MemoryStore()
    if settings.storage == "files":
        files = FileStore(settings.files_dir)
        await files.ensure_root()
        return files
    store = await open_s3_store(
        S3Config(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            public_base_url=settings.s3_public_base_url,
        )
    )
    if settings.s3_create_bucket or settings.dev:
        await store.ensure_bucket()
    return store


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings (for our pool and for arq's workers alike): one address from
    `MEDIAGATE_REDIS_URL` (`rediss://` for TLS), or Redis Sentinel."""
    found = RedisSettings.from_dsn(settings.redis_url)
    if found.ssl and settings.redis_tls_ca_file:
        found.ssl_ca_certs = settings.redis_tls_ca_file
    if settings.redis_sentinels:
        found.sentinel = True
        found.sentinel_master = settings.redis_sentinel_master
        found.host = [_host_port(part) for part in settings.redis_sentinels.split(",")]
    return found


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    return host, int(port)


async def open_redis(settings: Settings, role: str = "api") -> ArqRedis:
    """arq's client, its connections named `<namespace>:<role>` (so `CLIENT LIST` tells an API's
    from a worker's, and one deployment's from another's), through Sentinel too.

    The pool is unbounded, as redis-py's is by default: it grows to the commands in flight at
    once, and an SSE stream holds none (one reader serves them all). A bounded, blocking pool
    (50) was tried: every command then takes the pool's lock twice, and the submit p99 doubled
    (docs/performance.md, "Measured decisions")."""
    connection = redis_settings(settings)
    connection.conn_retries = 2
    connection.conn_timeout = 2
    redis = await create_pool(  # arq's pool: connects (with retries) and understands Sentinel
        connection,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=queue_name(settings.redis_namespace),
    )
    # arq has no setting for the name: every connection the pool makes from now on takes it, and
    # the one create_pool opened for its ping is dropped, so none goes unnamed.
    pool = redis.connection_pool
    pool.connection_kwargs["client_name"] = connection_name(settings.redis_namespace, role)
    await pool.disconnect()
    pool.reset()  # type: ignore[no-untyped-call]
    return redis


class MeteredTransport(httpx.AsyncBaseTransport):
    """Counts every upstream request by provider (told by its host and port) and status code,
    or `error` when no answer came (`mediagate_provider_requests_total`)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, providers: dict[str, str]) -> None:
        self.inner = inner
        self.providers = providers

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        provider = self.providers.get(request.url.netloc.decode(), "other")
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.HTTPError:
            PROVIDER_REQUESTS.labels(provider, "error").inc()
            raise
        PROVIDER_REQUESTS.labels(provider, str(response.status_code)).inc()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def upstreams(settings: Settings) -> list[tuple[str, str | None, str, Callable[..., Provider]]]:
    """The hosted upstreams: name, key (None: not configured), base URL and provider class."""
    s = settings
    return [
        ("openai", s.openai_api_key, s.openai_base_url, OpenAIProvider),
        ("minimax", s.minimax_api_key, s.minimax_base_url, MiniMaxProvider),
        ("replicate", s.replicate_api_token, s.replicate_base_url, ReplicateProvider),
        ("elevenlabs", s.elevenlabs_api_key, s.elevenlabs_base_url, ElevenLabsProvider),
        ("google", s.google_api_key, s.google_base_url, GoogleProvider),
        ("fal", s.fal_api_key, s.fal_base_url, FalProvider),
    ]


def open_http_client(settings: Settings, comfyui: ComfyConfig | None = None) -> httpx.AsyncClient:
    """The one client every upstream provider shares (one connection pool per process)."""
    timeout = settings.provider_request_timeout_seconds
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=40)
    urls = [(base_url, name) for name, _, base_url, _ in upstreams(settings)]
    urls += [(server.url, "comfyui") for server in (comfyui.servers if comfyui else ())]
    hosts = {httpx.URL(url).netloc.decode(): name for url, name in urls}
    return httpx.AsyncClient(
        transport=MeteredTransport(httpx.AsyncHTTPTransport(limits=limits), hosts),
        timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
        follow_redirects=False,
        headers={"User-Agent": "mediagate"},
    )


def build_providers(
    settings: Settings,
    http: httpx.AsyncClient,
    comfyui: ComfyConfig | None = None,
    slots: Slots | None = None,
) -> dict[str, Provider]:
    """The local provider, each upstream whose credentials are configured, and the ComfyUI pool
    when the models file lists one (its slots counted by `slots`, Redis in production)."""
    providers: dict[str, Provider] = {
        "local": LocalProvider(
            latency_seconds=settings.local_latency_seconds,
            progress_steps=settings.local_progress_steps,
        )
    }
    options: dict[str, dict[str, Any]] = {
        "elevenlabs": {"concurrency": settings.elevenlabs_concurrency},
    }
    for name, key, base_url, provider in upstreams(settings):
        if key:
            config = UpstreamConfig(
                key,
                base_url,
                poll_initial_seconds=settings.poll_initial_seconds,
                poll_max_seconds=settings.poll_max_seconds,
            )
            providers[name] = provider(http, config, **options.get(name, {}))
    if comfyui is not None and comfyui.servers:
        pool = ComfyPool(
            http, comfyui.servers, slots or LocalSlots(), health_seconds=comfyui.health_seconds
        )
        # On the operator's own network: a poll without /ws progress need not wait 30 s.
        providers["comfyui"] = ComfyUIProvider(
            http,
            comfyui,
            pool,
            poll_initial_seconds=settings.poll_initial_seconds,
            poll_max_seconds=min(5.0, settings.poll_max_seconds),
        )
    return providers


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    job_store: JobStoreFactory,
    store: MediaStore | None = None,
    role: str = "api",
) -> AsyncIterator[Resources]:
    """Open everything; `job_store` chooses the process's job store (the jobs domain's
    `transitions.store.job_store`: the platform imports no domain); `store` lets the embedded
    dev worker share the API's memory store; `role` names this process's Redis connections
    (`api`, `worker`, `cli`)."""
    async with contextlib.AsyncExitStack() as stack:
        engine = create_engine(
            settings.database_url,
            timeout=settings.database_timeout_seconds,
            pool_size=settings.database_pool_size,
            pgbouncer=settings.database_pgbouncer,
        )
        stack.push_async_callback(engine.dispose)
        redis = await open_redis(settings, role)
        stack.push_async_callback(redis.aclose)
        if store is None:
            store = await open_store(settings)
            stack.push_async_callback(store.close)
        models_file = load_models_file(settings.models_file)
        http = open_http_client(settings, models_file.comfyui)
        stack.push_async_callback(http.aclose)
        tenant_http = open_tenant_client(
            allow_private=settings.allow_private_urls,
            timeout=max(settings.input_url_timeout_seconds, settings.webhook_timeout_seconds),
        )
        stack.push_async_callback(tenant_http.aclose)
        slots = ServerSlots(redis, settings.redis_namespace)
        providers = build_providers(settings, http, models_file.comfyui, slots)
        for provider in providers.values():
            stack.push_async_callback(provider.aclose)
        sessionmaker = create_sessionmaker(engine)
        yield Resources(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            bus=EventBus(redis, settings.redis_namespace, ttl_seconds=settings.events_ttl_seconds),
            store=store,
            catalog=build_catalog(providers, models_file.models, models_file.prices),
            http=http,
            tenant_http=tenant_http,
            jobs=job_store(engine, sessionmaker, settings),
            providers=providers,
            models_file=models_file,
        )
