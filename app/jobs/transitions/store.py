"""Which job store a process uses (`app.platform.job_store`), chosen once where its resources are
opened: the one-statement store on PostgreSQL; the ORM store on SQLite, and behind PgBouncer,
where a statement outside a transaction may be prepared on one server connection and run on
another (so every write there is a transaction)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from app.jobs.transitions.one_statement import OneStatementJobStore
from app.jobs.transitions.orm_store import OrmJobStore
from app.platform.database import SessionMaker
from app.platform.job_store import JobStore
from app.platform.settings import Settings


def job_store(engine: AsyncEngine, sessionmaker: SessionMaker, settings: Settings) -> JobStore:
    if engine.dialect.name == "postgresql" and not settings.database_pgbouncer:
        return OneStatementJobStore(engine, sessionmaker)
    return OrmJobStore(engine, sessionmaker, autocommit=not settings.database_pgbouncer)
