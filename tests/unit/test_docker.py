"""The compose file only sets variables our settings know, and every service gets them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from app.platform.settings import Settings

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


SECRET_NAMES = ("PASSWORD", "SECRET", "ACCESS_KEY", "ROOT_USER", "ADMIN_KEY", "API_KEY", "TOKEN")


def _required_from_environment(value: str) -> bool:
    return value.startswith("${") and ":?" in value


def test_compose_has_no_fixed_credentials_and_exposes_storage_to_this_machine_only() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for var, value in (service.get("environment") or {}).items():
            if any(part in var for part in SECRET_NAMES) and not var.startswith(
                ("MEDIAGATE_OPENAI", "MEDIAGATE_MINIMAX", "MEDIAGATE_REPLICATE")
            ):
                assert _required_from_environment(str(value)), (name, var, value)
    for port in services["minio"]["ports"]:
        assert str(port).startswith("127.0.0.1:"), port
    database_url = services["api"]["environment"]["MEDIAGATE_DATABASE_URL"]
    assert ":${POSTGRES_PASSWORD:?" in database_url
    # The app signs into MinIO as its own user, not as MinIO's root.
    app_env = services["api"]["environment"]
    assert app_env["MEDIAGATE_S3_ACCESS_KEY"] != services["minio"]["environment"]["MINIO_ROOT_USER"]
    assert "mc admin user add" in services["createbucket"]["entrypoint"]


def test_images_are_pinned_and_the_code_is_read_only() -> None:
    images = [s["image"] for s in _compose()["services"].values() if "image" in s]
    text = (ROOT / "docker" / "Dockerfile").read_text()
    images += [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    for image in images:
        tag = image.rsplit(":", 1)[1] if ":" in image else ""
        assert tag and tag != "latest" and any(c.isdigit() for c in tag), image
        assert "." in tag, image  # a release (16.6, 7.4.1, RELEASE.…), not a line (16, 7)
    assert "--chown=mediagate" not in text  # root owns the code ...
    assert "chmod -R a-w /app /opt/venv" in text  # ... and nobody may write it


def _series_used(text: str) -> set[str]:
    """Every mediagate_* series an expression names, without a histogram's suffix."""
    names = set(re.findall(r"\bmediagate_[a-z0-9_]+", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def test_dashboard_and_alerts_use_only_series_we_export() -> None:
    from app.platform.metrics import SERIES

    dashboard = json.loads((ROOT / "docker/grafana/dashboards/mediagate.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((ROOT / "docker/prometheus/alerts.yml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    used = _series_used("\n".join([*exprs, *alerts.values()]))
    assert used and used <= set(SERIES), used - set(SERIES)
    assert {
        "MediagateQueueBacklog",
        "MediagateJobFailureRate",
        "MediagateNoLiveWorker",
        "MediagateWebhookFailures",
    } <= set(alerts)
    # Every series we export is on the dashboard (an HTTP series at least once).
    assert set(SERIES) - used <= {
        "mediagate_http_requests_in_progress",
    }, set(SERIES) - used


def test_compose_runs_prometheus_and_grafana_over_our_files() -> None:
    services = _compose()["services"]
    mounts = " ".join(services["prometheus"]["volumes"] + services["grafana"]["volumes"])
    for path in ("prometheus/prometheus.yml", "prometheus/alerts.yml", "grafana/dashboards"):
        assert f"./{path}" in mounts and (ROOT / "docker" / path).exists()
    worker = services["worker"]
    assert worker["environment"]["MEDIAGATE_WORKER_METRICS_PORT"] == "9100"
    assert worker["healthcheck"]["test"][-1] == "--check"
    scrape = yaml.safe_load((ROOT / "docker/prometheus/prometheus.yml").read_text())
    ports = {c["port"] for job in scrape["scrape_configs"] for c in job.get("dns_sd_configs", [])}
    assert ports == {9100}
