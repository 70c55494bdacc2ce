"""Test infrastructure: private databases, Redis namespaces, a moto S3 server and API stacks
served over real HTTP on loopback ports. Everything a run creates, it removes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis
import uvicorn

from app.assembly.app import create_app
from app.dev import embedded_worker as worker_companion
from app.jobs.transitions.store import job_store
from app.platform import resources
from app.platform.migrate import upgrade
from app.platform.settings import Settings
from tests.builders import free_port
from tests.emulators.base import API_KEY as UPSTREAM_KEY

ROOT = Path(__file__).resolve().parents[1]
PG_HOST = os.environ.get("MEDIAGATE_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MEDIAGATE_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("MEDIAGATE_TEST_PG_USER", "postgres")
REDIS_URL = os.environ.get("MEDIAGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN_KEY = "admin_" + secrets.token_urlsafe(24)
SECRET_KEY = secrets.token_urlsafe(32)


def open_resources(
    settings: Settings, **options: Any
) -> AbstractAsyncContextManager[resources.Resources]:
    """Resources as our processes open them: the job store chosen as theirs is."""
    return resources.open_resources(settings, job_store=job_store, **options)


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, migrated database of our own on the machine's PostgreSQL; dropped afterwards."""
    name = f"mediagate_test_{secrets.token_hex(6)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def sqlite_database(directory: Path) -> str:
    url = f"sqlite+aiosqlite:///{directory / 'mediagate.db'}"
    upgrade(url)
    return url


def new_namespace() -> str:
    return f"mgtest-{secrets.token_hex(5)}"


def drop_namespace(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        # arq keeps per-job keys outside our namespace; find them through our queue first.
        queued: list[bytes] = client.zrange(f"{namespace}:queue", 0, -1)  # type: ignore[assignment]
        for raw in queued:
            job_id = raw.decode()
            for prefix in ("arq:job:", "arq:retry:", "arq:in-progress:", "arq:result:"):
                client.delete(prefix + job_id)
        for key in client.scan_iter(match=f"{namespace}:*", count=500):
            client.delete(key)
    finally:
        client.close()


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server in a thread on a loopback port: real HTTP, real S3 protocol."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def base_settings(database_url: str, **changes: Any) -> Settings:
    settings = Settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        redis_namespace=new_namespace(),
        admin_key=ADMIN_KEY,
        secret_key=SECRET_KEY,
        worker_poll_delay=0.02,
        sse_ping_seconds=1.0,
        # Stacks share one database; their workers' outbox must not take other tests' jobs
        # (left queued on purpose, in another namespace). Outbox tests use their own database.
        outbox_grace_seconds=3600,
        # Every test talks from 127.0.0.1; the throttle has a test of its own.
        auth_failures_per_minute=None,
    )
    return replace(settings, **changes)


MODELS_FILE = """
aliases:
  my-dalle: openai/dall-e-3
  minimax-image: [minimax/image-01]
  fallback-image: [openai/dall-e-2, minimax/image-01]
"""


def upstream_settings(
    database_url: str, emulators: dict[str, Any], models_file: Path, **changes: Any
) -> Settings:
    defaults: dict[str, Any] = {
        "poll_initial_seconds": 0.05,
        "poll_max_seconds": 0.2,
        "retry_base_seconds": 0.05,
        "image_max_tries": 2,
        "video_timeout_seconds": 8,
    }
    return base_settings(
        database_url,
        openai_api_key=UPSTREAM_KEY,
        openai_base_url=emulators["openai"].url + "/v1",
        minimax_api_key=UPSTREAM_KEY,
        minimax_base_url=emulators["minimax"].url,
        replicate_api_token=UPSTREAM_KEY,
        replicate_base_url=emulators["replicate"].url + "/v1",
        elevenlabs_api_key=UPSTREAM_KEY,
        elevenlabs_base_url=emulators["elevenlabs"].url,
        google_api_key=UPSTREAM_KEY,
        google_base_url=emulators["google"].url + "/v1beta",
        fal_api_key=UPSTREAM_KEY,
        fal_base_url=emulators["fal"].url,
        models_file=str(models_file),
        allow_private_urls=True,
        **{**defaults, **changes},
    )


def s3_changes(endpoint: str, bucket: str) -> dict[str, Any]:
    return {
        "storage": "s3",
        "s3_endpoint_url": endpoint,
        "s3_bucket": bucket,
        "s3_access_key": "testing",
        "s3_secret_key": "testing",
        "s3_create_bucket": True,
    }


def settings_env(settings: Settings) -> dict[str, str]:
    """The MEDIAGATE_* environment that reproduces `settings` in another process."""
    env: dict[str, str] = {}
    defaults = Settings()
    for name in Settings.env_names():
        field = name.removeprefix("MEDIAGATE_").lower()
        value = getattr(settings, field)
        if value is None:
            if getattr(defaults, field) is not None:
                env[name] = ""  # unset where the default is a limit: no limit
            continue
        env[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


@dataclass
class Stack:
    """An API (optionally with an embedded worker) served by uvicorn in a thread."""

    settings: Settings
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30
        )

    def new_key(self, name: str = "test", **limits: Any) -> str:
        """A new key's token; `limits` as the admin API takes them (`requests_per_minute`...)."""
        with self.admin() as client:
            resp = client.post("/admin/keys", json={"name": name, **limits})
            resp.raise_for_status()
            key: str = resp.json()["key"]
            return key

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)


def start_stack(settings: Settings, *, embedded_worker: bool, loop: str = "auto") -> Stack:
    """`loop="asyncio"`: the standard library's event loop instead of uvloop, for a test that
    stands in for the system resolver (uvloop's methods cannot be replaced)."""
    port = free_port()
    app = create_app(settings, companions=[worker_companion] if embedded_worker else [])
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
        loop=loop,
        proxy_headers=False,  # the app reads them (MEDIAGATE_FORWARDED_ALLOW_IPS), as in `api`
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"stack-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test API did not start")
        time.sleep(0.02)
    return Stack(settings, f"http://127.0.0.1:{port}", server, thread)


@contextlib.contextmanager
def running_stack(
    settings: Settings, *, embedded_worker: bool, loop: str = "auto"
) -> Iterator[Stack]:
    """A stack for the length of a `with`: stopped, and its Redis namespace removed, after."""
    stack = start_stack(settings, embedded_worker=embedded_worker, loop=loop)
    try:
        yield stack
    finally:
        stack.stop()
        drop_namespace(settings.redis_namespace)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`mediagate ARGS` as a process of its own, in `env`, to its end (a minute at most)."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def api_argv(port: int) -> list[str]:
    """`mediagate api` on a loopback port, as a process of its own."""
    return [sys.executable, "-m", "app.cli", "api", "--host", "127.0.0.1", "--port", str(port)]


def wait_answering(url: str, proc: subprocess.Popen[Any], seconds: float = 30) -> None:
    """Until `url` answers 200; fails if `proc` (which serves it) exits first, or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        assert proc.poll() is None and time.monotonic() < deadline, f"{url} did not answer"
        time.sleep(0.1)


def start_worker_process(settings: Settings, **env_changes: str) -> subprocess.Popen[bytes]:
    """`mediagate worker` in a process of its own. Its log goes to an anonymous temporary file
    (`worker_log()` reads it): a pipe nobody drains would fill and stall the worker."""
    env = {**os.environ, **settings_env(settings), **env_changes}
    log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    LOGS[proc.pid] = log
    return proc


LOGS: dict[int, Any] = {}


@contextlib.contextmanager
def running_workers(
    settings: Settings, count: int = 1, **env_changes: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes for the length of a `with`: SIGTERM after (killed if they linger)."""
    procs = [start_worker_process(settings, **env_changes) for _ in range(count)]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def worker_log(proc: subprocess.Popen[bytes]) -> str:
    log = LOGS[proc.pid]
    log.seek(0)
    text: str = log.read().decode(errors="replace")
    return text


async def wait_for_job(
    client: httpx.AsyncClient,
    job_id: str,
    *,
    until: frozenset[str] | None = None,
    timeout: float = 60,  # noqa: ASYNC109 - a polling deadline, not a cancel scope
    predicate: Any = None,
) -> dict[str, Any]:
    until = until or frozenset({"succeeded", "failed", "canceled"})
    deadline = time.monotonic() + timeout
    while True:
        resp = await client.get(f"/v1/jobs/{job_id}")
        resp.raise_for_status()
        job: dict[str, Any] = resp.json()
        if predicate(job) if predicate else job["status"] in until:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")
        await asyncio.sleep(0.05)


async def until(condition: Any, seconds: float = 10) -> None:
    """Until `condition()` is true; fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def media_rows(database_url: str, job_id: str) -> int:
    """How many media rows the job has (outputs stored)."""
    from sqlmodel import col, func, select

    from app.platform.database import create_engine, create_sessionmaker
    from app.platform.tables import MediaObject

    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            counted = select(func.count()).select_from(MediaObject)
            result = await session.exec(counted.where(col(MediaObject.job_id) == job_id))
            return int(result.one())
    finally:
        await engine.dispose()


async def run_job(stack: Stack, body: dict[str, Any], **limits: Any) -> dict[str, Any]:
    """Submit `body` with a new key (its `limits` as the admin API takes them) and wait for the
    job to end."""
    async with stack.client(stack.new_key(**limits)) as client:
        resp = await client.post("/v1/jobs", json=body)
        assert resp.status_code == 202, resp.text
        return await wait_for_job(client, resp.json()["id"], timeout=30)
