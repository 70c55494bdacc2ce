"""Keeps the import arrows of docs/architecture.md true: providers and storage are leaves;
app/platform stands on nothing of ours but them; a domain's services never import HTTP code
(app/http, app/openai_compat, any `controllers` module) or the workers; workers never import
HTTP code, and HTTP code never imports the workers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = ("jobs", "batches", "media", "keys", "webhooks", "catalog", "operations", "dashboard")


def is_http(module: str) -> bool:
    """HTTP code: the toolkit (app/http), the assembly, the OpenAI-compatible endpoints, and every
    domain's controllers, schemas (the shapes of its requests and responses), bodies (how its
    request bodies are read), responses (how its objects are rendered) and dependencies."""
    leaf = module.rsplit(".", 1)[-1]
    return (
        module.startswith(("app.http", "app.openai_compat", "app.assembly"))
        or leaf in ("controllers", "schemas", "bodies", "responses", "dependencies")
        or leaf.endswith("_controller")
    )


def _domain(imported: str) -> bool:
    return any(_under(imported, f"app.{d}") for d in (*DOMAINS, "openai_compat"))


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
    if _under(module, "app.client"):  # a client of the API: it knows it only over HTTP
        inside = _under(imported, "app.client") or imported.startswith("app.platform.vocabulary")
        shared = imported.startswith("providers.base")  # media types' file extensions
        return (
            _under(imported, "workers")
            or _under(imported, "storage")
            or (_under(imported, "providers") and not shared)
            or (_under(imported, "app") and not inside)
        )
    if _under(module, "app.http"):  # the toolkit: it knows no domain, nor what assembles it
        return _under(imported, "workers") or _under(imported, "app.assembly") or _domain(imported)
    if _under(module, "app.assembly"):
        return _under(imported, "workers")
    if is_http(module):
        return _under(imported, "workers") or _under(imported, "app.assembly")
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
    assert forbidden("app.jobs.stream_controller", "workers.worker")
    assert forbidden("app.jobs.service", "app.jobs.schemas")
    assert forbidden("providers.openai", "storage.base")
    assert not forbidden("app.jobs.controllers", "app.jobs.service")
    assert not forbidden("workers.generate", "app.jobs.transitions")
    assert forbidden("app.http.render", "app.media.service")
    assert forbidden("app.http.dependencies", "app.keys.service")
    assert forbidden("app.jobs.controllers", "app.assembly.app")
    assert forbidden("workers.worker", "app.assembly.app")
    assert not forbidden("app.assembly.app", "app.jobs.controllers")


def test_every_app_module_has_a_home() -> None:
    """Code lives in a domain, the platform or the HTTP shell; only entry points sit at the top."""
    top = {p.stem for p in (ROOT / "app").glob("*.py")}
    assert top == {"__init__", "cli", "dev", "demo"}
    packages = {p.name for p in (ROOT / "app").iterdir() if (p / "__init__.py").exists()}
    assert packages == {*DOMAINS, "platform", "http", "assembly", "openai_compat", "client"}


def _calls(path: Path) -> list[tuple[int, str]]:
    """`update(Job)` calls and SQL that writes the jobs table, with their lines."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "update"
            and node.args
            and getattr(node.args[0], "id", "") == "Job"
        ):
            found.append((node.lineno, "update(Job)"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            sql = " ".join(node.value.upper().split())
            if "UPDATE JOBS " in sql or "INSERT INTO JOBS" in sql:
                found.append((node.lineno, "SQL on jobs"))
    return found


def test_job_state_changes_in_one_place() -> None:
    """Every change of a job's row goes through app/jobs/transitions (procrastinate's manager)."""
    home = ROOT / "app" / "jobs" / "transitions"
    bad = [
        f"{path.relative_to(ROOT)}:{line} {what}"
        for package in ("app", "workers")
        for path in sorted((ROOT / package).rglob("*.py"))
        if home not in path.parents
        for line, what in _calls(path)
    ]
    assert bad == []
    assert _calls(home / "__init__.py") and _calls(home / "one_statement.py")  # the scan sees
    assert _calls(home / "orm_store.py")


def test_handlers_get_no_session() -> None:
    """Controllers parse, call one service and render: no session, no commit, no rollback."""
    bad = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        module = _module_of(path)
        if not is_http(module):
            continue
        text = path.read_text()
        bad += [
            f"{module}: {needle}"
            for needle in ("AsyncSession", ".commit(", ".rollback(", "sessionmaker(")
            if needle in text
        ]
    assert bad == []


def _key_names(path: Path) -> list[int]:
    """Lines of f-strings that start `{namespace}:` (or `{ns}:`): a Redis key of ours."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.JoinedStr) or len(node.values) < 2:
            continue
        first, second = node.values[0], node.values[1]
        named = isinstance(first, ast.FormattedValue) and ast.unparse(first.value).endswith(
            ("namespace", "ns")
        )
        if named and isinstance(second, ast.Constant) and str(second.value)[:1] == ":":
            found.append(node.lineno)
    return found


def test_redis_key_names_in_one_module() -> None:
    """Every Redis key we own is named in app/platform/redis_keys.py (arq's constants module)."""
    home = ROOT / "app" / "platform" / "redis_keys.py"
    bad = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in ("app", "workers")
        for path in sorted((ROOT / package).rglob("*.py"))
        if path != home
        for line in _key_names(path)
    ]
    assert bad == []
    assert len(_key_names(home)) >= 6  # the scan sees them


ARQ_PRIVATE = ("_poll_iteration", "finish_job", "_queue_name", "in_progress_timeout_s")


def test_arq_beyond_its_api_only_behind_its_seam() -> None:
    """arq's key names, wire format, Job handle and worker internals are used in
    app/platform/arq_seam.py alone (each with a test there); elsewhere only its public API."""
    seam = ROOT / "app" / "platform" / "arq_seam.py"
    bad = []
    for package in ("app", "workers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == seam:
                continue
            imported = _imports(path)
            bad += [
                f"{path.relative_to(ROOT)} imports {name}"
                for name in sorted(imported)
                if _under(name, "arq.constants") or _under(name, "arq.jobs")
            ]
            text = path.read_text()
            bad += [
                f"{path.relative_to(ROOT)} uses {name}"
                for name in ARQ_PRIVATE
                if re.search(rf"\b{name}\b", text)
            ]
    assert bad == []
    assert all(name in seam.read_text() for name in ARQ_PRIVATE)  # the scan looks for real names


def _graph() -> dict[str, set[str]]:
    """Each of our modules and the modules of ours it imports (at any depth of the file)."""
    paths = {
        _module_of(path): path for package in _packages() for path in (ROOT / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        graph[module] = {name for name in _imports(path) if name in paths and name != module}
    return graph


def test_no_import_runs_in_a_circle() -> None:
    """No module imports, through others, a module that imports it (app/platform's resources and
    tenant_urls once did); a package's `__init__` counts as its own module."""
    graph = _graph()
    circles = []
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []
    assert "app.platform.tenant_urls" in graph["app.platform.resources"]  # the scan sees edges
