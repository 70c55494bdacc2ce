"""Shared fixtures. Stacks are session-scoped (starting one costs a second); each has its own
database or Redis namespace, so tests never see each other's queues."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.infra import (
    Stack,
    base_settings,
    drop_namespace,
    moto_s3,
    postgres_database,
    s3_changes,
    sqlite_database,
    start_stack,
)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return sqlite_database(tmp_path_factory.mktemp("sqlite"))


def _run_stack(stack: Stack) -> Iterator[Stack]:
    try:
        yield stack
    finally:
        stack.stop()
        drop_namespace(stack.settings.redis_namespace)


STACK_VARIANTS = ["sqlite-memory", "pg-memory", "pg-s3"]


@pytest.fixture(scope="session", params=STACK_VARIANTS)
def stack(
    request: pytest.FixtureRequest, pg_url: str, sqlite_url: str, s3_endpoint: str
) -> Iterator[Stack]:
    """A full stack (API + embedded worker) on each database/storage combination."""
    variant: str = request.param
    database = sqlite_url if variant.startswith("sqlite") else pg_url
    settings = base_settings(database)
    if variant.endswith("s3"):
        settings = replace(settings, **s3_changes(s3_endpoint, f"media-{secrets.token_hex(4)}"))
    yield from _run_stack(start_stack(settings, embedded_worker=True))


@pytest.fixture(scope="session")
def pg_s3_stack(pg_url: str, s3_endpoint: str) -> Iterator[Stack]:
    settings = base_settings(pg_url, **s3_changes(s3_endpoint, f"media-{secrets.token_hex(4)}"))
    yield from _run_stack(start_stack(settings, embedded_worker=True))


@pytest.fixture(scope="session")
def slow_stack(pg_url: str) -> Iterator[Stack]:
    """Jobs take ~2 s with 4 progress steps: long enough to watch live events and cancel."""
    settings = base_settings(pg_url, local_latency_seconds=2.0, local_progress_steps=4)
    yield from _run_stack(start_stack(settings, embedded_worker=True))


@pytest.fixture(scope="session")
def api_only_stack(pg_url: str) -> Iterator[Stack]:
    """No worker: submitted jobs stay queued."""
    yield from _run_stack(start_stack(base_settings(pg_url), embedded_worker=False))


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mediagate")
