"""The bare SSE fan-out the benchmark compares mediagate with: Litestar + sse-starlette on
uvicorn, one Redis pub/sub reader per process, an asyncio.Queue per stream, each event's payload
serialized once (by the publisher) and handed to every stream as is.

It leaves out what mediagate must do: authentication, the job's ownership and snapshot, history
and Last-Event-ID resume, resync after a slow client or a lost Redis connection, signed output
links, the lifetime cap.

    python bench/bare_sse.py --port 8001 --redis redis://127.0.0.1:6379/0 --channel bench:sse
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio as aredis
import uvicorn
from litestar import Litestar, get
from sse_starlette import EventSourceResponse, ServerSentEvent

QUEUES: dict[str, set[asyncio.Queue[tuple[str, str, str]]]] = {}

PING_SECONDS = 15.0
"""A keep-alive comment to each stream this often (sse-starlette's `ping`); bench/sse_fanout.py
gives mediagate the same (`MEDIAGATE_SSE_PING_SECONDS`)."""


async def _reader(url: str, channel: str) -> None:
    client = aredis.Redis.from_url(url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    async for message in pubsub.listen():
        job_id, seq, event, data = message["data"].decode().split("\n", 3)
        for queue in QUEUES.get(job_id, ()):
            queue.put_nowait((seq, event, data))


async def _events(job_id: str) -> AsyncIterator[ServerSentEvent]:
    queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
    QUEUES.setdefault(job_id, set()).add(queue)
    try:
        while True:
            seq, event, data = await queue.get()
            yield ServerSentEvent(data=data, event=event, id=seq)
            if event == "end":
                return
    finally:
        QUEUES[job_id].discard(queue)


@get("/events/{job_id:str}")
async def events(job_id: str) -> EventSourceResponse:
    return EventSourceResponse(_events(job_id), ping=PING_SECONDS)


@get("/healthz")
async def healthz() -> str:
    return "ok"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--channel", required=True)
    args = parser.parse_args()

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        task = asyncio.create_task(_reader(args.redis, args.channel))
        yield
        task.cancel()

    app = Litestar([events, healthz], lifespan=[lifespan])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", backlog=4096)


if __name__ == "__main__":
    main()
