"""Worker heartbeats in Redis: each worker says every few seconds who it is (id, host, pid),
how many jobs it may run and runs, since when it runs and when it last beat. A worker is alive
while its last heartbeat is younger than three intervals; one that stops cleanly removes its
own at once. arq's health check key is one per queue, shared by every worker of it, so it cannot
say which worker is gone."""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass

from redis.asyncio import Redis

from app.platform.redis_keys import worker_key, workers_key

STALE_AFTER_BEATS = 3
FORGET_AFTER_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class Heartbeat:
    id: str
    host: str
    pid: int
    concurrency: int
    running: int
    started_at: float
    last_seen: float
    throughput: float = 0.0
    """Jobs it ended a second over the last few minutes."""

    @staticmethod
    def new_id() -> str:
        return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


async def beat(redis: Redis, namespace: str, heartbeat: Heartbeat, interval: float) -> None:
    """Record the heartbeat (it expires after three intervals unless renewed)."""
    fields = {name: str(value) for name, value in asdict(heartbeat).items()}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(worker_key(namespace, heartbeat.id), mapping=fields)
        pipe.expire(worker_key(namespace, heartbeat.id), max(1, int(interval * STALE_AFTER_BEATS)))
        pipe.zadd(workers_key(namespace), {heartbeat.id: heartbeat.last_seen})
        pipe.zremrangebyscore(workers_key(namespace), "-inf", time.time() - FORGET_AFTER_SECONDS)
        await pipe.execute()


async def forget(redis: Redis, namespace: str, worker_id: str) -> None:
    """A worker that stops cleanly is gone at once."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(workers_key(namespace), worker_id)
        pipe.delete(worker_key(namespace, worker_id))
        await pipe.execute()


async def count_alive(redis: Redis, namespace: str, interval: float) -> int:
    """How many workers have a fresh heartbeat (one ZCOUNT; no heartbeat is read)."""
    since = time.time() - interval * STALE_AFTER_BEATS
    return int(await redis.zcount(workers_key(namespace), since, "+inf"))


async def alive(redis: Redis, namespace: str, interval: float) -> list[Heartbeat]:
    """The workers whose last heartbeat is younger than three intervals, oldest first."""
    since = time.time() - interval * STALE_AFTER_BEATS
    ids = await redis.zrangebyscore(workers_key(namespace), since, "+inf")
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id in ids:
            pipe.hgetall(worker_key(namespace, _text(worker_id)))
        found = await pipe.execute()
    beats = []
    for raw in found:
        if not raw:
            continue  # expired between the two reads
        fields = {_text(k): _text(v) for k, v in raw.items()}
        beats.append(
            Heartbeat(
                id=fields["id"],
                host=fields["host"],
                pid=int(fields["pid"]),
                concurrency=int(fields["concurrency"]),
                running=int(fields["running"]),
                started_at=float(fields["started_at"]),
                last_seen=float(fields["last_seen"]),
                throughput=float(fields.get("throughput", 0.0)),
            )
        )
    return sorted(beats, key=lambda b: b.started_at)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
