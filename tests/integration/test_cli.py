"""The `mediagate` command: migrate, keys create/list/revoke, and api serving /readyz."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.infra import ADMIN_KEY, REDIS_URL, ROOT, free_port, new_namespace


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEDIAGATE_")},
        "MEDIAGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "MEDIAGATE_REDIS_URL": REDIS_URL,
        "MEDIAGATE_REDIS_NAMESPACE": new_namespace(),
        "MEDIAGATE_ADMIN_KEY": ADMIN_KEY,
        "PYTHONPATH": str(ROOT),
    }


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_migrate_and_key_lifecycle(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert _cli(env, "migrate").returncode == 0
    created = _cli(env, "keys", "create", "--name", "cli-key")
    assert created.returncode == 0, created.stderr
    key_id, name, plaintext = created.stdout.strip().split("\t")
    assert name == "cli-key" and plaintext.startswith("mg_")
    listed = _cli(env, "keys", "list").stdout
    assert key_id in listed and "active" in listed and plaintext not in listed
    assert _cli(env, "keys", "revoke", key_id).returncode == 0
    assert "revoked" in _cli(env, "keys", "list").stdout


def test_bad_setting_exits_with_a_clear_message(tmp_path: Path) -> None:
    env = {**_env(tmp_path), "MEDIAGATE_STORAGE": "floppy"}
    result = _cli(env, "migrate")
    assert result.returncode == 2
    assert "MEDIAGATE_STORAGE" in result.stderr


def test_api_command_serves(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert _cli(env, "migrate").returncode == 0
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "api", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert resp.status_code == 200, resp.text
    finally:
        proc.terminate()
        proc.wait(20)
