"""The bare worker the benchmark compares mediagate's worker with: an arq worker whose task does
what a durable image job needs at the least, with the same parts: one UPDATE that marks the job
running (and reads its input), the same `render_image` + `encode_png` as mediagate's local
provider (in a thread), one S3 PUT through aiobotocore, one UPDATE that marks it succeeded.

What it leaves out, and mediagate must do: fencing by attempt (a worker cut off past its lease
writes nothing), a lease and heartbeat, progress and output events, the media row and the key's
usage in one transaction under the key's lock, content sniffing and a sha256, deadlines,
retries, fallbacks, webhooks, provider slots, quotas.

    python -m bench.bare_worker --database postgresql://... --redis redis://... --queue Q \
        --s3 http://127.0.0.1:PORT --bucket B --concurrency 20
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg
import orjson
from aiobotocore.session import get_session
from arq.connections import RedisSettings
from arq.worker import Worker

from providers.local import encode_png, render_image

START = """
UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = now()
WHERE id = $1 RETURNING key_id, input
"""
FINISH = "UPDATE jobs SET status = 'succeeded', progress = 100, finished_at = now() WHERE id = $1"


async def generate_media(ctx: dict[str, Any], job_id: str) -> None:
    pool: asyncpg.Pool = ctx["pool"]
    row = await pool.fetchrow(START, job_id)
    params = orjson.loads(row["input"])
    img = await asyncio.to_thread(render_image, params["prompt"], params["size"], None, 0)
    data = await asyncio.to_thread(encode_png, img)
    await ctx["s3"].put_object(
        Bucket=ctx["bucket"],
        Key=f"{row['key_id']}/{job_id}/0.png",
        Body=data,
        ContentType="image/png",
    )
    await pool.execute(FINISH, job_id)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--s3", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--poll-delay", type=float, default=0.05)
    args = parser.parse_args()

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["pool"] = await asyncpg.create_pool(args.database, min_size=4, max_size=20)
        ctx["s3_context"] = get_session().create_client(
            "s3",
            endpoint_url=args.s3,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        ctx["s3"] = await ctx["s3_context"].__aenter__()
        ctx["bucket"] = args.bucket

    async def shutdown(ctx: dict[str, Any]) -> None:
        await ctx["s3_context"].__aexit__(None, None, None)
        await ctx["pool"].close()

    worker = Worker(
        functions=[generate_media],
        redis_settings=RedisSettings.from_dsn(args.redis),
        queue_name=args.queue,
        max_jobs=args.concurrency,
        poll_delay=args.poll_delay,
        keep_result=0,
        on_startup=startup,
        on_shutdown=shutdown,
        handle_signals=True,
    )
    worker.run()


if __name__ == "__main__":
    main()
