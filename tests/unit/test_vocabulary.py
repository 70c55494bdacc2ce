"""The closed vocabulary (app/platform/vocabulary.py) is the only spelling of statuses, event
types, priorities and error codes: code compares against members, never string literals, and
what the docs list is what the code has."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import providers.base as provider_base
from app.platform import errors
from app.platform.vocabulary import (
    JOB_ERROR_CODES,
    DeliveryStatus,
    ErrorCode,
    EventType,
    JobStatus,
    Priority,
    PurgeStatus,
)

ROOT = Path(__file__).resolve().parents[2]
CLOSED = {
    str(m) for enum in (JobStatus, EventType, Priority, DeliveryStatus, PurgeStatus) for m in enum
}
CODES = {str(code) for code in ErrorCode}
# Client-side code (the demo reads our API as a client would) may spell the wire values.
EXEMPT = {"app/platform/vocabulary.py", "app/demo.py"}


def _sources() -> list[Path]:
    return [
        p
        for package in ("app", "workers")
        for p in sorted((ROOT / package).rglob("*.py"))
        if str(p.relative_to(ROOT)) not in EXEMPT
    ]


def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_vocabulary_literals(path: Path) -> None:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                items = side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set) else [side]
                found += [
                    f"{node.lineno}: compares with {v!r}"
                    for i in items
                    if (v := _literal(i)) in CLOSED
                ]
        elif isinstance(node, ast.keyword) and node.arg in {
            "code",
            "error_code",
            "status",
            "priority",
        }:
            value = _literal(node.value)
            if value is not None and (value in CODES or value in CLOSED):
                found.append(f"{node.lineno}: {node.arg}={value!r}")
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in {"publish", "notify", "finish"}:
                found += [
                    f"{node.lineno}: {name}({v!r})"
                    for arg in node.args
                    if (v := _literal(arg)) in CLOSED or v in CODES
                ]
    assert found == []


def test_every_error_class_code_is_in_the_vocabulary() -> None:
    ours = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.MediagateError)
    ]
    assert {c.code for c in ours} <= CODES
    upstream = [
        c
        for c in vars(provider_base).values()
        if isinstance(c, type) and issubclass(c, provider_base.ProviderError)
    ]
    assert upstream and {c.code for c in upstream} <= set(JOB_ERROR_CODES)


def test_readme_lists_the_job_error_codes() -> None:
    readme = (ROOT / "docs" / "api.md").read_text()
    sentence = readme.split("A failed job's `error.code` is one of", 1)[1].split("(the list is", 1)[
        0
    ]
    assert re.findall(r"`([a-z_]+)`", sentence) == [str(code) for code in JOB_ERROR_CODES]


def test_the_scan_bites() -> None:
    tree = ast.parse('if job.status == "queued": finish("failed", code="not_found")')
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert _literal(compares[0].comparators[0]) in CLOSED


def test_readme_lists_the_event_types() -> None:
    readme = (ROOT / "docs" / "api.md").read_text()
    sentence = readme.split("`event:` one of", 1)[1].split("and\n`data:`", 1)[0]
    assert re.findall(r"`([a-z_.]+)`", sentence) == [str(event) for event in EventType]


def test_readme_lists_every_metric_series() -> None:
    from app.platform.metrics import SERIES

    readme = (ROOT / "docs" / "operating.md").read_text()
    table = readme.split("### Metrics", 1)[1].split("\n\n`docker/compose.yaml`", 1)[0]
    listed = re.findall(r"^\| `(mediagate_[a-z0-9_]+)` \|", table, re.M)
    assert sorted(listed) == sorted(SERIES)
