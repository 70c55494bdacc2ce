"""Media lifecycle against real PostgreSQL and the moto S3 server: usage, quotas, retention,
deletion of media, jobs and keys, reconciliation, uploads, byte ranges and URL inputs."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image
from sqlmodel import col, update

from app.media import lifecycle
from app.media.service import signed_path
from app.media.usage import usage_of
from app.platform.resources import Resources
from app.platform.tables import MediaObject, VirtualKey, utcnow
from storage.base import MediaStore
from tests.builders import image_job, png
from tests.infra import ROOT, Stack, open_resources, settings_env, wait_for_job
from tests.media_checks import png_size

IMAGE = image_job("l")


@pytest.fixture
async def res(pg_s3_stack: Stack) -> AsyncIterator[Resources]:
    """The stack's database, Redis and bucket, opened from the test."""
    async with open_resources(pg_s3_stack.settings) as resources:
        yield resources


async def _objects(store: MediaStore, prefix: str) -> dict[str, int]:
    return {info.key: info.size async for info in store.list_objects(prefix)}


def _admin_key(stack: Stack, **limits: Any) -> tuple[str, str]:
    with stack.admin() as admin:
        resp = admin.post("/admin/keys", json={"name": "lifecycle", **limits})
        assert resp.status_code == 201, resp.text
        return resp.json()["id"], resp.json()["key"]


async def _job(client: httpx.AsyncClient, body: dict[str, Any] = IMAGE) -> dict[str, Any]:
    resp = await client.post("/v1/jobs", json=body)
    assert resp.status_code == 202, resp.text
    return await wait_for_job(client, resp.json()["id"])


async def test_usage_counts_outputs_and_uploads(pg_s3_stack: Stack, res: Resources) -> None:
    key_id, key = _admin_key(pg_s3_stack)
    async with pg_s3_stack.client(key) as client:
        job = await _job(client, {**IMAGE, "input": {**IMAGE["input"], "n": 2}})
        upload = await client.post(
            "/v1/media", files={"file": ("in.png", png(colour=(10, 20, 200)), "image/png")}
        )
        assert upload.status_code == 201, upload.text
        assert upload.json()["content_type"] == "image/png" and upload.json()["kind"] == "image"
        usage = (await client.get("/v1/usage")).json()
    stored = await _objects(res.store, f"{key_id}/")
    assert usage["key_id"] == key_id and usage["objects"] == 3 == len(stored)
    assert usage["bytes"] == sum(stored.values())
    assert usage["by_type"]["image"]["objects_written"] == 3
    assert sum(o["bytes"] for o in job["outputs"]) + upload.json()["bytes"] == usage["bytes"]
    with pg_s3_stack.admin() as admin:
        same = admin.get(f"/admin/keys/{key_id}/usage").json()
        ranked = admin.get("/admin/usage", params={"order": "desc"}).json()["data"]
    assert same["bytes"] == usage["bytes"]
    byte_counts = [entry["bytes"] for entry in ranked]
    assert byte_counts == sorted(byte_counts, reverse=True)


async def test_quotas(pg_s3_stack: Stack, res: Resources) -> None:
    # A job that would cross the byte quota fails and stores nothing.
    key_id, key = _admin_key(pg_s3_stack, max_bytes=500)
    async with pg_s3_stack.client(key) as client:
        job = await _job(client)
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "storage_quota_exceeded" and job["outputs"] == []
        assert (await client.get("/v1/usage")).json()["bytes"] == 0
    assert await _objects(res.store, f"{key_id}/") == {}

    # Once at the quota, a submit is refused with the limit and the use in the message.
    with pg_s3_stack.admin() as admin:
        assert admin.patch(f"/admin/keys/{key_id}", json={"max_bytes": None}).status_code == 200
    async with pg_s3_stack.client(key) as client:
        assert (await _job(client))["status"] == "succeeded"
        used = (await client.get("/v1/usage")).json()["bytes"]
        with pg_s3_stack.admin() as admin:
            admin.patch(f"/admin/keys/{key_id}", json={"max_bytes": used, "max_objects": 5})
        refused = await client.post("/v1/jobs", json=IMAGE)
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "storage_quota_exceeded" and str(used) in error["message"]
        upload = await client.post(
            "/v1/media", files={"file": ("in.png", png(colour=(10, 20, 200)), "image/png")}
        )
        assert upload.status_code == 429
        listed = (await client.get("/v1/jobs")).json()["data"]
        assert len(listed) == 2  # the refused submit changed nothing


async def test_concurrency_limit(api_only_stack: Stack) -> None:
    with api_only_stack.admin() as admin:
        key = admin.post("/admin/keys", json={"name": "c", "max_concurrent_jobs": 2}).json()["key"]
    async with api_only_stack.client(key) as client:
        for _ in range(2):
            accepted = await client.post("/v1/jobs", json=IMAGE)
            assert accepted.status_code == 202
            assert accepted.headers["Retry-After"] == "2"  # when a poller should look again
        third = await client.post("/v1/jobs", json=IMAGE)
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "concurrency_limit_exceeded"
    assert "has 2 jobs queued or running, its limit is 2" in third.json()["error"]["message"]
    assert third.headers["Retry-After"] == "5"


async def test_retention_sweep(pg_s3_stack: Stack, res: Resources) -> None:
    key_id, key = _admin_key(pg_s3_stack, retention_days=7)
    async with pg_s3_stack.client(key) as client:
        job = await _job(client)
        media_id = job["outputs"][0]["id"]
        info = (await client.get(f"/v1/media/{media_id}", follow_redirects=False)).status_code
        assert info == 302
        async with res.sessionmaker() as session:
            media = await session.get(MediaObject, media_id)
            assert media is not None and media.expires_at is not None
            assert timedelta(days=6) < media.expires_at - utcnow() <= timedelta(days=7)
            await session.exec(
                update(MediaObject)
                .where(col(MediaObject.id) == media_id)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
            await session.commit()
        # Expired, before the sweep: 410 for the owner, 404 for a link or another key.
        gone = await client.get(f"/v1/media/{media_id}")
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "media_expired"
        async with httpx.AsyncClient() as anonymous:
            assert (await anonymous.get(job["outputs"][0]["url"])).status_code == 404
        assert await lifecycle.sweep_expired(res) >= 1
        assert (await client.get(f"/v1/media/{media_id}")).status_code == 410
        usage = (await client.get("/v1/usage")).json()
    assert usage["bytes"] == 0 and usage["by_type"]["image"]["objects_deleted"] == 1
    assert await _objects(res.store, f"{key_id}/") == {}


async def test_delete_media_and_jobs(pg_s3_stack: Stack, res: Resources) -> None:
    key_id, key = _admin_key(pg_s3_stack)
    other = pg_s3_stack.new_key()
    async with pg_s3_stack.client(key) as client, pg_s3_stack.client(other) as stranger:
        first = await _job(client)
        second = await _job(client, {**IMAGE, "input": {**IMAGE["input"], "n": 2}})
        media_id = first["outputs"][0]["id"]
        assert (await stranger.delete(f"/v1/media/{media_id}")).status_code == 404
        assert (await stranger.delete(f"/v1/jobs/{second['id']}")).status_code == 404
        assert (await client.delete(f"/v1/media/{media_id}")).json()["deleted"] is True
        assert (await client.delete(f"/v1/media/{media_id}")).status_code == 404
        assert (await client.delete(f"/v1/jobs/{second['id']}")).json()["deleted"] is True
        assert (await client.get(f"/v1/jobs/{second['id']}")).status_code == 404
        usage = (await client.get("/v1/usage")).json()
    assert usage["bytes"] == 0 and usage["objects"] == 0
    assert await _objects(res.store, f"{key_id}/") == {}


async def test_deleting_a_key_removes_all_its_media_and_no_other(
    pg_s3_stack: Stack, res: Resources
) -> None:
    doomed_id, doomed = _admin_key(pg_s3_stack)
    kept_id, kept = _admin_key(pg_s3_stack)
    for token in (doomed, kept):
        async with pg_s3_stack.client(token) as client:
            await _job(client, {**IMAGE, "input": {**IMAGE["input"], "n": 3}})
            await client.post(
                "/v1/media", files={"file": ("in.png", png(colour=(10, 20, 200)), "image/png")}
            )
    kept_before = await _objects(res.store, f"{kept_id}/")
    with pg_s3_stack.admin() as admin:
        deleted = admin.delete(f"/admin/keys/{doomed_id}").json()
        assert deleted["revoked_at"] and deleted["purge"]["status"] in (
            "pending",
            "running",
            "done",
        )
        async with pg_s3_stack.client(doomed) as client:
            assert (await client.get("/v1/usage")).status_code == 401  # revoked at once
        for _ in range(200):
            key = admin.get(f"/admin/keys/{doomed_id}").json()
            if key["purge"]["status"] == "done":
                break
            await asyncio.sleep(0.05)
        usage = admin.get(f"/admin/keys/{doomed_id}/usage").json()
    assert key["purge"] == {
        "status": "done",
        "deleted_objects": 4,
        "finished_at": key["purge"]["finished_at"],
    }
    assert usage["bytes"] == 0 and usage["objects"] == 0
    assert await _objects(res.store, f"{doomed_id}/") == {}
    assert await _objects(res.store, f"{kept_id}/") == kept_before


async def test_purge_resumes_after_a_crash(pg_s3_stack: Stack, res: Resources) -> None:
    key_id, key = _admin_key(pg_s3_stack)
    async with pg_s3_stack.client(key) as client:
        await _job(client, {**IMAGE, "input": {**IMAGE["input"], "n": 4}})
    async with res.sessionmaker() as session:
        await lifecycle.delete_key(session, key_id)
        await session.commit()

    real_delete_many = res.store.delete_many
    calls = 0

    async def dies_after_first_batch(keys: list[str]) -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("worker died")
        return await real_delete_many(keys)

    res.store.delete_many = dies_after_first_batch  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await lifecycle.purge_key(res, key_id, batch=2)
    res.store.delete_many = real_delete_many  # type: ignore[method-assign]
    # Half done: rows of the second batch are marked but their objects remain (orphans).
    assert len(await _objects(res.store, f"{key_id}/")) == 2
    assert await lifecycle.purge_key(res, key_id, batch=2) == 0
    assert await _objects(res.store, f"{key_id}/") == {}
    async with res.sessionmaker() as session:
        row = await session.get(VirtualKey, key_id)
        assert row is not None and row.purge_status == "done"
        assert (await usage_of(session, row))["bytes"] == 0


async def test_reconcile_finds_and_removes_orphans(pg_s3_stack: Stack, res: Resources) -> None:
    key_id, key = _admin_key(pg_s3_stack)
    async with pg_s3_stack.client(key) as client:
        job = await _job(client, {**IMAGE, "input": {**IMAGE["input"], "n": 2}})

    # An upload that crashed before its row was committed, and a row whose object vanished.
    async def one(data: bytes) -> AsyncIterator[bytes]:
        yield data

    orphan = f"{key_id}/job_crashed/0.png"
    await res.store.put(orphan, one(png(colour=(10, 20, 200))), content_type="image/png")
    # Objects of whatever else shares the bucket, old enough to look like orphans: not ours.
    foreign = [f"other-app-{key_id}/report.png", f"key_notours{key_id[4:]}/job_x/0.png"]
    for name in foreign:
        await res.store.put(name, one(png(colour=(10, 20, 200))), content_type="image/png")
    async with res.sessionmaker() as session:
        gone = await session.get(MediaObject, job["outputs"][1]["id"])
        assert gone is not None
        await res.store.delete(gone.storage_key)

    env = {
        **os.environ,
        **settings_env(pg_s3_stack.settings),
        "MEDIAGATE_RECONCILE_GRACE_SECONDS": "0",
    }
    report = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "storage", "reconcile"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    counts = dict(line.split("\t") for line in report.stdout.splitlines())
    assert int(counts["orphans"]) >= 1 and int(counts["missing"]) >= 1
    assert counts["orphans_deleted"] == "0"  # a report only, without --fix
    assert orphan in await _objects(res.store, f"{key_id}/")
    fixed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "storage", "reconcile", "--fix"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    counts = dict(line.split("\t") for line in fixed.stdout.splitlines())
    assert int(counts["orphans_deleted"]) >= 1 and int(counts["missing_marked"]) >= 1
    assert orphan not in await _objects(res.store, f"{key_id}/")
    for name in foreign:
        assert name in await _objects(res.store, name.split("/")[0] + "/")
        await res.store.delete(name)
    async with pg_s3_stack.client(key) as client:
        usage = (await client.get("/v1/usage")).json()
    assert usage["objects"] == 1 and usage["bytes"] == job["outputs"][0]["bytes"]


async def test_uploads_as_inputs_ranges_and_urls(
    upstream_stack: Stack, emu: dict[str, Any]
) -> None:
    key = upstream_stack.new_key()
    async with upstream_stack.client(key) as client:
        upload = (
            await client.post(
                "/v1/media", files={"file": ("a.png", png(colour=(10, 20, 200)), "image/png")}
            )
        ).json()
        job = await _job(
            client,
            {**IMAGE, "input": {**IMAGE["input"], "image": {"media_id": upload["id"]}}},
        )
        assert job["status"] == "succeeded", job
        blue = Image.open(io.BytesIO((await client.get(job["outputs"][0]["url"])).content))
        red, _, b = blue.convert("RGB").getpixel((2, 2))  # type: ignore[misc]
        assert b > red  # the upload's blue shows through

        # Byte ranges on the memory store, so players can seek.
        whole = (await client.get(f"/v1/media/{upload['id']}")).content
        part = await client.get(f"/v1/media/{upload['id']}", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == whole[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(whole)}"
        tail = await client.get(f"/v1/media/{upload['id']}", headers={"Range": "bytes=-5"})
        assert tail.content == whole[-5:]
        bad = await client.get(f"/v1/media/{upload['id']}", headers={"Range": "bytes=99999-"})
        assert bad.status_code == 416

        # An input by URL, fetched by the worker (this stack allows loopback URLs).
        url = emu["openai"].add_file(png(colour=(200, 10, 10)), "image/png")
        by_url = await _job(client, {**IMAGE, "input": {**IMAGE["input"], "image": {"url": url}}})
        assert by_url["status"] == "succeeded", by_url
        assert png_size((await client.get(by_url["outputs"][0]["url"])).content) == (256, 256)
        missing = await _job(
            client, {**IMAGE, "input": {**IMAGE["input"], "image": {"url": url + "-nope"}}}
        )
        assert missing["status"] == "failed" and missing["error"]["code"] == "invalid_request"

        # Someone else's media cannot be an input.
        other = upstream_stack.new_key()
        async with upstream_stack.client(other) as stranger:
            refused = await stranger.post(
                "/v1/jobs",
                json={**IMAGE, "input": {**IMAGE["input"], "image": {"media_id": upload["id"]}}},
            )
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "input.image"


async def test_signed_links_end_with_their_key_and_their_own_expiry(
    pg_s3_stack: Stack, res: Resources
) -> None:
    """A direct (presigned) URL never outlives the signed link it came from, and a signed link
    stops working once its key is revoked or deleted, before the purge has removed anything."""
    key_id, key = _admin_key(pg_s3_stack)
    async with pg_s3_stack.client(key) as client:
        job = await _job(client)
    media_id = job["outputs"][0]["id"]
    secret = pg_s3_stack.settings.signing_secret
    short = pg_s3_stack.url + signed_path(secret, media_id, int(time.time()) + 100)
    async with httpx.AsyncClient() as anyone:
        redirect = await anyone.get(short)
        assert redirect.status_code == 302
        presigned = parse_qs(urlsplit(redirect.headers["location"]).query)
        assert 1 <= int(presigned["X-Amz-Expires"][0]) <= 100
        # Revoked (the CLI's revoke; no purge runs): the same link is gone at once.
        async with res.sessionmaker() as session:
            await session.exec(
                update(VirtualKey).where(col(VirtualKey.id) == key_id).values(revoked_at=utcnow())
            )
            await session.commit()
        assert (await anyone.get(short)).status_code == 404
        assert (await anyone.get(job["outputs"][0]["url"])).status_code == 404
