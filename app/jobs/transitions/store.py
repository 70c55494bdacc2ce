"""Which job store a process uses (`app.platform.job_store`), chosen once where its resources are
opened: the one-statement store on PostgreSQL; the ORM store on SQLite, and behind PgBouncer,
whose transaction pooling cannot hold the driver connection the single statements run on outside
a transaction (see `orm_store`)."""

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
    return OrmJobStore(engine, sessionmaker)
