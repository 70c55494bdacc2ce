"""Redis past one plain address: over TLS (`rediss://`, a private CA) and through Sentinel. A
whole stack (API, embedded worker, event hub) runs a job end to end on each."""

from __future__ import annotations

from tests.builders import image_job
from tests.infra import base_settings, running_stack, wait_for_job
from tests.servers import sentinel_redis, tls_redis


async def _one_job(settings: object) -> None:
    from app.platform.settings import Settings

    assert isinstance(settings, Settings)
    with running_stack(settings, embedded_worker=True) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            job = (await client.post("/v1/jobs", json=image_job("topology"))).json()
            async with client.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
                events = [
                    line.removeprefix("event: ")
                    async for line in stream.aiter_lines()
                    if line.startswith("event:")
                ]
            assert events[-1] == "job.succeeded", events
            done = await wait_for_job(client, job["id"], timeout=30)
            assert done["status"] == "succeeded"
            ready = (await client.get("/readyz")).json()
            assert ready["checks"]["redis"] == "ok" and ready["workers_alive"] == 1


async def test_redis_over_tls_with_a_private_ca(sqlite_url: str) -> None:
    with tls_redis() as (url, ca):
        settings = base_settings(sqlite_url, redis_url=url, redis_tls_ca_file=str(ca))
        await _one_job(settings)


async def test_redis_through_sentinel(sqlite_url: str) -> None:
    with sentinel_redis() as (_master, sentinel):
        # The URL's address is not used: Sentinel names the master.
        settings = base_settings(
            sqlite_url,
            redis_url="redis://sentinel-names-the-master:1/0",
            redis_sentinels=sentinel,
            redis_sentinel_master="mymaster",
        )
        await _one_job(settings)
