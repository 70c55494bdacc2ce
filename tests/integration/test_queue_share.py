"""One tenant cannot fill the queue for all: each key holds at most its share of it (the default,
or its own as the admin sets it), whether it floods with single jobs or batches, while another
key's submit is still taken; and an input fetched by URL has a deadline for the whole fetch, so a
server trickling bytes cannot hold a worker slot."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from app.platform.errors import InvalidRequestError
from app.platform.settings import Settings
from app.platform.tenant_urls import fetch_input, open_tenant_client
from tests.builders import image_job, png
from tests.infra import base_settings, running_stack


async def test_a_key_holds_its_share_of_the_queue_and_no_more(pg_url: str) -> None:
    settings = base_settings(pg_url, max_queued_per_key=3)
    with running_stack(settings, embedded_worker=False) as stack:
        flooder, other = stack.new_key("flooder"), stack.new_key("other")
        async with stack.client(flooder) as client, stack.client(other) as second:
            taken = [await client.post("/v1/jobs", json=image_job(f"f{i}")) for i in range(3)]
            refused = await client.post("/v1/jobs", json=image_job("f3"))
            batch = await client.post("/v1/batches", json=[{**image_job("b"), "custom_id": "b"}])
            still = await second.post("/v1/jobs", json=image_job("o"))
            over = [{**image_job(f"o{i}"), "custom_id": f"o{i}"} for i in range(3)]
            too_big = await second.post("/v1/batches", json=over)  # 1 queued + 3 > 3
            key_id = (await client.get("/v1/usage")).json()["key_id"]
            with stack.admin() as admin:
                patched = admin.patch(f"/admin/keys/{key_id}", json={"max_queued_jobs": 5})
            raised = await client.post("/v1/jobs", json=image_job("f4"))
            jobs = (await client.get("/v1/jobs?limit=100")).json()["data"]
    assert all(answer.status_code == 202 for answer in taken)
    for answer in (refused, batch, too_big):
        assert answer.status_code == 429, answer.text
        assert answer.json()["error"]["code"] == "queue_share_exceeded"
        assert answer.headers["retry-after"] == "30"
    assert "its share is 3" in refused.json()["error"]["message"]
    assert still.status_code == 202, still.text  # another key is still taken
    assert patched.json()["max_queued_jobs"] == 5
    assert raised.status_code == 202, raised.text
    assert len(jobs) == 4  # nothing refused was kept


@pytest.fixture
async def trickler() -> Any:
    """A loopback server that answers 200 with a PNG's header, then a byte every 0.1 s."""
    image = png()

    async def serve(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(image)}\r\n"
        writer.write(header.encode() + b"\r\n")
        try:
            for index in range(len(image)):
                writer.write(image[index : index + 1])
                await writer.drain()
                await asyncio.sleep(0.1)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/slow.png"
    server.close()


async def test_an_input_url_has_a_deadline_for_the_whole_fetch(trickler: str) -> None:
    """Every read answers within httpx's timeout, so only a deadline for the whole fetch ends
    it: at MEDIAGATE_INPUT_URL_TIMEOUT_SECONDS, as a failed fetch."""
    settings = replace(Settings(), allow_private_urls=True, input_url_timeout_seconds=1.0)
    async with open_tenant_client(allow_private=True, timeout=1.0) as http:
        started = time.monotonic()
        with pytest.raises(InvalidRequestError) as refused:
            await fetch_input(http, settings, trickler, "input.image")
        took = time.monotonic() - started
    assert "could not be fetched (timeout)" in refused.value.message
    assert took < 3, took
