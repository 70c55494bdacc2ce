"""PostgreSQL behind a real PgBouncer in transaction mode (Debian's package, started here with
few server connections for many clients): with `MEDIAGATE_DATABASE_PGBOUNCER`, the API and two
workers run many jobs at once, and every one ends well."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.builders import image_job
from tests.infra import (
    base_settings,
    postgres_database,
    running_stack,
    running_workers,
    wait_for_job,
)
from tests.servers import PgBouncer, pgbouncer


@pytest.fixture
def bounced() -> Iterator[tuple[str, PgBouncer]]:
    """A fresh migrated database (migrations run against PostgreSQL itself), and PgBouncer."""
    with postgres_database() as direct, pgbouncer() as bouncer:
        yield direct.rsplit("/", 1)[1], bouncer


async def test_jobs_run_through_pgbouncer_in_transaction_mode(
    bounced: tuple[str, PgBouncer],
) -> None:
    database, bouncer = bounced
    settings = base_settings(bouncer.url(database), database_pgbouncer=True, database_pool_size=8)
    with running_stack(settings, embedded_worker=False) as stack, running_workers(settings, 2):
        token = stack.new_key()
        async with stack.client(token) as client:

            async def one(n: int) -> str:
                answer = await client.post("/v1/jobs", json=image_job(f"bounced {n}"))
                assert answer.status_code == 202, answer.text
                job_id: str = answer.json()["id"]
                return job_id

            ids = await asyncio.gather(*(one(n) for n in range(24)))
            done = await asyncio.gather(*(wait_for_job(client, i, timeout=90) for i in ids))
            assert {d["status"] for d in done} == {"succeeded"}, bouncer.log()
            listed = (await client.get("/v1/jobs", params={"limit": 100})).json()["data"]
            assert {j["id"] for j in listed} == set(ids)
            usage = (await client.get("/v1/usage")).json()
            assert usage["objects"] == len(ids)
