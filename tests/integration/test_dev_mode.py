"""`mediagate dev --demo`: starts its own Redis when none answers, runs a job, saves a real PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.infra import ROOT, free_port


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
    (png,) = (tmp_path / "out").glob("job_*.png")
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (512, 512)
