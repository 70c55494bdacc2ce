"""The README is a front door: short, every page it sends readers to exists, and its table of the
common settings says what the full configuration page says (which a test keeps equal to the
code)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_short() -> None:
    assert len(README.splitlines()) < 400


def test_every_page_it_links_exists() -> None:
    links = re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)\)", README)
    assert "docs/configuration.md" in links and "docs/api.md" in links
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in links, f"{page.name} is not reachable from the README"
        for link in re.findall(r"\]\(([\w./-]+\.md)\)", page.read_text()):
            assert (page.parent / link).resolve().exists(), f"{page.name} links {link}"
    assert all((ROOT / link).exists() for link in links)


def test_its_settings_rows_are_the_configuration_pages() -> None:
    full = (ROOT / "docs" / "configuration.md").read_text()
    rows = [line for line in README.splitlines() if line.startswith("| `MEDIAGATE_")]
    assert len(rows) >= 10
    for row in rows:
        assert row in full.splitlines(), row


def test_the_benchmark_page_is_generated_from_the_records() -> None:
    """docs/benchmarks.md is `bench.report`'s rendering of bench/results/, never edited by hand,
    and holds a record of every benchmark `make bench` runs."""
    from bench import report

    assert (ROOT / "docs" / "benchmarks.md").read_text() == report.render()
    assert sorted(p.stem for p in report.RESULTS.glob("*.txt")) == sorted(report.ORDER)
