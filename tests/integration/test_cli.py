"""The `mediagate` command: migrate, keys create/list/revoke, and api serving /readyz."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from tests.builders import free_port
from tests.infra import (
    ADMIN_KEY,
    REDIS_URL,
    ROOT,
    SECRET_KEY,
    api_argv,
    drop_namespace,
    new_namespace,
    run_cli,
    wait_answering,
)


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEDIAGATE_")},
        "MEDIAGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}",
        "MEDIAGATE_REDIS_URL": REDIS_URL,
        "MEDIAGATE_REDIS_NAMESPACE": new_namespace(),
        "MEDIAGATE_ADMIN_KEY": ADMIN_KEY,
        "MEDIAGATE_SECRET_KEY": SECRET_KEY,
        "PYTHONPATH": str(ROOT),
    }


def test_migrate_and_key_lifecycle(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert run_cli(env, "migrate").returncode == 0
    created = run_cli(env, "keys", "create", "--name", "cli-key")
    assert created.returncode == 0, created.stderr
    key_id, name, plaintext = created.stdout.strip().split("\t")
    assert name == "cli-key" and plaintext.startswith("mg_")
    listed = run_cli(env, "keys", "list").stdout
    assert key_id in listed and "active" in listed and plaintext not in listed
    assert run_cli(env, "keys", "revoke", key_id).returncode == 0
    assert "revoked" in run_cli(env, "keys", "list").stdout


def test_bad_setting_exits_with_a_clear_message(tmp_path: Path) -> None:
    env = {**_env(tmp_path), "MEDIAGATE_STORAGE": "floppy"}
    result = run_cli(env, "migrate")
    assert result.returncode == 2
    assert "MEDIAGATE_STORAGE" in result.stderr


def test_api_command_serves(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert run_cli(env, "migrate").returncode == 0
    port = free_port()
    proc = subprocess.Popen(
        api_argv(port),
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


def test_api_workers_share_one_port(tmp_path: Path) -> None:
    """`mediagate api --workers 2`: two API processes behind one port, each a whole API (its own
    pools and event hub), both answering; SIGTERM stops them all."""
    env = _env(tmp_path)
    assert run_cli(env, "migrate").returncode == 0
    token = run_cli(env, "keys", "create", "--name", "multi").stdout.strip().split("\t")[2]
    port = free_port()
    argv = api_argv(port)
    proc = subprocess.Popen(
        [*argv, "--workers", "2"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        children: list[str] = []
        ready = False
        while len(children) < 2 or not ready:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            try:
                ready = httpx.get(url + "/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                ready = False
        headers = {"Authorization": f"Bearer {token}"}
        body = {
            "type": "image",
            "model": "local-image",
            "input": {"prompt": "two", "size": "256x256"},
        }
        # Fresh connections, which the kernel hands to either process.
        answers = [httpx.post(url + "/v1/jobs", json=body, headers=headers) for _ in range(20)]
        assert {a.status_code for a in answers} == {202}
        for answer in answers[:3]:
            job = httpx.get(url + f"/v1/jobs/{answer.json()['id']}", headers=headers)
            assert job.status_code == 200 and job.json()["status"] == "queued"
        # Whichever process answers /metrics counts every process's requests (multi-process).
        for _ in range(4):
            text = httpx.get(url + "/metrics").text
            submits = [
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("mediagate_http_requests_total{")
                and 'method="POST"' in line
                and 'path="/v1/jobs"' in line
            ]
            assert sum(submits) == 20, submits
    finally:
        proc.terminate()
        assert proc.wait(30) is not None
        drop_namespace(env["MEDIAGATE_REDIS_NAMESPACE"])  # the jobs it queued
    # Its children (the API processes, and multiprocessing's resource tracker, which leaves
    # once its parent has gone) end too.
    deadline = time.monotonic() + 15
    while not all(_ended(int(pid)) for pid in children):
        assert time.monotonic() < deadline, [_state(int(pid)) for pid in children]
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def _ended(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever reaps orphans here."""
    return _state(pid) in ("gone", "Z", "X")


def test_api_log_lines_hold_no_signature_and_cannot_be_forged(tmp_path: Path) -> None:
    """Read as an operator reads it: `mediagate api`'s own output, access log on."""
    env = {**_env(tmp_path), "MEDIAGATE_ACCESS_LOG": "true", "MEDIAGATE_LOG_LEVEL": "DEBUG"}
    assert run_cli(env, "migrate").returncode == 0
    port = free_port()
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            api_argv(port),
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_answering(url + "/healthz", proc)
            signature = "SIGNATURE" + "x" * 20
            httpx.get(f"{url}/v1/media/med_01abc?exp=9999999999&sig={signature}")
            # CR LF and a fake log line in the path; the request itself goes out as sent.
            httpx.get(
                url + "/v1/jobs/job_1%0d%0a2026-01-01 INFO forged line",
                headers={"Authorization": "Bearer mg_" + "z" * 43},
            )
        finally:
            proc.terminate()
            proc.wait(20)
    text = log_path.read_text()
    assert "GET /v1/media/med_01abc" in text  # the access log did log the request
    assert signature not in text and "sig=" not in text
    assert not any(line.startswith("2026-01-01 INFO forged") for line in text.splitlines())


def test_a_new_user_is_told_what_to_do(tmp_path: Path) -> None:
    """Before `migrate`, the tools say to run it (no traceback); the database tools need no
    admin or secret key; `--help` shows defaults; a missing sub-command is named, not an
    internal name."""
    env = {
        k: v
        for k, v in _env(tmp_path).items()
        if k not in ("MEDIAGATE_ADMIN_KEY", "MEDIAGATE_SECRET_KEY")
    }
    for args in (("keys", "list"), ("keys", "create", "--name", "early")):
        early = run_cli(env, *args)
        assert early.returncode == 2, early.stderr
        assert "run `mediagate migrate` first" in early.stderr
        assert "Traceback" not in early.stderr
    assert run_cli(env, "migrate").returncode == 0
    created = run_cli(env, "keys", "create", "--name", "no-admin-key-needed")
    assert created.returncode == 0, created.stderr
    assert "no-admin-key-needed" in run_cli(env, "keys", "list").stdout
    bare = run_cli(env, "keys")
    said = bare.stdout + bare.stderr
    assert bare.returncode == 2 and all(name in said for name in ("create", "list", "revoke"))
    assert "keys_command" not in said
    helped = run_cli(env, "api", "--help").stdout
    assert "[default: 8000]" in helped and "[default: 0.0.0.0]" in helped
    # Serving still needs them.
    assert run_cli(env, "worker", "--check").returncode == 2
