"""The bare durable submit the benchmark compares mediagate's `POST /v1/jobs` with: Litestar on
uvicorn, one handler that parses the JSON body, INSERTs the job row through an asyncpg pool
(committed: autocommit) and then enqueues an arq job under the row's id.

What it leaves out, and mediagate must do: authentication of a virtual key, validation of the
model and its input, the key's row lock (quotas, concurrency limit, deletion fencing), fair-share
placement, idempotency keys, the rate limit, the `job.queued` event, the full job object in the
answer. `--no-db` drops the INSERT too (parse + enqueue only).

    python -m bench.bare_submit --port 8002 --database postgresql://... --redis redis://... \
        --queue bench:queue --key-id key_...
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import uvicorn
from arq.connections import ArqRedis, RedisSettings, create_pool
from litestar import Litestar, Request, Response, get, post

INSERT = """
INSERT INTO jobs (id, key_id, type, model, provider, provider_model, input, request, status,
                  progress, attempts, tries, targets, target_index, created_at, priority)
VALUES ($1, $2, $3, $4, 'local', $4, $5, $5, 'queued', 0, 0, 0, $6, 0, $7, 'normal')
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True, help="a postgresql:// URL (asyncpg's form)")
    parser.add_argument("--redis", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--no-db", action="store_true")
    args = parser.parse_args()
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(args.database, min_size=20, max_size=20)
        state["redis"] = await create_pool(
            RedisSettings.from_dsn(args.redis), default_queue_name=args.queue
        )
        yield
        await state["redis"].aclose()
        await state["pool"].close()

    @post("/v1/jobs", status_code=202)
    async def create(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = orjson.loads(await request.body())
        job_id = "job_" + secrets.token_hex(12)
        if not args.no_db:
            pool: asyncpg.Pool = state["pool"]
            await pool.execute(
                INSERT,
                job_id,
                args.key_id,
                body["type"],
                body["model"],
                orjson.dumps(body["input"]).decode(),
                orjson.dumps([body["model"]]).decode(),
                datetime.now(UTC),
            )
        redis: ArqRedis = state["redis"]
        await redis.enqueue_job("generate_media", job_id, _job_id=job_id)
        return Response(
            orjson.dumps({"id": job_id, "object": "job", "status": "queued"}),
            status_code=202,
            media_type="application/json",
        )

    @get("/healthz")
    async def healthz() -> str:
        return "ok"

    app = Litestar([create, healthz], lifespan=[lifespan])
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, backlog=4096
    )


if __name__ == "__main__":
    main()
