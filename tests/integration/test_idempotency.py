"""Idempotent submits: `Idempotency-Key` on the native and the OpenAI-compatible endpoints (the
latter driven by the official SDK), concurrent duplicates, reuse with another body, expiry."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any

import openai
import pytest
from sqlmodel import col, select, update

from app.platform.tables import IdempotencyKey, Job, utcnow
from tests.builders import image_job, openai_client, png
from tests.infra import Stack, open_resources

IMAGE = image_job("kite")


def _idem() -> dict[str, str]:
    return {"Idempotency-Key": f"idem-{secrets.token_hex(8)}"}


async def _job_count(stack: Stack, token: str) -> int:
    async with stack.client(token) as client:
        return len((await client.get("/v1/jobs", params={"limit": 100})).json()["data"])


async def test_same_key_same_body_returns_the_same_job(api_only_stack: Stack) -> None:
    token = api_only_stack.new_key()
    headers = _idem()
    async with api_only_stack.client(token) as client:
        first = await client.post("/v1/jobs", json=IMAGE, headers=headers)
        # Same body with keys in another order and other spacing: the same request.
        again = await client.post(
            "/v1/jobs",
            content=b'{"input": {"size": "256x256", "prompt": "kite"},  "model": "local-image",'
            b' "type": "image"}',
            headers={**headers, "Content-Type": "application/json"},
        )
        assert first.status_code == again.status_code == 202, again.text
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["location"] == f"/v1/jobs/{first.json()['id']}"

        other_body = await client.post(
            "/v1/jobs", json={**IMAGE, "input": {"prompt": "another"}}, headers=headers
        )
        assert other_body.status_code == 409
        error = other_body.json()["error"]
        assert error["code"] == "idempotency_key_reused" and error["param"] == "Idempotency-Key"

        # Without the header, every submit is a new job.
        plain = [await client.post("/v1/jobs", json=IMAGE) for _ in range(2)]
        assert plain[0].json()["id"] != plain[1].json()["id"]

        too_long = await client.post("/v1/jobs", json=IMAGE, headers={"Idempotency-Key": "x" * 256})
        assert too_long.status_code == 400
        assert too_long.json()["error"]["code"] == "invalid_idempotency_key"
    assert await _job_count(api_only_stack, token) == 3

    # Keys are per virtual key: another key's same Idempotency-Key is its own.
    other = api_only_stack.new_key()
    async with api_only_stack.client(other) as client:
        theirs = await client.post("/v1/jobs", json=IMAGE, headers=headers)
    assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]


async def test_concurrent_duplicates_create_exactly_one_job(api_only_stack: Stack) -> None:
    token = api_only_stack.new_key()
    async with api_only_stack.client(token) as client:
        for _ in range(3):  # a race shows only sometimes: try it more than once
            headers = _idem()
            answers = await asyncio.gather(
                *(client.post("/v1/jobs", json=IMAGE, headers=headers) for _ in range(30))
            )
            assert {resp.status_code for resp in answers} == {202}, [r.text for r in answers]
            assert len({resp.json()["id"] for resp in answers}) == 1
    assert await _job_count(api_only_stack, token) == 3


async def test_an_expired_idempotency_key_starts_afresh(api_only_stack: Stack) -> None:
    token = api_only_stack.new_key()
    headers = _idem()
    async with api_only_stack.client(token) as client:
        first = (await client.post("/v1/jobs", json=IMAGE, headers=headers)).json()["id"]
        async with open_resources(api_only_stack.settings) as res, res.sessionmaker() as session:
            await session.exec(
                update(IdempotencyKey)
                .where(col(IdempotencyKey.idempotency_key) == headers["Idempotency-Key"])
                .values(created_at=utcnow() - timedelta(hours=25))
            )
            await session.commit()
        second = (await client.post("/v1/jobs", json=IMAGE, headers=headers)).json()["id"]
    assert second != first


async def test_openai_sdk_retries_with_the_same_idempotency_key(pg_s3_stack: Stack) -> None:
    token = pg_s3_stack.new_key()
    client = openai_client(pg_s3_stack, token)

    def generate(headers: dict[str, str], prompt: str = "a kite") -> Any:
        return client.images.generate(
            model="local-image", prompt=prompt, size="256x256", extra_headers=headers
        )

    headers = _idem()
    first, again = (
        await asyncio.to_thread(generate, headers),
        await asyncio.to_thread(generate, headers),
    )
    assert first.created == again.created
    assert [d.url.split("?")[0] for d in first.data] == [d.url.split("?")[0] for d in again.data]
    with pytest.raises(openai.ConflictError) as reused:
        await asyncio.to_thread(generate, headers, "a different kite")
    assert reused.value.code == "idempotency_key_reused"

    # Videos: the same video id; edits: the upload is not stored twice.
    video_headers = _idem()
    videos = [
        await asyncio.to_thread(
            client.videos.create, model="local-video", prompt="waves", extra_headers=video_headers
        )
        for _ in range(2)
    ]
    assert videos[0].id == videos[1].id
    edit_headers = _idem()
    async with pg_s3_stack.client(token) as http:
        before = (await http.get("/v1/usage")).json()["by_type"]["image"]["objects_written"]
        for _ in range(2):
            await asyncio.to_thread(
                client.images.edit,
                model="local-image",
                image=("in.png", png(colour=(20, 90, 200)), "image/png"),
                prompt="brighter",
                extra_headers=edit_headers,
            )
        after = (await http.get("/v1/usage")).json()["by_type"]["image"]["objects_written"]
    assert after - before == 2  # one upload and one output, not two of each
    async with open_resources(pg_s3_stack.settings) as res, res.sessionmaker() as session:
        jobs = (
            await session.exec(select(Job).where(Job.id == videos[0].id, Job.type == "video"))
        ).all()
    assert len(jobs) == 1
