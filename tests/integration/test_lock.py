"""Installs that reproduce: uv.lock pins every package (dev tools included); the venv `make`
built holds exactly the locked versions; and the check `make test` runs first fails as soon as
pyproject.toml and the lock disagree (it asks PyPI, as `uv lock` does)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from tests.infra import ROOT

UV = Path(sys.executable).parent / "uv"


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def test_the_venv_holds_the_locked_versions() -> None:
    # A package may be locked at two versions, one per range of Python (uv's forks).
    locked: dict[str, set[str]] = {}
    for package in tomllib.loads((ROOT / "uv.lock").read_text())["package"]:
        if "version" in package:
            locked.setdefault(_normal(package["name"]), set()).add(package["version"])
    installed = {_normal(d.metadata["Name"]): d.version for d in metadata.distributions()}
    for name in ("litestar", "arq", "sqlalchemy", "typer", "pytest", "playwright", "ruff"):
        assert name in locked, name
    differ = {n: v for n, v in installed.items() if n in locked and v not in locked[n]}
    assert differ == {}


def test_the_check_fails_when_pyproject_and_lock_disagree(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy(ROOT / name, tmp_path / name)

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(UV), "lock", "--check"], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    agreed = check()
    assert agreed.returncode == 0, agreed.stderr
    project = tmp_path / "pyproject.toml"
    project.write_text(
        project.read_text().replace('"orjson>=3.10",', '"orjson>=3.10",\n    "six>=1.16",')
    )
    disagreed = check()
    assert disagreed.returncode != 0
    assert "needs to be updated" in disagreed.stderr
