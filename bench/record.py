"""Runs one benchmark and keeps what it printed: bench/results/<name>.txt, the command, the date
and the commit first. These records are the one place benchmark figures live; every record
written renders docs/benchmarks.md again (`bench.report`), and a test keeps that page equal to
the records.

    python -m bench.record submit -- python -m bench.submit --seconds 5
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import report

ROOT = Path(__file__).resolve().parents[1]


def _commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    # What the records themselves change is not a change of the code measured.
    changed = git(
        "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/benchmarks.md"
    )
    return commit + ("+changes" if changed else "")


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    name, command = argv[0], argv[2:]
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
    if proc.returncode != 0:
        return proc.returncode
    shown = " ".join(["python", *command[1:]] if command[0].endswith("python") else command)
    header = [
        f"# command: {shown}",
        f"# date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"# commit: {_commit()}",
    ]
    text = "\n".join(header) + "\n" + "".join(lines).rstrip() + "\n"
    report.RESULTS.mkdir(exist_ok=True)
    (report.RESULTS / f"{name}.txt").write_text(text)
    report.write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
