"""The migration runs on PostgreSQL and SQLite, down and up again, and matches the models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from app.platform.database import create_engine
from app.platform.migrate import alembic_config, upgrade
from tests.infra import postgres_database

TABLES = {
    "virtual_keys",
    "jobs",
    "media_objects",
    "key_usage",
    "model_aliases",
    "alembic_version",
}


def _inspect(conn: Connection) -> tuple[set[str], list[object]]:
    tables = set(inspect(conn).get_table_names())
    diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    return tables, diff


async def _state(url: str) -> tuple[set[str], list[object]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_inspect)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_migration_up_down_up(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
        upgrade(url)
        _check_round_trip(url)
    else:
        with postgres_database() as url:  # already upgraded to head
            _check_round_trip(url)


def _check_round_trip(url: str) -> None:
    tables, diff = asyncio.run(_state(url))
    assert tables >= TABLES
    assert diff == [], diff  # the migration creates exactly what the models describe
    command.downgrade(alembic_config(url), "base")
    tables, _ = asyncio.run(_state(url))
    assert tables <= {"alembic_version"}
    upgrade(url)
    tables, _ = asyncio.run(_state(url))
    assert tables >= TABLES
