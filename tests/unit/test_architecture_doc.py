"""docs/architecture.md stays true: every module it names exists, and every module of ours is
named in it (by path, or by its package)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()


def _named_paths() -> set[str]:
    return set(re.findall(r"`((?:app|workers|providers|storage)/[\w/]*\w(?:\.py)?/?)", DOC))


def test_every_named_path_exists() -> None:
    missing = [p for p in _named_paths() if not (ROOT / p.split(":")[0]).exists()]
    assert missing == []


def _texts_about(folder: str) -> str:
    """What the page says of `folder`: the lines naming it (a tree entry with its continuation
    lines) and the section headed by it."""
    texts: list[str] = []
    entry: list[str] = []
    section = ""
    for line in DOC.splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        if line.startswith(" ") and entry:
            entry.append(line)
            continue
        if entry:
            texts.append(" ".join(entry))
        entry = [line] if f"{folder}/" in line else []
        if section == folder or f"{folder}/" in line:
            texts.append(line)
    return "\n".join(texts)


def test_every_module_is_described() -> None:
    """Each module's file name is said where the page speaks of its folder."""
    undescribed = []
    for package in ("app", "workers", "providers", "storage"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if path.name == "__init__.py":
                if path.parent.name != "transitions":
                    continue
                folder, name = rel.parent.parent.as_posix(), f"{path.parent.name}/"
            else:
                folder, name = rel.parent.as_posix(), path.name
            if name not in _texts_about(folder) and rel.as_posix() not in DOC:
                undescribed.append(rel.as_posix())
    assert undescribed == []
