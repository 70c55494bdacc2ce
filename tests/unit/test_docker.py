"""The compose file only sets variables our settings know, and every service gets them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from app.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    return data


def test_compose_sets_only_known_settings() -> None:
    compose = _compose()
    known = Settings.env_names()
    ours = {"api", "worker", "migrate"}
    assert ours <= set(compose["services"])
    for name in ours:
        env = compose["services"][name]["environment"]
        names = {k for k in env if k.startswith("MEDIAGATE_")}
        assert names, name
        assert names <= known, names - known
        assert {"MEDIAGATE_DATABASE_URL", "MEDIAGATE_REDIS_URL", "MEDIAGATE_ADMIN_KEY"} <= names


def test_compose_has_the_whole_stack() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "minio"} <= set(services)
    assert services["worker"]["command"][-1] == "worker"


def test_dockerfile_is_multi_stage_and_non_root() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2
    assert "\nUSER mediagate" in text
