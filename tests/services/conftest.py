"""The in-process tier: the services against SQLite (a file per test, made from the tables'
metadata, which the migration test keeps equal to the migrations) and the memory store, with no
server of any kind, so the whole tier runs in a few seconds (`make test-fast`). What needs Redis
(queueing, events, webhooks) is covered by the integration tier."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis
from sqlmodel import SQLModel

import app.platform.tables  # noqa: F401  (registers the tables on SQLModel.metadata)
from app.jobs.transitions.orm_store import OrmJobStore
from app.keys.service import insert_key
from app.platform.database import create_engine, create_sessionmaker
from app.platform.events import EventBus
from app.platform.resources import Resources
from app.platform.settings import Settings
from app.platform.tables import VirtualKey
from providers.registry import build_catalog
from storage.memory import MemoryStore
from tests.builders import free_port


@pytest.fixture
async def res(tmp_path: Path) -> AsyncIterator[Resources]:
    """Resources on a fresh SQLite file and a memory store. Its Redis client points at a port
    nothing listens on: a service that reaches for Redis here fails loudly."""
    nowhere = free_port()
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'services.db'}",
        redis_url=f"redis://127.0.0.1:{nowhere}/0",
        secret_key="s" * 40,
        admin_key="a" * 40,
        storage="memory",
    )
    engine = create_engine(settings.database_url)
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
    redis = ArqRedis(host="127.0.0.1", port=nowhere)
    store = MemoryStore()
    sessionmaker = create_sessionmaker(engine)
    async with httpx.AsyncClient() as http, httpx.AsyncClient() as tenant_http:
        yield Resources(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            redis=redis,
            bus=EventBus(redis, settings.redis_namespace),
            store=store,
            catalog=build_catalog({"local", "openai", "minimax"}),
            http=http,
            tenant_http=tenant_http,
            jobs=OrmJobStore(engine, sessionmaker),
        )
    await redis.aclose()
    await engine.dispose()


KeyFactory = Callable[..., Awaitable[VirtualKey]]


@pytest.fixture
def new_key(res: Resources) -> KeyFactory:
    """A factory: `await new_key(max_bytes=...)` makes a key with those limits."""

    async def make(name: str = "svc", **limits: int | None) -> VirtualKey:
        async with res.sessionmaker() as session:
            key, _ = await insert_key(session, name, limits)
            await session.commit()
        return key

    return make
