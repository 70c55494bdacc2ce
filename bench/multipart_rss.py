"""Peak memory of storing one large output in S3: mediagate's streaming multipart upload against
a baseline that buffers the whole file first (what a naive gateway does), measured in the same run.

Each variant runs in a fresh child process that reports how far its peak RSS (VmHWM) rose during
the upload alone; the S3 server (moto, `moto_server`) is a separate process, so its memory is not
counted. The data is streamed from one reused 1 MiB chunk, so the source holds no file either.

    python bench/multipart_rss.py                 # 512 MiB
    python bench/multipart_rss.py --size-mib 1024 # the issue's 1 GiB case
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from storage.s3 import PART_SIZE, S3Config, open_s3_store

MIB = 1024 * 1024


def _peak_rss() -> int:
    """This process's peak resident set size so far, in bytes (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def _chunks(total: int, chunk: bytes) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = chunk[: total - sent]
        sent += len(piece)
        yield piece


async def _buffered(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The baseline: read the whole output into memory, then upload it."""
    whole = b"".join([piece async for piece in stream])
    yield whole


async def _child(endpoint: str, bucket: str, size: int, variant: str) -> dict[str, float]:
    store = await open_s3_store(
        S3Config(bucket=bucket, endpoint_url=endpoint, access_key="bench", secret_key="bench")
    )
    try:
        chunk = os.urandom(MIB)
        # Warm up the client (connection pool, signer, parsers) so the baseline excludes them.
        await store.put("warmup", _chunks(MIB, chunk), content_type="application/octet-stream")
        before = _peak_rss()
        stream = _chunks(size, chunk)
        if variant == "buffered":
            stream = _buffered(stream)
        started = time.perf_counter()
        stored = await store.put(f"{variant}.bin", stream, content_type="application/octet-stream")
        seconds = time.perf_counter() - started
        growth = _peak_rss() - before
        info = await store.head(f"{variant}.bin")
        assert stored == size and info is not None and info.size == size, (stored, info)
        await store.delete(f"{variant}.bin")
    finally:
        await store.close()
    return {"growth": growth, "seconds": seconds}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("moto_server exited; is moto[server] installed?")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start within 30 s")


def _run_variant(endpoint: str, bucket: str, size: int, variant: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", endpoint, bucket, str(size), variant],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        endpoint, bucket, size, variant = args.child
        print(json.dumps(asyncio.run(_child(endpoint, bucket, int(size), variant))))
        return 0

    size = args.size_mib * MIB
    port = _free_port()
    moto_server = Path(sys.executable).with_name("moto_server")
    server = subprocess.Popen(
        [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port, server)
        endpoint = f"http://127.0.0.1:{port}"
        bucket = f"bench-{secrets.token_hex(4)}"
        asyncio.run(_create_bucket(endpoint, bucket))
        streamed = _run_variant(endpoint, bucket, size, "streamed")
        buffered = _run_variant(endpoint, bucket, size, "buffered")
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(
        f"multipart upload of a {args.size_mib} MiB output to S3 (moto), part size "
        f"{PART_SIZE // MIB} MiB"
    )
    print(f"{'variant':<34}{'peak RSS growth':>18}{'of file size':>14}{'time':>9}{'MiB/s':>8}")
    for name, result in (
        ("mediagate (streamed multipart)", streamed),
        ("baseline (buffer whole file)", buffered),
    ):
        print(
            f"{name:<34}{result['growth'] / MIB:>14.1f} MiB{result['growth'] / size:>13.1%}"
            f"{result['seconds']:>8.1f}s{size / MIB / result['seconds']:>8.1f}"
        )
    ratio = buffered["growth"] / max(streamed["growth"], 1)
    print(f"streamed peak growth is {ratio:.1f}x smaller than the baseline's")
    # The target: growth far below the file size (a few parts at most, whatever the size).
    ok = streamed["growth"] < min(size / 4, 6 * PART_SIZE)
    print("target (growth < min(size/4, 6 parts)):", "met" if ok else "MISSED")
    return 0 if ok else 1


async def _create_bucket(endpoint: str, bucket: str) -> None:
    store = await open_s3_store(
        S3Config(bucket=bucket, endpoint_url=endpoint, access_key="bench", secret_key="bench")
    )
    try:
        await store.ensure_bucket()
    finally:
        await store.close()


if __name__ == "__main__":
    raise SystemExit(main())
