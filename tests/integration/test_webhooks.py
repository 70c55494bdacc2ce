"""Webhooks, received by a loopback receiver and verified with the `standardwebhooks` package (an
independent implementation of the signature scheme): per job and per key, retries after
failures, no redirects followed, secret rotation, the delivery log and resend, SSRF refusals at
submit and at delivery, and the OpenAI-compatible header."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import httpx
import openai
import pytest
from sqlmodel import col, select
from standardwebhooks import Webhook, WebhookVerificationError

from app.platform.tables import Job, VirtualKey, WebhookDelivery
from app.webhooks import service as webhooks
from tests.builders import image_job
from tests.emulators.receiver import Receiver
from tests.infra import (
    Stack,
    base_settings,
    open_resources,
    running_stack,
    wait_for_job,
)

IMAGE = image_job("w")


@pytest.fixture(scope="module")
def webhook_stack(pg_url: str) -> Iterator[Stack]:
    settings = base_settings(pg_url, allow_private_urls=True, webhook_retry_base_seconds=0.2)
    with running_stack(settings, embedded_worker=True) as stack:
        yield stack


def _new_key(stack: Stack, **fields: Any) -> dict[str, Any]:
    with stack.admin() as admin:
        resp = admin.post("/admin/keys", json={"name": "hooks", **fields})
        assert resp.status_code == 201, resp.text
        created: dict[str, Any] = resp.json()
        return created


async def _wait_received(receiver: Receiver, count: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while len(receiver.received) < count:
        assert time.monotonic() < deadline, f"{len(receiver.received)} of {count} webhooks came"
        await asyncio.sleep(0.05)


async def _deliveries(client: httpx.AsyncClient, job_id: str, until: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while True:
        data: list[dict[str, Any]] = (await client.get(f"/v1/jobs/{job_id}/webhooks")).json()[
            "data"
        ]
        if data and all(d["status"] == until for d in data):
            return data
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.05)


async def test_a_job_webhook_is_signed_and_verifies(webhook_stack: Stack, hooks: Receiver) -> None:
    key = _new_key(webhook_stack)
    assert key["webhook_secret"].startswith("whsec_")
    async with webhook_stack.client(key["key"]) as client:
        body = {**IMAGE, "webhook": {"url": hooks.url + "/hook"}}
        job = (await client.post("/v1/jobs", json=body)).json()
        await wait_for_job(client, job["id"])
        await _wait_received(hooks, 1)
        log = await _deliveries(client, job["id"], "delivered")
    headers, raw = hooks.received[0]
    payload = Webhook(key["webhook_secret"]).verify(raw, headers)
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job["id"]
    assert headers["webhook-id"] == log[0]["id"]
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(raw, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(key["webhook_secret"]).verify(raw.replace(b"succeeded", b"failed"), headers)
    attempt = log[0]["attempts"][0]
    assert attempt["status_code"] == 200 and attempt["latency_ms"] >= 0


async def test_retries_after_failures_and_redirects_are_not_followed(
    webhook_stack: Stack, hooks: Receiver
) -> None:
    key = _new_key(webhook_stack)
    hooks.planned = [500, 302]  # the redirect is a failure too, and is not followed
    async with webhook_stack.client(key["key"]) as client:
        job = (
            await client.post("/v1/jobs", json={**IMAGE, "webhook": {"url": hooks.url + "/h"}})
        ).json()
        await wait_for_job(client, job["id"])
        log = await _deliveries(client, job["id"], "delivered")
    codes = [a["status_code"] for a in log[0]["attempts"]]
    assert codes == [500, 302, 200]
    assert hooks.paths == ["/h", "/h", "/h"]  # never the redirect's /elsewhere
    ids = {h["webhook-id"] for h, _ in hooks.received}
    assert ids == {log[0]["id"]}  # one message id across retries: receivers can deduplicate
    for headers, raw in hooks.received:
        Webhook(key["webhook_secret"]).verify(raw, headers)


async def test_key_webhook_rotation_and_resend(webhook_stack: Stack, hooks: Receiver) -> None:
    key = _new_key(webhook_stack, webhook_url=hooks.url + "/key", webhook_events=["job.succeeded"])
    old = key["webhook_secret"]
    with webhook_stack.admin() as admin:
        rotated = admin.post(f"/admin/keys/{key['id']}/webhook-secret").json()
    new = rotated["webhook_secret"]
    assert new != old and rotated["webhook_url"] == hooks.url + "/key"
    async with webhook_stack.client(key["key"]) as client:
        job = (await client.post("/v1/jobs", json=IMAGE)).json()
        await wait_for_job(client, job["id"])
        log = await _deliveries(client, job["id"], "delivered")
        await _wait_received(hooks, 1)
        headers, raw = hooks.received[0]
        # During the rotation both secrets sign: receivers on either one accept it.
        assert len(headers["webhook-signature"].split()) == 2
        Webhook(old).verify(raw, headers)
        Webhook(new).verify(raw, headers)
        resent = await client.post(f"/v1/jobs/{job['id']}/webhooks/{log[0]['id']}/resend")
        assert resent.status_code == 202
        await _wait_received(hooks, 2)
        again = await _deliveries(client, job["id"], "delivered")
        other = _new_key(webhook_stack)
        async with webhook_stack.client(other["key"]) as stranger:
            assert (await stranger.get(f"/v1/jobs/{job['id']}/webhooks")).status_code == 404
    assert len(again[0]["attempts"]) == 2
    assert hooks.received[1][0]["webhook-id"] == log[0]["id"]


async def test_openai_compatible_endpoints_take_the_webhook_header(
    webhook_stack: Stack, hooks: Receiver
) -> None:
    key = _new_key(webhook_stack)
    client = openai.OpenAI(
        base_url=f"{webhook_stack.url}/v1", api_key=key["key"], max_retries=0, timeout=60
    )
    video = await asyncio.to_thread(
        client.videos.create,
        model="local-video",
        prompt="tide",
        extra_headers={"Webhook-Url": hooks.url + "/v", "Webhook-Events": "job.succeeded"},
    )
    await _wait_received(hooks, 1, seconds=60)
    headers, raw = hooks.received[0]
    payload = Webhook(key["webhook_secret"]).verify(raw, headers)
    assert payload["data"]["id"] == video.id and payload["type"] == "job.succeeded"


async def test_private_webhook_urls_are_refused_at_submit_and_at_delivery(
    pg_url: str, hooks: Receiver
) -> None:
    settings = base_settings(pg_url)  # private addresses not allowed here
    with running_stack(settings, embedded_worker=False) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            for url in (
                hooks.url + "/x",  # http, loopback
                "https://127.0.0.1/x",
                "https://10.1.2.3/x",
                "https://[::1]/x",
                "https://localhost/x",  # a name that resolves to loopback
                "https://169.254.169.254/latest/meta-data",
            ):
                resp = await client.post("/v1/jobs", json={**IMAGE, "webhook": {"url": url}})
                assert resp.status_code == 400, (url, resp.text)
                assert resp.json()["error"]["param"] == "webhook.url"
            unknown = await client.post(
                "/v1/jobs",
                json={**IMAGE, "webhook": {"url": "https://example.com/h", "events": ["job.nope"]}},
            )
            assert unknown.status_code == 400
            assert (await client.get("/v1/jobs")).json()["data"] == []
        with stack.admin() as admin:
            refused = admin.post(
                "/admin/keys", json={"name": "x", "webhook_url": "https://127.0.0.1/h"}
            )
            assert refused.status_code == 400

        # A URL that passed at submit but resolves privately at delivery (DNS rebinding): the
        # worker checks again, records the refusal and sends nothing.
        async with open_resources(settings) as res:
            async with res.sessionmaker() as session:
                newest = select(VirtualKey).order_by(col(VirtualKey.created_at).desc())
                key = (await session.exec(newest)).first()
                assert key is not None
                job = Job(
                    id="job_rebind" + key.id[-8:],
                    key_id=key.id,
                    type="image",
                    model="local-image",
                    provider="local",
                    provider_model="local-image",
                    status="succeeded",
                    webhook={"url": hooks.url + "/rebound", "events": ["job.succeeded"]},
                )
                session.add(job)
                await session.flush()
                ids = await webhooks.schedule(session, job, key, "job.succeeded", {"id": job.id})
                await session.commit()
            before = len(hooks.received)
            status, retry_in = await webhooks.deliver(res, ids[0])
            async with res.sessionmaker() as session:
                delivery = await session.get(WebhookDelivery, ids[0])
            assert delivery is not None
            assert status == "pending" and retry_in is not None
            assert delivery.attempts[0]["error"].startswith("refused")
            assert len(hooks.received) == before
            # Allowed by the setting (as the other tests run), the same delivery goes through.
            async with open_resources(replace(settings, allow_private_urls=True)) as allowed:
                assert (await webhooks.deliver(allowed, ids[0]))[0] == "delivered"


async def test_a_webhook_that_keeps_failing_is_marked_failed(
    webhook_stack: Stack, hooks: Receiver
) -> None:
    settings = replace(webhook_stack.settings, webhook_retry_seconds=1)
    hooks.planned = [500] * 10
    key = _new_key(webhook_stack)
    async with webhook_stack.client(key["key"]) as client:
        job_id = (await client.post("/v1/jobs", json=IMAGE)).json()["id"]
        await wait_for_job(client, job_id)
    async with open_resources(settings) as res:
        async with res.sessionmaker() as session:
            job = await session.get(Job, job_id)
            owner = await session.get(VirtualKey, key["id"])
            assert job is not None and owner is not None
            job.webhook = {"url": hooks.url + "/down", "events": ["job.succeeded"]}
            ids = await webhooks.schedule(session, job, owner, "job.succeeded", {"id": job_id})
            await session.commit()
        first = await webhooks.deliver(res, ids[0])
        await asyncio.sleep(1.1)
        last = await webhooks.deliver(res, ids[0])
    assert first[0] == "pending" and first[1] is not None
    assert last == ("failed", None)


@contextlib.asynccontextmanager
async def _hostile_receiver(mode: str) -> AsyncIterator[str]:
    """A loopback receiver that answers 200 then streams without end (`flood`), or trickles its
    status line a byte a second (`trickle`); it stops by itself when the test ends."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if mode == "flood":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
                chunk = b"x" * 65536
                for _ in range(200_000):  # bounded: ~13 GB at most, cut off by the client
                    writer.write(chunk)
                    await writer.drain()
            else:
                for byte in b"HTTP/1.1 200 OK\r\n\r\n":
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(1.0)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        server.close()


async def test_a_hostile_receiver_costs_one_bounded_attempt(pg_url: str) -> None:
    settings = base_settings(
        pg_url,
        allow_private_urls=True,
        webhook_timeout_seconds=1.0,
        webhook_retry_base_seconds=0.2,
        webhook_max_attempts=2,
    )
    with running_stack(settings, embedded_worker=True) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            async with _hostile_receiver("flood") as url:
                job = (
                    await client.post("/v1/jobs", json={**IMAGE, "webhook": {"url": url}})
                ).json()
                started = time.monotonic()
                flooded = await _deliveries(client, job["id"], "delivered")
            # The status was all it took: none of the endless body was read.
            assert time.monotonic() - started < 10
            assert flooded[0]["attempts"][0]["status_code"] == 200
            async with _hostile_receiver("trickle") as url:
                job = (
                    await client.post("/v1/jobs", json={**IMAGE, "webhook": {"url": url}})
                ).json()
                trickled = await _deliveries(client, job["id"], "failed")
            attempts = trickled[0]["attempts"]
            # Bounded in count, and each attempt in time (not per byte received).
            assert [a["error"] for a in attempts] == ["timeout", "timeout"]
            assert all(a["latency_ms"] < 3000 for a in attempts)
            resend = await client.post(f"/v1/jobs/{job['id']}/webhooks/{trickled[0]['id']}/resend")
            assert resend.status_code == 202  # a failed one may be sent again ...
            again = await client.post(f"/v1/jobs/{job['id']}/webhooks/{trickled[0]['id']}/resend")
            assert again.status_code == 409  # ... but not beside its own pending retries
            assert again.json()["error"]["code"] == "webhook_pending"


async def test_deliveries_take_only_their_share_of_a_workers_slots(pg_url: str) -> None:
    """With the worker's share of delivery slots taken, a delivery gives its slot back at once
    (deferred, nothing sent, nothing recorded) instead of holding one generation jobs need."""
    from arq import Retry

    from workers.webhooks import WEBHOOK_SLOTS, deliver_webhook

    settings = base_settings(pg_url)
    async with open_resources(settings) as res:
        slots = asyncio.Semaphore(1)
        await slots.acquire()
        with pytest.raises(Retry):
            await deliver_webhook(
                {"resources": res, WEBHOOK_SLOTS: slots, "job_id": "whd_x"}, "whd_missing"
            )
