"""Cost, end to end on PostgreSQL with a real worker: the estimate at submit, the actual charge
when the job ends (in the job, its webhook and the key's spend), a hard budget that concurrent
submits cannot overshoot, and the soft budget's warning sent once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.builders import image_job
from tests.emulators.receiver import Receiver
from tests.infra import Stack, base_settings, running_stack, sqlite_database, wait_for_job

PRICED = """
prices:
  local-image: {unit: image, checked: 2026-12-03, rates: {'*': 0.01}}
"""


@pytest.fixture
def priced_stack(pg_url: str, tmp_path: Path) -> Iterator[Stack]:
    models = tmp_path / "models.yaml"
    models.write_text(PRICED)
    settings = base_settings(
        pg_url, models_file=str(models), allow_private_urls=True, webhook_retry_base_seconds=0.2
    )
    with running_stack(settings, embedded_worker=True) as stack:
        yield stack


async def test_estimate_then_actual_in_the_job_webhook_and_spend(
    priced_stack: Stack, hooks: Receiver
) -> None:
    token = priced_stack.new_key("cost")
    async with priced_stack.client(token) as client:
        body = image_job("c", webhook={"url": hooks.url + "/cost"})
        body["input"]["n"] = 3
        accepted = (await client.post("/v1/jobs", json=body)).json()
        assert accepted["cost"] == {"currency": "usd", "estimate": 0.03, "actual": None}
        done = await wait_for_job(client, accepted["id"])
        assert done["status"] == "succeeded"
        assert done["cost"] == {"currency": "usd", "estimate": 0.03, "actual": 0.03}
        spend = (await client.get("/v1/usage")).json()["spend"]
        assert spend["today"] == spend["this_month"] == spend["lifetime"] == 0.03
        deadline = asyncio.get_running_loop().time() + 20
        while not hooks.received:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
    payload = orjson.loads(hooks.received[0][1])
    assert payload["data"]["cost"]["actual"] == 0.03
    with priced_stack.admin() as admin:
        listed = admin.get("/admin/usage").json()["data"]
    assert any(u["spend"]["lifetime"] == 0.03 for u in listed)


async def _submits_against_budget(
    database: str, models_dir: Path, budget: float
) -> tuple[list[httpx.Response], list[dict[str, Any]]]:
    """20 concurrent submits of a $0.01 job by a key with a hard budget of `budget`, with no
    worker (every accepted job holds its estimate): the answers, and the key's jobs after."""
    models = models_dir / "models.yaml"
    models.write_text(PRICED)
    settings = base_settings(database, models_file=str(models))
    with running_stack(settings, embedded_worker=False) as stack:
        with stack.admin() as admin:
            token = admin.post(
                "/admin/keys", json={"name": "budget", "max_spend_per_month": budget}
            ).json()["key"]
        async with stack.client(token) as client:
            answers = await asyncio.gather(
                *(client.post("/v1/jobs", json=image_job(f"b{i}")) for i in range(20))
            )
            kept = (await client.get("/v1/jobs?limit=100")).json()["data"]
    return list(answers), kept


async def test_a_hard_budget_is_never_overshot_by_concurrent_submits(
    pg_url: str, tmp_path: Path
) -> None:
    answers, _ = await _submits_against_budget(pg_url, tmp_path, 0.05)
    statuses = [a.status_code for a in answers]
    assert statuses.count(202) == 5 and statuses.count(429) == 15
    refused = next(a for a in answers if a.status_code == 429).json()["error"]
    assert refused["code"] == "budget_exceeded" and "$0.05" in refused["message"]


async def test_the_soft_budget_warns_once(priced_stack: Stack, hooks: Receiver) -> None:
    with priced_stack.admin() as admin:
        created = admin.post(
            "/admin/keys",
            json={
                "name": "soft",
                "soft_spend_per_month": 0.02,
                "max_spend_per_month": 1,
                "webhook_url": hooks.url + "/key",
            },
        ).json()
    async with priced_stack.client(created["key"]) as client:
        for i in range(4):  # $0.01 each: the second crosses $0.02, the rest are past it
            job = (await client.post("/v1/jobs", json=image_job(f"s{i}"))).json()
            await wait_for_job(client, job["id"])
        await asyncio.sleep(1.0)  # any second warning would have been sent by now
        usage = (await client.get("/v1/usage")).json()["spend"]
    warnings = [orjson.loads(raw) for _, raw in hooks.received if b"key.budget_warning" in raw]
    assert len(warnings) == 1
    data = warnings[0]["data"]
    assert data["key_id"] == created["id"] and data["soft_budget"] == 0.02
    assert data["spend"] >= 0.02
    assert usage["this_month"] == 0.04 and usage["soft_spend_per_month"] == 0.02


@pytest.fixture
def own_sqlite(tmp_path: Path) -> str:
    return sqlite_database(tmp_path)


async def test_a_budget_for_one_job_holds_on_sqlite_too(own_sqlite: str, tmp_path: Path) -> None:
    """SQLite, the default, has no row locks: 20 concurrent submits against a budget for one job
    must still be decided one after another (each transaction begins IMMEDIATE), so exactly one
    is accepted."""
    answers, kept = await _submits_against_budget(own_sqlite, tmp_path, 0.01)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [202] + [429] * 19, [
        a.text for a in answers if a.status_code not in (202, 429)
    ]
    assert len(kept) == 1
