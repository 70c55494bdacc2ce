"""Engine and session factories for PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

SessionMaker = async_sessionmaker[AsyncSession]


def create_engine(url: str, *, echo: bool = False, timeout: float = 5.0) -> AsyncEngine:
    """`timeout` bounds connecting to PostgreSQL and waiting for a pooled connection: with the
    database down, callers fail fast (the API answers 503) instead of hanging."""
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, echo=echo, hide_parameters=True, connect_args={"timeout": 30}
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the API read while the embedded worker writes.
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    # pre-ping: after PostgreSQL restarts, stale pooled connections are replaced, not used.
    return create_async_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        # SQL parameters hold job inputs (prompts): never in logs or exception messages.
        hide_parameters=True,
        pool_size=10,
        max_overflow=10,
        pool_timeout=timeout,
        connect_args={"timeout": timeout},
    )


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
