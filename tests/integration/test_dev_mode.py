"""`mediagate dev --demo`: starts its own Redis when none answers, runs a job, saves a real PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from PIL import Image

from app.dev import redis_answers
from tests.builders import free_port
from tests.infra import ROOT


def test_dev_demo_saves_png_with_private_redis(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEDIAGATE_")},
        # Nothing listens here, so dev mode must start its own redis-server.
        "MEDIAGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "MEDIAGATE_LOCAL_LATENCY_SECONDS": "0.2",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "dev",
            "--demo",
            "--exit-after-demo",
            "--port",
            str(free_port()),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "started a private redis-server" in proc.stdout
    assert "virtual key: mg_" in proc.stdout and "admin key:" in proc.stdout
    assert "/dashboard  (sign in with the admin key)" in proc.stdout
    (png,) = (tmp_path / "out").glob("job_*.png")
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (512, 512)


def test_dev_outputs_survive_a_restart(tmp_path: Path) -> None:
    """The dev database survives a restart, and so must the media it points at: an output made
    before the restart downloads whole after it (dev media lives under .mediagate/media)."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MEDIAGATE_")},
        # Nothing listens here: each run starts a private Redis (and the machine's is left alone).
        "MEDIAGATE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "MEDIAGATE_LOCAL_LATENCY_SECONDS": "0.1",
        "PYTHONPATH": str(ROOT),
    }
    argv = [sys.executable, "-m", "app.cli", "dev", "--demo"]
    first = subprocess.run(
        [*argv, "--exit-after-demo", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    old_key = first.stdout.split("virtual key: ")[1].split()[0]
    (png,) = (tmp_path / "out").glob("job_*.png")
    job_id = png.stem
    port = free_port()
    second = subprocess.Popen(
        [*argv[:-1], "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert second.stdout is not None
        private = ""
        for line in second.stdout:
            if "private redis-server at " in line:
                private = line.rsplit(" ", 1)[1].strip()
            if "serving;" in line:
                break
        base = f"http://127.0.0.1:{port}"
        job = httpx.get(f"{base}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {old_key}"})
        assert job.status_code == 200, job.text
        output = httpx.get(job.json()["outputs"][0]["url"])
        assert output.status_code == 200 and output.content == png.read_bytes()
        # A row whose object is gone (deleted by hand) says so before sending a byte.
        for path in (tmp_path / ".mediagate" / "media").rglob("*.png"):
            path.unlink()
        url = job.json()["outputs"][0]["url"]
        for headers in ({}, {"Range": "bytes=0-9"}):
            gone = httpx.get(url, headers=headers)
            assert gone.status_code == 410 and gone.json()["error"]["code"] == "media_missing"
    finally:
        second.terminate()
        second.wait(30)
    # Stopped with SIGTERM, dev mode stops the Redis it started too.
    assert private.startswith("redis://") and not redis_answers(private)
