"""`mediagate dev`: API and worker in one process on SQLite and files under .mediagate/, with a
private Redis when none answers. Prints the URL, an admin key and a ready virtual key."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import redis
import uvicorn
from redis.exceptions import RedisError

from app.assembly.app import create_app
from app.keys.service import insert_key
from app.platform.database import create_engine, create_sessionmaker
from app.platform.migrate import upgrade
from app.platform.resources import Resources
from app.platform.settings import Settings
from workers.worker import build_worker

DEV_DEFAULTS = {
    # On disk beside the database, so that both survive a restart together.
    "MEDIAGATE_STORAGE": "files",
    "MEDIAGATE_FILES_DIR": "./.mediagate/media",
    "MEDIAGATE_LOCAL_LATENCY_SECONDS": "1.5",
}


@contextlib.asynccontextmanager
async def embedded_worker(resources: Resources) -> AsyncIterator[None]:
    """An arq worker in the API's process, sharing its resources (and so its memory store)."""
    worker = build_worker(resources.settings, resources=resources, handle_signals=False)
    task = asyncio.create_task(worker.main(), name="mediagate-embedded-worker")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await worker.close()


class DevError(RuntimeError):
    """Dev mode cannot start; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except RedisError:
        return False
    finally:
        client.close()


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, stopped on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise DevError(
            "No Redis answers at MEDIAGATE_REDIS_URL and redis-server is not on PATH. "
            "Install it (apt-get install redis-server, brew install redis) or point "
            "MEDIAGATE_REDIS_URL at a running Redis."
        )
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="mediagate-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not redis_answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise DevError("the private redis-server did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


async def _make_dev_key(settings: Settings) -> str:
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            _, plaintext = await insert_key(session, "dev")
            await session.commit()
    finally:
        await engine.dispose()
    return plaintext


async def _serve(settings: Settings, port: int, api_key: str, demo: bool, exit_after: bool) -> None:
    app = create_app(settings, companions=[embedded_worker])
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", proxy_headers=False
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving
            raise DevError("the API did not start")
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    print(f"mediagate dev is up at {base}  (OpenAPI: {base}/schema)")
    print(f"  admin key:   {settings.admin_key}")
    print(f"  virtual key: {api_key}")
    print(f"  try: curl -H 'Authorization: Bearer {api_key}' {base}/v1/jobs")
    print(
        f"   or: MEDIAGATE_URL={base} MEDIAGATE_API_KEY={api_key} mediagate generate image 'a fox'"
    )
    print(f"  dashboard:   {base}/dashboard  (sign in with the admin key)")
    try:
        if demo:
            from app.demo import run_demo

            await run_demo(base, api_key, Path("out"))
        if exit_after:
            server.should_exit = True
        else:
            print("serving; Ctrl-C to stop")
        await serving
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serving


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_dev(environ: Mapping[str, str], *, port: int, demo: bool, exit_after: bool) -> None:
    # uvicorn stops on SIGTERM and then raises the signal again under the handler it found: with
    # the default one the process would die there, leaving the private redis-server behind.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    env = {**DEV_DEFAULTS, **environ}
    settings = Settings.from_env(env, dev=True)
    if not settings.admin_key:
        settings = replace(settings, admin_key="mga_" + secrets.token_urlsafe(24))
    with contextlib.ExitStack() as stack:
        if not redis_answers(settings.redis_url):
            settings = replace(settings, redis_url=stack.enter_context(private_redis()))
            print(f"no Redis answered; started a private redis-server at {settings.redis_url}")
        upgrade(settings.database_url)
        api_key = asyncio.run(_make_dev_key(settings))
        asyncio.run(_serve(settings, port, api_key, demo, exit_after))
