"""How handlers get their dependencies: one at a time. Litestar resolves dependencies of the
same level together in an anyio task group (two tasks and a cancel scope per request); on the
submit path that cost a third of the API's CPU (bench/submit.py), so no handler may have two."""

from __future__ import annotations

from litestar.routes import HTTPRoute

from app.assembly.app import create_app
from app.platform.settings import Settings


def _batches() -> dict[str, list[int]]:
    app = create_app(Settings())
    found: dict[str, list[int]] = {}
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for method, (_, kwargs_model) in route.route_handler_map.items():
            found[f"{method} {route.path}"] = [len(b) for b in kwargs_model.dependency_batches]
    return found


def test_no_handler_resolves_two_dependencies_at_once() -> None:
    batches = _batches()
    assert batches["POST /v1/jobs"] == [1, 1]  # resources, then the key (which needs them)
    assert {name: sizes for name, sizes in batches.items() if any(n > 1 for n in sizes)} == {}
