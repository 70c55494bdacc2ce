"""The `mediagate` command: api, worker, migrate, dev, keys and storage. All read MEDIAGATE_*
settings."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

from app.platform.logs import configure_logging
from app.platform.settings import Settings, SettingsError

if TYPE_CHECKING:
    from litestar import Litestar


def _settings(*, serving: bool = True, **overrides: object) -> Settings:
    return Settings.from_env(os.environ, serving=serving, **overrides)


def _tool_settings() -> Settings:
    """For the database tools (migrate, keys, storage): no admin or secret key needed."""
    return _settings(serving=False)


def cmd_api(args: argparse.Namespace) -> None:
    import uvicorn

    from app.http.app import create_app

    settings = _settings()
    configure_logging(settings.log_level)
    made = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each process counts in files of this folder, and /metrics (whichever process answers)
        # sums them: set before any process creates its metrics.
        made = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mg-metrics-")
    # Several processes share the port (uvicorn's supervisor forks them); each builds its own
    # app from the same environment, with its own pools and its own event hub.
    uvicorn.run(
        create_app(settings) if args.workers == 1 else "app.cli:api_app",
        factory=args.workers > 1,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_config=None,
        proxy_headers=True,
        access_log=settings.access_log,
        timeout_graceful_shutdown=10,
        backlog=4096,
    )
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)


def api_app() -> Litestar:
    """The API app of one of `mediagate api --workers N`'s processes."""
    from app.http.app import create_app

    settings = _settings()
    configure_logging(settings.log_level)
    return create_app(settings)


def cmd_worker(args: argparse.Namespace) -> None:
    from workers.worker import build_worker

    settings = _settings(worker_concurrency=args.concurrency, worker_metrics_port=args.metrics_port)
    configure_logging(settings.log_level)
    if args.check:
        raise SystemExit(asyncio.run(_check_worker(settings)))
    build_worker(settings).run()


async def _check_worker(settings: Settings) -> int:
    """For a container's health check: 0 when a worker of this host beats (its heartbeat is
    fresh), 1 when none does. arq's own check key is one per queue, shared by every worker."""
    import socket

    from app.platform.liveness import alive
    from app.platform.resources import open_redis

    redis = await open_redis(settings)
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


def cmd_migrate(_: argparse.Namespace) -> None:
    from app.platform.migrate import upgrade

    settings = _tool_settings()
    upgrade(settings.database_url)
    print("database is at the latest revision")


def cmd_dev(args: argparse.Namespace) -> None:
    from app.dev import DevError, run_dev

    configure_logging(os.environ.get("MEDIAGATE_LOG_LEVEL", "WARNING"))
    try:
        run_dev(os.environ, port=args.port, demo=args.demo, exit_after=args.exit_after_demo)
    except DevError as exc:
        print(f"mediagate: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


async def _keys(args: argparse.Namespace) -> None:
    from app.keys import service as keys
    from app.platform.database import create_engine, create_sessionmaker
    from app.platform.tables import iso

    settings = _tool_settings()
    engine = create_engine(settings.database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            if args.keys_command == "create":
                key, plaintext = await keys.create_key(session, args.name)
                await session.commit()
                print(f"{key.id}\t{key.name}\t{plaintext}")
                print("the key is shown once; store it now", file=sys.stderr)
            elif args.keys_command == "list":
                for key in await keys.list_keys(session):
                    state = (
                        "deleted" if key.deleted_at else "revoked" if key.revoked_at else "active"
                    )
                    created = iso(key.created_at)
                    print(f"{key.id}\t{key.name}\t{key.prefix}...\t{state}\t{created}")
            else:
                key = await keys.revoke_key(session, args.id)
                await session.commit()
                await _announce_key_change(settings, key.id)
                print(f"revoked {key.id}")
    finally:
        await engine.dispose()


async def _announce_key_change(settings: Settings, key_id: str) -> None:
    """Running API processes drop their cached copy of the key now (else within
    MEDIAGATE_KEY_CACHE_SECONDS)."""
    from redis.exceptions import RedisError

    from app.keys.service import announce_change
    from app.platform.resources import open_redis

    try:
        redis = await open_redis(settings)
    except (RedisError, OSError):
        redis = None
    try:
        if redis is None:
            raise ConnectionError("no Redis")
        await announce_change(redis, settings.redis_namespace, key_id)
    except (RedisError, OSError):
        print(
            "Redis did not answer: running API processes may accept this key for up to "
            f"{settings.key_cache_seconds:g} s more",
            file=sys.stderr,
        )
    finally:
        if redis is not None:
            await redis.aclose()


def cmd_keys(args: argparse.Namespace) -> None:
    asyncio.run(_keys(args))


async def _reconcile(fix: bool) -> dict[str, int]:
    from app.media.lifecycle import reconcile
    from app.platform.resources import open_resources

    async with open_resources(_tool_settings()) as resources:
        return (await reconcile(resources, fix=fix)).as_dict()


def cmd_storage(args: argparse.Namespace) -> None:
    counts = asyncio.run(_reconcile(args.fix))
    for name, value in counts.items():
        print(f"{name}\t{value}")
    if not args.fix and (counts["orphans"] or counts["missing"]):
        print("run again with --fix to delete orphans and mark missing rows", file=sys.stderr)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown beside each option; descriptions kept as written."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mediagate", description=__doc__, formatter_class=_Help)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="{api,worker,migrate,dev,keys,storage}"
    )

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, formatter_class=_Help)

    api = command("api", "serve the HTTP API")
    api.add_argument("--host", default="0.0.0.0", help="address to listen on")
    api.add_argument("--port", type=int, default=8000, help="port to listen on")
    api.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="API processes sharing the port (one per core is a good start)",
    )
    api.set_defaults(func=cmd_api)

    worker = command("worker", "run a worker (generation jobs, webhooks, lifecycle crons)")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="jobs at a time (MEDIAGATE_WORKER_CONCURRENCY)",
    )
    worker.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port"
    )
    worker.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if a worker on this host has a fresh heartbeat, else 1 (health checks)",
    )
    worker.set_defaults(func=cmd_worker)

    migrate = command(
        "migrate", "upgrade the database (MEDIAGATE_DATABASE_URL) to the latest schema"
    )
    migrate.set_defaults(func=cmd_migrate)

    dev = command("dev", "API + worker in one process on SQLite and files under .mediagate/")
    dev.add_argument("--port", type=int, default=8000, help="port to listen on")
    dev.add_argument("--demo", action="store_true", help="submit a demo image job, save to ./out/")
    dev.add_argument("--exit-after-demo", action="store_true", help="stop after the demo")
    dev.set_defaults(func=cmd_dev)

    keys = command("keys", "manage virtual keys in the database (no admin key needed)")
    keys_sub = keys.add_subparsers(
        dest="keys_command", required=True, metavar="{create,list,revoke}"
    )
    create = keys_sub.add_parser(
        "create", help="create a key and print it (shown once)", formatter_class=_Help
    )
    create.add_argument("--name", required=True, help="a name to tell the key by")
    keys_sub.add_parser("list", help="list the keys (id, name, prefix, state, created)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key at once", formatter_class=_Help)
    revoke.add_argument("id", help="the key's id (key_...)")
    keys.set_defaults(func=cmd_keys)

    storage = command("storage", "storage maintenance")
    storage_sub = storage.add_subparsers(
        dest="storage_command", required=True, metavar="{reconcile}"
    )
    reconcile = storage_sub.add_parser(
        "reconcile",
        help="compare the bucket with the database and print the counts",
        formatter_class=_Help,
    )
    reconcile.add_argument(
        "--fix",
        action="store_true",
        help="delete orphans older than the grace period and mark rows whose object is missing",
    )
    storage.set_defaults(func=cmd_storage)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
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
