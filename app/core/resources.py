"""Builds every client from the settings, in one place, for the API lifespan, the workers and
the CLI alike; nothing here is global."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from arq.connections import ArqRedis, RedisSettings, create_pool
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.contract import deserialize, queue_name, serialize
from app.core.database import SessionMaker, create_engine, create_sessionmaker
from app.core.events import EventBus
from app.core.settings import Settings
from providers.base import Provider
from providers.local import LocalProvider
from providers.registry import Catalog, default_catalog
from storage.base import MediaStore
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
    providers: dict[str, Provider] = field(default_factory=dict)

    @property
    def queue_name(self) -> str:
        return queue_name(self.settings.redis_namespace)


async def open_store(settings: Settings) -> MediaStore:
    if settings.storage == "memory":
        return MemoryStore()
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


async def open_redis(settings: Settings) -> ArqRedis:
    redis_settings = RedisSettings.from_dsn(settings.redis_url)
    redis_settings.conn_retries = 2
    redis_settings.conn_timeout = 2
    return await create_pool(
        redis_settings,
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=queue_name(settings.redis_namespace),
    )


def build_providers(settings: Settings) -> dict[str, Provider]:
    return {
        "local": LocalProvider(
            latency_seconds=settings.local_latency_seconds,
            progress_steps=settings.local_progress_steps,
        )
    }


@contextlib.asynccontextmanager
async def open_resources(
    settings: Settings, *, store: MediaStore | None = None
) -> AsyncIterator[Resources]:
    """Open everything; `store` lets the embedded dev worker share the API's memory store."""
    async with contextlib.AsyncExitStack() as stack:
        engine = create_engine(settings.database_url)
        stack.push_async_callback(engine.dispose)
        redis = await open_redis(settings)
        stack.push_async_callback(redis.aclose)
        if store is None:
            store = await open_store(settings)
            stack.push_async_callback(store.close)
        providers = build_providers(settings)
        for provider in providers.values():
            stack.push_async_callback(provider.aclose)
        yield Resources(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            redis=redis,
            bus=EventBus(redis, settings.redis_namespace, ttl_seconds=settings.events_ttl_seconds),
            store=store,
            catalog=default_catalog(),
            providers=providers,
        )
