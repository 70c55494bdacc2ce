"""mediagate: serve it (api, worker, dev), run its tools (migrate, keys, storage), or use any
mediagate as a client (generate, jobs, usage). Server commands read MEDIAGATE_* settings; client
commands take --url/MEDIAGATE_URL and --key/MEDIAGATE_API_KEY."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from app.client.commands import generate_app, jobs_app, usage
from app.platform.logs import configure_logging
from app.platform.settings import Settings, SettingsError

if TYPE_CHECKING:
    from litestar import Litestar


def _settings(*, serving: bool = True, **overrides: object) -> Settings:
    return Settings.from_env(os.environ, serving=serving, **overrides)


def _tool_settings() -> Settings:
    """For the database tools (migrate, keys, storage): no admin or secret key needed."""
    return _settings(serving=False)


app = typer.Typer(
    name="mediagate",
    help=__doc__,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
keys_app = typer.Typer(help="manage virtual keys in the database (no admin key needed)")
storage_app = typer.Typer(help="storage maintenance")


@app.command("api")
def cmd_api(
    host: Annotated[str, typer.Option(help="address to listen on")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[
        int,
        typer.Option(min=1, help="API processes sharing the port (one per core is a good start)"),
    ] = 1,
) -> None:
    """serve the HTTP API"""
    import uvicorn

    from app.assembly.app import create_app

    settings = _settings()
    configure_logging(settings.log_level)
    made = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each process counts in files of this folder, and /metrics (whichever process answers)
        # sums them: set before any process creates its metrics.
        made = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mg-metrics-")
    # Several processes share the port (uvicorn's supervisor forks them); each builds its own
    # app from the same environment, with its own pools and its own event hub.
    uvicorn.run(
        _settled(create_app(settings)) if workers == 1 else "app.cli:api_app",
        factory=workers > 1,
        workers=workers,
        host=host,
        port=port,
        log_config=None,
        proxy_headers=False,  # the app reads them, from MEDIAGATE_FORWARDED_ALLOW_IPS only
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
        backlog=4096,
    )
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)


def api_app() -> Litestar:
    """The API app of one of `mediagate api --workers N`'s processes."""
    from app.assembly.app import create_app

    settings = _settings()
    configure_logging(settings.log_level)
    return _settled(create_app(settings))


GC_THRESHOLDS = (10_000, 50, 100)
"""The API's garbage-collector thresholds (CPython's are 700, 10, 10). An API process holding
10,000 SSE streams has millions of live objects, and a full collection walks them all with the
event loop stopped; with these, young collections run a fifteenth as often and no full one runs
in the SSE benchmark (figures: docs/performance.md, "Measured decisions"). Cyclic garbage waits
a little longer to be freed."""


def _settled(api: Litestar) -> Litestar:
    """The app, its start-up objects (modules, routes, schemas: ~180,000) moved out of the
    garbage collector's reach (`gc.freeze`), and the collector set to run less often
    (`GC_THRESHOLDS`). Without the freeze each full collection walks the start-up objects and
    stalls every request in flight (the submit p99 it saves: docs/performance.md)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return api


@app.command("worker")
def cmd_worker(
    concurrency: Annotated[
        int | None, typer.Option(help="jobs at a time (MEDIAGATE_WORKER_CONCURRENCY)")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve Prometheus metrics on this port")
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="exit 0 if a worker on this host has a fresh heartbeat, else 1 (health checks)",
        ),
    ] = False,
) -> None:
    """run a worker (generation jobs, webhooks, lifecycle crons)"""
    from workers.worker import build_worker

    settings = _settings(worker_concurrency=concurrency, worker_metrics_port=metrics_port)
    configure_logging(settings.log_level)
    if check:
        raise SystemExit(asyncio.run(_check_worker(settings)))
    build_worker(settings).run()


async def _check_worker(settings: Settings) -> int:
    """For a container's health check: 0 when a worker of this host beats (its heartbeat is
    fresh), 1 when none does. arq's own check key is one per queue, shared by every worker."""
    import socket

    from app.platform.liveness import alive
    from app.platform.resources import open_redis

    redis = await open_redis(settings, "cli")
    try:
        beats = await alive(redis, settings.redis_namespace, settings.worker_heartbeat_seconds)
    finally:
        await redis.aclose()
    host = socket.gethostname()
    mine = [b for b in beats if b.host == host]
    for beat in mine:
        print(f"alive {beat.id} running={beat.running}/{beat.concurrency}")
    if not mine:
        print(f"no live worker on {host}", file=sys.stderr)
    return 0 if mine else 1


@app.command("migrate")
def cmd_migrate() -> None:
    """upgrade the database (MEDIAGATE_DATABASE_URL) to the latest schema"""
    from app.platform.migrate import upgrade

    settings = _tool_settings()
    upgrade(settings.database_url)
    print("database is at the latest revision")


@app.command("dev")
def cmd_dev(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    demo: Annotated[
        bool, typer.Option("--demo", help="submit a demo image job, save to ./out/")
    ] = False,
    exit_after_demo: Annotated[
        bool, typer.Option("--exit-after-demo", help="stop after the demo")
    ] = False,
) -> None:
    """API + worker in one process on SQLite and files under .mediagate/"""
    from app.dev import DevError, run_dev

    configure_logging(os.environ.get("MEDIAGATE_LOG_LEVEL", "WARNING"))
    try:
        run_dev(os.environ, port=port, demo=demo, exit_after=exit_after_demo)
    except DevError as exc:
        print(f"mediagate: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


async def _keys(command: str, name: str = "", key_id: str = "") -> None:
    from app.keys import service as keys
    from app.platform.database import create_engine, create_sessionmaker
    from app.platform.tables import iso

    settings = _tool_settings()
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            if command == "create":
                key, plaintext = await keys.insert_key(session, name)
                await session.commit()
                await _announce_key_change(settings, key.id, key.key_hash)
                print(f"{key.id}\t{key.name}\t{plaintext}")
                print("the key is shown once; store it now", file=sys.stderr)
            elif command == "list":
                for key in await keys.select_keys(session):
                    state = (
                        "deleted" if key.deleted_at else "revoked" if key.revoked_at else "active"
                    )
                    created = iso(key.created_at)
                    print(f"{key.id}\t{key.name}\t{key.prefix}...\t{state}\t{created}")
            else:
                key = await keys.revoke_key(session, key_id)
                await session.commit()
                await _announce_key_change(settings, key.id)
                print(f"revoked {key.id}")
    finally:
        await engine.dispose()


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="a name to tell the key by")],
) -> None:
    """create a key and print it (shown once)"""
    asyncio.run(_keys("create", name=name))


@keys_app.command("list")
def keys_list() -> None:
    """list the keys (id, name, prefix, state, created)"""
    asyncio.run(_keys("list"))


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id (key_...)")]) -> None:
    """revoke a key at once"""
    asyncio.run(_keys("revoke", key_id=key_id))


async def _announce_key_change(settings: Settings, key_id: str, digest: str | None = None) -> None:
    """Running API processes drop their cached copy of the key now (else within
    MEDIAGATE_KEY_CACHE_SECONDS); with `digest`, a new key's, which they then know."""
    from redis.exceptions import RedisError

    from app.keys.service import announce_change
    from app.platform.resources import open_redis

    try:
        redis = await open_redis(settings, "cli")
    except (RedisError, OSError):
        redis = None
    try:
        if redis is None:
            raise ConnectionError("no Redis")
        await announce_change(redis, settings.redis_namespace, key_id, digest)
    except (RedisError, OSError):
        print(
            "Redis did not answer: running API processes may accept this key for up to "
            f"{settings.key_cache_seconds:g} s more",
            file=sys.stderr,
        )
    finally:
        if redis is not None:
            await redis.aclose()


async def _reconcile(fix: bool) -> dict[str, int]:
    from app.jobs.transitions.store import job_store
    from app.media.lifecycle import reconcile
    from app.platform.resources import open_resources

    async with open_resources(_tool_settings(), job_store=job_store, role="cli") as resources:
        return (await reconcile(resources, fix=fix)).as_dict()


@storage_app.command("reconcile")
def storage_reconcile(
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="delete orphans older than the grace period and mark rows whose object is missing",
        ),
    ] = False,
) -> None:
    """compare the bucket with the database and print the counts"""
    counts = asyncio.run(_reconcile(fix))
    for name, value in counts.items():
        print(f"{name}\t{value}")
    if not fix and (counts["orphans"] or counts["missing"]):
        print("run again with --fix to delete orphans and mark missing rows", file=sys.stderr)


app.add_typer(keys_app, name="keys", no_args_is_help=True)
app.add_typer(storage_app, name="storage", no_args_is_help=True)
# The client side: any mediagate, over HTTP.
app.add_typer(generate_app, name="generate", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs", no_args_is_help=True)
app.command("usage", help="what your key stores and spends, against its quotas and budgets")(usage)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        app(args=list(argv) if argv is not None else None, prog_name="mediagate")
    except SettingsError as exc:
        print(f"mediagate: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as exc:
        if _no_tables(exc):
            print(
                "mediagate: the database has no tables yet: run `mediagate migrate` first",
                file=sys.stderr,
            )
            raise SystemExit(2) from None
        raise
    except KeyboardInterrupt:
        pass


def _no_tables(exc: BaseException) -> bool:
    """A database `migrate` has not made yet: SQLite's missing file or table, PostgreSQL's
    undefined table (SQLSTATE 42P01)."""
    text = f"{exc} {type(getattr(exc, 'orig', None)).__name__}"
    signs = ("no such table", "unable to open database file", "UndefinedTable", "42P01")
    return any(sign in text for sign in signs)


if __name__ == "__main__":
    main()
