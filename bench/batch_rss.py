"""Peak memory an API process spends on hostile `POST /v1/batches` bodies, against a baseline
that parses the same bodies whole (what the API did before: `orjson.loads` of every line or of
the whole array, then the count), measured in the same run.

The API runs as a process of its own (PostgreSQL, Redis); before each body its peak RSS is reset
(`/proc/PID/clear_refs`, 5) and after it the rise of VmHWM over the RSS before is read. The
baseline parses each body in a fresh child process and reports the same rise. The bodies: the
issue's 25 MiB of `{}` lines, and the worst that fit under MEDIAGATE_MAX_BATCH_BYTES (lines of
`{}`, an array of `{}`, an array of `0`, strings full of commas), and the largest honest batch
(1,000 jobs, 4,000-character prompts), which is taken.

    python -m bench.batch_rss
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import orjson

from bench.common import (
    base_settings,
    drop_namespace,
    mediagate_api_argv,
    mediagate_env,
    new_key,
    postgres_database,
    serve,
    status_bytes,
)
from tests.builders import free_port

MIB = 1024 * 1024
TARGET = 50 * MIB


def bodies(cap: int) -> dict[str, tuple[str, bytes]]:
    """name -> (content type, body)."""
    under = cap - 1024
    job = {"type": "image", "model": "local-image", "input": {"prompt": "a fox, " * 570}}
    honest = [{**job, "custom_id": f"c{i}"} for i in range(1000)]
    return {
        "25 MiB of {} lines (the issue's)": ("application/jsonl", b"{}\n" * (25 * MIB // 3)),
        "{} lines, just under the cap": ("application/jsonl", b"{}\n" * (under // 3)),
        "array of {}, under the cap": ("application/json", b"[" + b"{}," * (under // 3) + b"{}]"),
        "array of 0, under the cap": ("application/json", b"[" + b"0," * (under // 2) + b"0]"),
        "strings of commas, under the cap": (
            "application/json",
            orjson.dumps(["," * 5000] * (under // 5003)),
        ),
        "1,000 jobs, 4,000-char prompts (taken)": ("application/json", orjson.dumps(honest)),
    }


def _naive(content_type: str, raw: bytes) -> None:
    """The baseline: every line (or the whole array) parsed, then counted."""
    if content_type == "application/jsonl":
        items = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    else:
        items = orjson.loads(raw)
    assert len(items) >= 0


def _child(name: str, cap: int) -> int:
    content_type, raw = bodies(cap)[name]
    before = status_bytes("self", "VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    with contextlib.suppress(orjson.JSONDecodeError):
        _naive(content_type, raw)
    return status_bytes("self", "VmHWM") - before


def _baseline(name: str, cap: int) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "bench.batch_rss", "--child", name, "--cap", str(cap)],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cap", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(_child(args.child, args.cap))
        return 0

    results: list[tuple[str, int, int, int]] = []
    with postgres_database() as database:
        settings = base_settings(database)
        cap = settings.max_batch_bytes
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        try:
            # A fresh API process per body: memory an earlier body made the allocator keep
            # would hide a later body's growth.
            for name, (content_type, raw) in bodies(cap).items():
                with serve(mediagate_api_argv(port), url, env=mediagate_env(settings)) as api:
                    headers = {"Authorization": f"Bearer {new_key(url)}"}
                    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
                        client.get("/v1/batches")  # the key's first request: cached after
                        before = status_bytes(api.pid, "VmRSS")
                        Path(f"/proc/{api.pid}/clear_refs").write_text("5")
                        answer = client.post(
                            "/v1/batches", content=raw, headers={"Content-Type": content_type}
                        )
                        growth = status_bytes(api.pid, "VmHWM") - before
                results.append((name, answer.status_code, growth, _baseline(name, cap)))
        finally:
            drop_namespace(settings.redis_namespace)

    print(f"peak RSS growth of the API per batch body (MEDIAGATE_MAX_BATCH_BYTES={cap})")
    print(f"{'body':<42}{'answer':>7}{'mediagate':>12}{'baseline':>12}{'ratio':>8}")
    for name, status, growth, baseline in results:
        ratio = f"{baseline / growth:.0f}x" if growth >= MIB // 10 else "-"
        print(f"{name:<42}{status:>7}{growth / MIB:>8.1f} MiB{baseline / MIB:>8.1f} MiB{ratio:>8}")
    worst = max(growth for _, _, growth, _ in results)
    ok = worst < TARGET
    print(f"worst growth {worst / MIB:.1f} MiB; target (< {TARGET // MIB} MiB):", end=" ")
    print("met" if ok else "MISSED")
    print(json.dumps({"worst_mib": round(worst / MIB, 1)}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
