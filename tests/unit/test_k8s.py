"""The Kubernetes reference (docker/k8s/) sets only real settings, probes what the code serves,
gives workers more time to stop than they take, and scales on a series the code exports."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from app.platform.metrics import SERIES
from app.platform.settings import Settings

K8S = Path(__file__).resolve().parents[2] / "docker" / "k8s"


def _documents() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _of(kind: str, name: str) -> dict[str, Any]:
    return next(d for d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name)


def _container(deployment: str) -> dict[str, Any]:
    spec = _of("Deployment", deployment)["spec"]["template"]["spec"]
    container: dict[str, Any] = spec["containers"][0]
    return container


def test_every_setting_is_real() -> None:
    known = Settings.env_names()
    config = _of("ConfigMap", "mediagate-config")["data"]
    set_here = {name for name in config if name.startswith("MEDIAGATE_")}
    for doc in _documents():
        text = yaml.safe_dump(doc)
        set_here |= set(re.findall(r"\b(MEDIAGATE_[A-Z0-9_]+)\b", text))
    assert set_here and set_here <= known, set_here - known


def test_probes_and_grace() -> None:
    api, worker = _container("mediagate-api"), _container("mediagate-worker")
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert worker["livenessProbe"]["exec"]["command"][-2:] == ["worker", "--check"]
    config = _of("ConfigMap", "mediagate-config")["data"]
    grace = int(config["MEDIAGATE_WORKER_SHUTDOWN_GRACE_SECONDS"])
    pod = _of("Deployment", "mediagate-worker")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > grace
    port = int(config["MEDIAGATE_WORKER_METRICS_PORT"])
    assert {p["containerPort"] for p in worker["ports"]} == {port}
    for container in (api, worker):
        refs = [next(iter(source.values()))["name"] for source in container["envFrom"]]
        assert refs == ["mediagate-config", "mediagate-secrets"]


def test_keda_scales_workers_on_an_exported_series() -> None:
    scaled = _of("ScaledObject", "mediagate-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "mediagate-worker"
    (trigger,) = scaled["spec"]["triggers"]
    used = set(re.findall(r"\bmediagate_[a-z0-9_]+", trigger["metadata"]["query"]))
    assert used == {"mediagate_queue_oldest_age_seconds"} and used <= set(SERIES)
