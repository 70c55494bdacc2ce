"""Engine and session factories for PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
from sqlalchemy import event
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from app.platform.errors import OUTAGE_SQLSTATE_CLASSES

SessionMaker = async_sessionmaker[AsyncSession]


def create_engine(
    url: str,
    *,
    echo: bool = False,
    timeout: float = 5.0,
    pool_size: int = 20,
    pgbouncer: bool = False,
) -> AsyncEngine:
    """`timeout` bounds connecting to PostgreSQL and waiting for a pooled connection: with the
    database down, callers fail fast (the API answers 503) instead of hanging. `pgbouncer`: the
    server is PgBouncer in transaction mode, where consecutive transactions may run on different
    server connections, so a prepared statement must not be cached across transactions (nor two
    clients' statements share a name)."""
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
            # The driver's own implicit BEGIN (deferred) is off: `_begin_immediate` says how.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            # SQLite has no row locks (`FOR UPDATE` is ignored), so the key lock that decides
            # budgets, quotas and concurrency in turn would decide nothing: concurrent submits
            # all read the same spend and all pass. A transaction that begins IMMEDIATE takes
            # the database's write lock first (others wait, up to busy_timeout), so transactions
            # run one after another, as the key lock makes them on PostgreSQL. Reads in WAL
            # mode still see the last commit without waiting outside a transaction.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        # SQL parameters hold job inputs (prompts): never in logs or exception messages.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=timeout,
        connect_args={"timeout": timeout, **(_PGBOUNCER_ARGS if pgbouncer else {})},
        json_serializer=_json_text,
        json_deserializer=orjson.loads,
    )

    @event.listens_for(engine.sync_engine, "checkout")
    def _drop_closed(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # A pre-ping at no cost: asyncpg notices at once when the server closes a connection
        # (a restart, a shutdown, an idle timeout); such a one is replaced, not handed out.
        # SQLAlchemy's pool_pre_ping would cost a round trip on every checkout.
        driver = getattr(record.dbapi_connection, "driver_connection", None)
        if driver is not None and driver.is_closed():
            raise DisconnectionError("the server closed this pooled connection")

    return engine


_PGBOUNCER_ARGS: dict[str, Any] = {
    "statement_cache_size": 0,  # asyncpg's own cache
    "prepared_statement_cache_size": 0,  # SQLAlchemy's adapter's cache
    "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4().hex}__",
}


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def create_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@contextlib.asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """A pooled PostgreSQL connection as asyncpg itself (autocommit: each statement is its own
    transaction), for the few statements that run thousands of times a second, where
    SQLAlchemy's per-statement work would cost more than the statement. Its errors come out as
    SQLAlchemy's (`DataError` for a bad value, `OperationalError` for an outage, with the
    SQLSTATE kept), so callers and the error mapping treat both paths alike."""
    # The pool's own checkout (with its events) and return, without a SQLAlchemy Connection
    # around it (a quarter of the cost: docs/performance.md). No transaction is begun, so
    # nothing is reset on return.
    dbapi_error: type[Exception] = getattr(engine.dialect.dbapi, "Error", OSError)
    try:
        raw = await engine.raw_connection()
    except (dbapi_error, asyncpg.PostgresError, OSError) as exc:
        # Connecting failed (the server is down, starting or shutting down): an outage, as
        # SQLAlchemy's own connect() would report it.
        raise OperationalError(None, None, exc) from exc
    try:
        yield raw.driver_connection
    except (asyncpg.PostgresError, ValueError) as exc:
        # The server refused the statement (or asyncpg its argument): the connection is fine.
        raise _translate(exc) from exc
    except (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError) as exc:
        raw.invalidate()  # the connection itself is broken: never hand it out again
        raise OperationalError(None, None, exc) from exc
    except BaseException:
        # Interrupted mid-statement (cancelled, timed out): the protocol's state is unknown, and
        # the next user would find "another operation is in progress".
        raw.invalidate()
        raise
    finally:
        raw.close()


def _translate(exc: BaseException) -> DBAPIError:
    code = getattr(exc, "sqlstate", None) or ""
    kind: type[DBAPIError]
    if code.startswith("22") or isinstance(exc, ValueError):
        kind = DataError  # ValueError: asyncpg refused an argument before sending it
    elif code.startswith("23"):
        kind = IntegrityError
    elif not code or code[:2] in OUTAGE_SQLSTATE_CLASSES:
        kind = OperationalError
    else:
        kind = ProgrammingError
    return kind(None, None, exc)
