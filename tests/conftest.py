"""Shared fixtures. Stacks are session-scoped (starting one costs a second); each has its own
database or Redis namespace, so tests never see each other's queues."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulators.base import serve
from tests.emulators.elevenlabs import ElevenLabsEmulator
from tests.emulators.fal import FalEmulator
from tests.emulators.google import GoogleEmulator
from tests.emulators.minimax import MiniMaxEmulator
from tests.emulators.openai import OpenAIEmulator
from tests.emulators.receiver import Receiver
from tests.emulators.replicate import ReplicateEmulator
from tests.infra import (
    MODELS_FILE,
    REDIS_URL,
    Stack,
    base_settings,
    moto_s3,
    postgres_database,
    running_stack,
    s3_changes,
    sqlite_database,
    upstream_settings,
)

_BEGAN_MS = pytest.StashKey[int]()


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
    with running_stack(settings, embedded_worker=True) as running:
        yield running


@pytest.fixture(scope="session")
def pg_s3_stack(pg_url: str, s3_endpoint: str) -> Iterator[Stack]:
    settings = base_settings(pg_url, **s3_changes(s3_endpoint, f"media-{secrets.token_hex(4)}"))
    with running_stack(settings, embedded_worker=True) as running:
        yield running


@pytest.fixture(scope="session")
def slow_stack(pg_url: str) -> Iterator[Stack]:
    """Jobs take ~2 s with 4 progress steps: long enough to watch live events and cancel."""
    settings = base_settings(pg_url, local_latency_seconds=2.0, local_progress_steps=4)
    with running_stack(settings, embedded_worker=True) as running:
        yield running


@pytest.fixture(scope="session")
def api_only_stack(pg_url: str) -> Iterator[Stack]:
    """No worker: submitted jobs stay queued."""
    with running_stack(base_settings(pg_url), embedded_worker=False) as running:
        yield running


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mediagate")


@pytest.fixture(scope="session")
def emulators() -> Iterator[dict[str, Any]]:
    """The upstream APIs, emulated on loopback ports for the whole run."""
    with (
        serve(OpenAIEmulator()) as openai,
        serve(MiniMaxEmulator()) as minimax,
        serve(ReplicateEmulator()) as replicate,
        serve(ElevenLabsEmulator()) as elevenlabs,
        serve(GoogleEmulator()) as google,
        serve(FalEmulator()) as fal,
    ):
        yield {
            "openai": openai,
            "minimax": minimax,
            "replicate": replicate,
            "elevenlabs": elevenlabs,
            "google": google,
            "fal": fal,
        }


@pytest.fixture(scope="session")
def models_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "models.yaml"
    path.write_text(MODELS_FILE)
    return path


@pytest.fixture(scope="session")
def upstream_stack(pg_url: str, emulators: dict[str, Any], models_file: Path) -> Iterator[Stack]:
    """API + embedded worker with every upstream provider pointed at its emulator."""
    settings = upstream_settings(pg_url, emulators, models_file)
    with running_stack(settings, embedded_worker=True) as running:
        yield running


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback for the whole run."""
    with serve(Receiver()) as running:
        yield running


@pytest.fixture
def hooks(receiver: Receiver) -> Receiver:
    """The receiver, with nothing received yet and no planned answers."""
    with receiver.lock:
        receiver.received.clear()
        receiver.paths.clear()
        receiver.planned.clear()
    return receiver


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A client for calling providers directly against their emulators."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def emu(emulators: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The emulators, reset before and after a test."""
    for emulator in emulators.values():
        emulator.reset()
    yield emulators
    for emulator in emulators.values():
        emulator.reset()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEGAN_MS] = int(time.time() * 1000)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """arq records an abort (a canceled job) in one key for every arq user of a Redis,
    `arq:abort`, and never expires it: the run removes the entries of its own jobs (ids
    `job_...` aborted since it began), and nobody else's. Only once every test process is done
    (with pytest-xdist, in the controlling process): a worker process that finished early must
    not take the abort of a job another one is still canceling."""
    if hasattr(session.config, "workerinput"):
        return
    import redis
    from arq.constants import abort_jobs_ss

    began_ms = session.config.stash.get(_BEGAN_MS, None)
    if began_ms is None:
        return
    client = redis.Redis.from_url(REDIS_URL)
    try:
        ours = [
            member
            for member in client.zrangebyscore(abort_jobs_ss, began_ms, "+inf")
            if member.startswith(b"job_")
        ]
        if ours:
            client.zrem(abort_jobs_ss, *ours)
    finally:
        client.close()
