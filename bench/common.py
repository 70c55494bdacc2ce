"""What the benchmarks share: server processes on loopback ports, a private database and Redis
namespace, and readings of a process's CPU and memory from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.platform.ids import new_id
from app.platform.settings import Settings
from tests.infra import (
    ADMIN_KEY,
    base_settings,
    drop_namespace,
    postgres_database,
    settings_env,
)

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

__all__ = [
    "ADMIN_KEY",
    "ROOT",
    "Server",
    "base_settings",
    "cpu_seconds",
    "drop_namespace",
    "percentile",
    "postgres_database",
    "rss_bytes",
    "serve",
    "settings_env",
    "status_bytes",
]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_bytes(pid: int | str, field: str = "VmRSS") -> int:
    """A memory figure of /proc/PID/status (`VmRSS`, or `VmHWM`: the peak), in bytes; `pid` may
    be "self"."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for {pid}")


def rss_bytes(pid: int) -> int:
    return status_bytes(pid)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.contextmanager
def serve(
    argv: Sequence[str], url: str, *, env: dict[str, str] | None = None, ready: str = "/healthz"
) -> Iterator[Server]:
    """A server process (see `process`), once `url + ready` answers 200."""
    with process(argv, env) as proc:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode}")
            try:
                if httpx.get(url + ready, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(argv)} did not start")
            time.sleep(0.1)
        yield Server(proc, url)


def mediagate_api_argv(port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "app.cli",
        "api",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]


def mediagate_env(settings: Settings) -> dict[str, str]:
    return {**settings_env(settings), "MEDIAGATE_LOG_LEVEL": "WARNING"}


def new_key(url: str, name: str = "bench") -> str:
    resp = httpx.post(
        url + "/admin/keys", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    resp.raise_for_status()
    key: str = resp.json()["key"]
    return key


@contextlib.contextmanager
def process(
    argv: Sequence[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process of the benchmark's, stopped with SIGTERM (then SIGKILL) after. Its output is
    discarded, or appended to $BENCH_LOG when that names a file."""
    log_path = os.environ.get("BENCH_LOG")
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        list(argv), cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=log
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not isinstance(log, int):
            log.close()


async def bare_key(database: str) -> str:
    """A key row for a bare baseline's jobs (the jobs' foreign key needs one)."""
    key_id = new_id("key")
    conn = await asyncpg.connect(database)
    try:
        await conn.execute(
            "INSERT INTO virtual_keys (id, name, prefix, key_hash, created_at,"
            " purge_deleted_objects) VALUES ($1, 'bare', 'mg_bare', $1, now(), 0)",
            key_id,
        )
    finally:
        await conn.close()
    return key_id


def s3_settings(database_url: str, endpoint: str, bucket: str, **changes: Any) -> Settings:
    """Settings of a benchmark stack storing to the S3 (moto) server at `endpoint`."""
    return replace(
        base_settings(database_url),
        storage="s3",
        s3_endpoint_url=endpoint,
        s3_bucket=bucket,
        s3_access_key="bench",
        s3_secret_key="bench",
        **changes,
    )
