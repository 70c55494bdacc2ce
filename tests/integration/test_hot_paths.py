"""What the hot paths stand on: rows built without the ORM equal the ORM's, the driver connection's
errors are classified as the ORM's are, and the key cache: a change to a key takes effect at
once, on this API process and (through the Redis notice) on every other. The one-statement job
store keeps the ORM store's contract: tests/integration/test_job_store.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from app.keys import service as keys
from app.platform.events import EventBus, EventHub
from app.platform.ids import new_id
from app.platform.key_cache import KeyCache
from app.platform.redis_keys import keys_channel
from app.platform.resources import Resources
from app.platform.tables import Job, VirtualKey, transient_job, utcnow
from app.platform.vocabulary import JobType
from tests.builders import image_job
from tests.infra import ADMIN_KEY, REDIS_URL, Stack, base_settings, drop_namespace, open_resources

IMAGE = image_job("hot")


@pytest.fixture
async def res(pg_url: str) -> AsyncIterator[Resources]:
    settings = base_settings(pg_url)
    async with open_resources(settings) as resources:
        yield resources
    drop_namespace(settings.redis_namespace)


def test_transient_job_is_the_job_the_orm_builds() -> None:
    now = utcnow()
    values: dict[str, Any] = {
        "id": new_id("job"),
        "key_id": "key_1",
        "type": JobType.IMAGE,
        "model": "m",
        "provider": "local",
        "provider_model": "m",
        "targets": ["m"],
        "input": {"prompt": "x"},
        "created_at": now,
    }
    fast, slow = transient_job(**values), Job(**values)
    assert fast.model_dump() == slow.model_dump()
    fast.targets.append("n")  # defaults are not shared between rows
    assert transient_job(**{**values, "targets": []}).targets == []
    with pytest.raises(TypeError):
        transient_job(nonsense=1)


async def test_a_changed_key_takes_effect_at_once(api_only_stack: Stack) -> None:
    stack = api_only_stack  # no worker: the job stays queued
    token = stack.new_key()
    async with stack.client(token) as client, stack.client(ADMIN_KEY) as admin:
        assert (await client.post("/v1/jobs", json=IMAGE)).status_code == 202  # now cached
        key_id = (await client.get("/v1/usage")).json()["key_id"]
        patched = await admin.patch(f"/admin/keys/{key_id}", json={"max_concurrent_jobs": 1})
        assert patched.status_code == 200, patched.text
        refused = await client.post("/v1/jobs", json=IMAGE)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert (await admin.delete(f"/admin/keys/{key_id}")).status_code == 200
        gone = await client.get("/v1/jobs")
        assert gone.status_code == 401 and gone.json()["error"]["code"] == "invalid_api_key"


async def test_key_cache_drops_a_key_on_another_processs_notice(pg_url: str) -> None:
    """The notice path alone: a cache fed by an event hub on real Redis, as in each API process."""
    settings = base_settings(pg_url)
    redis = Redis.from_url(REDIS_URL)
    cache = KeyCache(60)
    bus = EventBus(redis, settings.redis_namespace)
    hub = EventHub(redis, bus, listeners={keys_channel(settings.redis_namespace): cache.on_notice})
    cache.live = hub.connected.is_set
    key = VirtualKey(id="key_a", name="a", prefix="mg_a", key_hash="h")
    try:
        generation = cache.generation
        cache.put("h", key, generation)
        assert cache.get("h") is None  # not before the hub listens: a notice could be missed
        await hub.start()
        await asyncio.wait_for(hub.connected.wait(), 5)
        cache.put("h", key, cache.generation)
        assert cache.get("h") is key
        await keys.announce_change(redis, settings.redis_namespace, "key_a")
        for _ in range(100):
            if cache.get("h") is None:
                break
            await asyncio.sleep(0.02)
        assert cache.get("h") is None
        # A row read before a notice is not cached after it.
        stale = cache.generation
        cache.on_notice(b"key_b")
        cache.put("h", key, stale)
        assert cache.get("h") is None
    finally:
        await hub.stop()
        await redis.aclose()


async def test_driver_connection_errors_are_outages_or_the_statements_fault(
    res: Resources,
) -> None:
    """The hot paths' errors are classified as the ORM's are: a server that cannot be reached is
    an outage (the worker retries, the API answers 503), a bad value is the statement's fault."""
    from app.platform.database import create_engine, driver_connection
    from app.platform.errors import unavailable_part
    from tests.builders import free_port

    nowhere = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x", timeout=1)
    try:
        with pytest.raises(Exception) as refused:
            async with driver_connection(nowhere):
                pass
        assert unavailable_part(refused.value) == "database"
    finally:
        await nowhere.dispose()
    with pytest.raises(Exception) as bad:
        async with driver_connection(res.engine) as conn:
            await conn.execute("SELECT $1::int", "not a number")
    assert unavailable_part(bad.value) is None


async def test_a_statement_cut_off_midway_does_not_poison_the_pool(pg_url: str) -> None:
    """A connection whose statement was cut off (a task cancelled by a lost lease or a shutdown)
    or whose protocol went astray (the PostgreSQL stop test once met asyncpg's "another operation
    is in progress") is never handed to the next caller, and the latter is an outage (the worker
    retries the job), not an unknown error that fails it."""
    from app.platform.database import create_engine, driver_connection
    from app.platform.errors import unavailable_part

    engine = create_engine(pg_url, pool_size=1)  # the next caller gets the same connection
    try:

        async def slow() -> None:
            async with driver_connection(engine) as conn:
                await conn.execute("SELECT pg_sleep(5)")

        task = asyncio.create_task(slow())
        await asyncio.sleep(0.3)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        async with driver_connection(engine) as conn:
            assert await conn.fetchval("SELECT 1") == 1
        with pytest.raises(Exception) as astray:
            async with driver_connection(engine):
                raise asyncpg.InternalClientError("another operation (2) is in progress")
        assert unavailable_part(astray.value) == "database"
        async with driver_connection(engine) as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await engine.dispose()
