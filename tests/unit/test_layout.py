"""Keeps the import arrows of docs/architecture.md true: providers and storage are leaves;
app/platform stands on nothing of ours but them; a domain's services never import HTTP code
(app/http, app/openai_compat, any `controllers` module) or the workers; workers never import
HTTP code, and HTTP code never imports the workers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = ("jobs", "media", "keys", "webhooks", "catalog")


def is_http(module: str) -> bool:
    """HTTP code: the shell, the OpenAI-compatible endpoints and every domain's controllers."""
    leaf = module.rsplit(".", 1)[-1]
    return (
        module.startswith(("app.http", "app.openai_compat"))
        or leaf == "controllers"
        or leaf.endswith("_controller")
    )


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from app.jobs import controllers` imports a module too
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def forbidden(module: str, imported: str) -> bool:
    if _under(module, "providers"):
        return _under(imported, "app") or _under(imported, "workers") or _under(imported, "storage")
    if _under(module, "storage"):
        return any(_under(imported, p) for p in ("app", "workers", "providers"))
    if _under(module, "app.platform"):
        return _under(imported, "workers") or (
            _under(imported, "app") and not _under(imported, "app.platform")
        )
    if _under(module, "workers"):
        return is_http(imported)
    if is_http(module):
        return _under(imported, "workers")
    if any(_under(module, f"app.{domain}") for domain in DOMAINS):
        return _under(imported, "workers") or is_http(imported)
    return False


def _packages() -> list[str]:
    return ["providers", "storage", "workers", "app"]


@pytest.mark.parametrize("package", _packages())
def test_import_direction(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        module = _module_of(path)
        bad.extend(
            f"{module} imports {imported}"
            for imported in sorted(_imports(path))
            if forbidden(module, imported)
        )
    assert bad == []


def test_the_rules_bite() -> None:
    """The rules catch what they are for (a broken rule would pass every tree)."""
    assert forbidden("app.jobs.service", "app.jobs.controllers")
    assert forbidden("app.media.lifecycle", "app.http.render")
    assert forbidden("app.platform.resources", "app.jobs.service")
    assert forbidden("workers.generate", "app.openai_compat.common")
    assert forbidden("app.jobs.stream_controller", "workers.settings")
    assert forbidden("providers.openai", "storage.base")
    assert not forbidden("app.jobs.controllers", "app.jobs.service")
    assert not forbidden("workers.generate", "app.jobs.transitions")


def test_every_app_module_has_a_home() -> None:
    """Code lives in a domain, the platform or the HTTP shell; only entry points sit at the top."""
    top = {p.stem for p in (ROOT / "app").glob("*.py")}
    assert top == {"__init__", "cli", "dev", "demo"}
    packages = {p.name for p in (ROOT / "app").iterdir() if (p / "__init__.py").exists()}
    assert packages == {*DOMAINS, "platform", "http", "openai_compat"}
