"""A load client for the SSE benchmark, run as its own process: opens N event streams over raw
sockets (a few hundred opening at once), then records when each stream receives each event.

    python bench/sse_client.py '{"host": ..., "port": ..., "path": ..., "token": ..., "streams": N}'

It prints one JSON line when every stream is open (or refused), and one more when every stream
has ended (or at the deadline): per event id, the monotonic times it arrived (CLOCK_MONOTONIC is
one clock for every process on the machine, so the driver can compare clients), and how many
streams saw their terminal event. The parsing is the least SSE needs: `id:` and `event:` lines,
a blank line ends an event; chunk-size lines of the chunked body are ignored.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter, defaultdict
from typing import Any

import uvloop

TERMINAL = (b"job.succeeded", b"job.failed", b"job.canceled", b"end")


class Stream:
    def __init__(self) -> None:
        self.ids: list[int] = []
        self.terminal = False
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None


async def _open(cfg: dict[str, Any], stream: Stream, statuses: Counter[str]) -> bool:
    try:
        reader, writer = await asyncio.open_connection(cfg["host"], cfg["port"])
        headers = (
            f"GET {cfg['path']} HTTP/1.1\r\nHost: {cfg['host']}\r\nAccept: text/event-stream\r\n"
        )
        if cfg.get("token"):
            headers += f"Authorization: Bearer {cfg['token']}\r\n"
        writer.write((headers + "\r\n").encode())
        status_line = await asyncio.wait_for(reader.readline(), 120)
        while (await asyncio.wait_for(reader.readline(), 120)) not in (b"\r\n", b"\n", b""):
            pass
    except (OSError, TimeoutError) as exc:
        statuses[type(exc).__name__] += 1
        return False
    code = status_line.split()[1].decode() if len(status_line.split()) > 1 else "none"
    statuses[code] += 1
    if code != "200":
        writer.close()
        return False
    stream.reader, stream.writer = reader, writer
    return True


async def _follow(stream: Stream, arrivals: dict[int, list[float]]) -> None:
    assert stream.reader is not None and stream.writer is not None
    event_id: int | None = None
    event: bytes | None = None
    try:
        while True:
            line = await stream.reader.readline()
            if not line:
                return  # closed by the server
            line = line.rstrip(b"\r\n")
            if line.startswith(b"id:"):
                event_id = int(line[3:].strip())
            elif line.startswith(b"event:"):
                event = line[6:].strip()
            elif not line and event is not None and event_id is not None:
                arrivals[event_id].append(time.monotonic())
                stream.ids.append(event_id)
                if event in TERMINAL:
                    stream.terminal = True
                    return
                event = event_id = None
    except OSError:
        return
    finally:
        stream.writer.close()


async def main(cfg: dict[str, Any]) -> None:
    statuses: Counter[str] = Counter()
    streams = [Stream() for _ in range(cfg["streams"])]
    gate = asyncio.Semaphore(cfg.get("opening", 256))

    async def open_one(stream: Stream) -> bool:
        async with gate:
            return await _open(cfg, stream, statuses)

    opened_flags = await asyncio.gather(*(open_one(s) for s in streams))
    opened = [s for s, ok in zip(streams, opened_flags, strict=True) if ok]
    arrivals: dict[int, list[float]] = defaultdict(list)
    followers = [asyncio.create_task(_follow(s, arrivals)) for s in opened]
    print(json.dumps({"opened": len(opened), "statuses": statuses}), flush=True)
    await asyncio.wait(followers, timeout=cfg.get("deadline", 300))
    for task in followers:
        task.cancel()
    print(
        json.dumps(
            {
                "arrivals": {str(k): v for k, v in arrivals.items()},
                "terminal": sum(1 for s in opened if s.terminal),
                "complete": sum(
                    1
                    for s in opened
                    if s.terminal and s.ids == list(range(s.ids[0], s.ids[0] + len(s.ids)))
                ),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    uvloop.run(main(json.loads(sys.argv[1])))
