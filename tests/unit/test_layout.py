"""Keeps the import arrows of STYLE.md true: providers and storage are leaves; app/api and workers
never import each other; app/core never imports either."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "providers": ("app", "workers", "storage"),
    "storage": ("app", "workers", "providers"),
    "app/core": ("app.api", "workers"),
    "app/api": ("workers",),
    "workers": ("app.api",),
}
ALLOWED: set[tuple[str, str]] = set()


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    bad = []
    for path in (ROOT / package).rglob("*.py"):
        rel = str(path.relative_to(ROOT))
        for module in _imports(path):
            for prefix in FORBIDDEN[package]:
                if (module == prefix or module.startswith(prefix + ".")) and (
                    rel,
                    module,
                ) not in ALLOWED:
                    bad.append(f"{rel} imports {module}")
    assert bad == []
