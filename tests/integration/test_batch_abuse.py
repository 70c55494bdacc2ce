"""A hostile tenant's batches: a body past what 1,000 jobs need is refused as it streams in, a
process reads only a few batch bodies at once, no malformed line or input gets a 500 (fuzzed
through the whole submit), and slow DNS for webhook hosts holds no database connection."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.builders import JSON_VALUES, dumps, image_job
from tests.infra import Stack, base_settings, running_stack

JSONL = {"Content-Type": "application/jsonl"}


def _items(count: int, **fields: Any) -> list[dict[str, Any]]:
    return [{**image_job(f"p{i}"), "custom_id": f"c{i}", **fields} for i in range(count)]


def _error(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["message"]
    return error


@pytest.fixture(scope="module")
def batch_stack(pg_url: str) -> Iterator[Stack]:
    with running_stack(
        base_settings(pg_url, max_batch_bytes=200_000, max_concurrent_batches=1),
        embedded_worker=False,
    ) as stack:
        yield stack


async def test_a_body_past_the_batch_cap_is_refused_as_it_streams_in(batch_stack: Stack) -> None:
    async with batch_stack.client(batch_stack.new_key()) as client:
        over = orjson.dumps(_items(1, input={"prompt": "x" * 250_000}))
        _error(await client.post("/v1/batches", content=over, headers=JSONL), 413)

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(30):
                yield b"{}\n" * 3_000  # 270 KB in all, no Content-Length

        _error(await client.post("/v1/batches", content=chunked(), headers=JSONL), 413)
        listed = await client.get("/v1/batches")
    assert listed.json()["data"] == []


async def test_a_process_reads_a_few_batch_bodies_at_once(batch_stack: Stack) -> None:
    """With one slot, a batch whose body is still arriving holds it: a second gets 429 at once
    (not a wait), and the first is taken once its body is in."""
    sent_first = asyncio.Event()
    go_on = asyncio.Event()
    body = b"\n".join(orjson.dumps(item) for item in _items(3))

    async def slow() -> AsyncIterator[bytes]:
        yield body[:20]
        sent_first.set()
        await go_on.wait()
        yield body[20:]

    async with batch_stack.client(batch_stack.new_key()) as client:
        first = asyncio.create_task(client.post("/v1/batches", content=slow(), headers=JSONL))
        await sent_first.wait()
        await asyncio.sleep(0.3)  # the server is reading the first body
        second = await client.post("/v1/batches", json=_items(1))
        go_on.set()
        taken = await first
        after = await client.post("/v1/batches", json=_items(1))
    error = _error(second, 429)
    assert error["code"] == "too_many_uploads" and "batch bodies" in error["message"]
    assert second.headers["retry-after"] == "5"
    assert taken.status_code == 202, taken.text
    assert after.status_code == 202, after.text


@pytest.mark.parametrize(
    ("line", "param"),
    [
        ({"custom_id": "a", "method": "POST", "url": ["/v1/jobs"], "body": {}}, "requests[1].url"),
        ({"custom_id": "a", "method": "POST", "url": "/v1/jobs", "body": "x"}, "requests[1].body"),
        (
            {"custom_id": {"an": "object"}, "url": "/v1/jobs", "body": image_job("x")},
            "requests[1].custom_id",
        ),
    ],
)
async def test_malformed_lines_are_400s_naming_the_line(
    batch_stack: Stack, line: dict[str, Any], param: str
) -> None:
    body = orjson.dumps(_items(1)[0]) + b"\n" + orjson.dumps(line)
    async with batch_stack.client(batch_stack.new_key()) as client:
        error = _error(await client.post("/v1/batches", content=body, headers=JSONL), 400)
    assert error["param"].startswith(param) and error["message"].startswith("Line 2"), error


INPUTS = st.one_of(
    JSON_VALUES,
    st.dictionaries(
        st.sampled_from(["prompt", "n", "size", "seed", "quality", "image", "fps", "seconds"]),
        JSON_VALUES,
        max_size=4,
    ),
)
ITEMS = st.fixed_dictionaries(
    {
        "custom_id": st.text(min_size=1, max_size=8),
        "type": st.sampled_from(["image", "video", "speech", "text"]),
        "model": st.sampled_from(["local-image", "local-video", "local-speech", "dall-e-3"]),
        "input": INPUTS,
    },
    optional={"priority": JSON_VALUES, "deadline_seconds": JSON_VALUES, "webhook": JSON_VALUES},
)


def test_no_batch_gets_a_500_through_the_whole_submit(batch_stack: Stack) -> None:
    """Valid envelopes around any input, priority, deadline and webhook: every answer is a 202
    or a 4xx in our error shape, through model resolution, input checks and the transaction."""
    token = batch_stack.new_key()
    with httpx.Client(
        base_url=batch_stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(ITEMS, min_size=1, max_size=3), st.booleans())
        def submit(items: list[dict[str, Any]], jsonl: bool) -> None:
            if jsonl:
                content = b"\n".join(dumps(item) for item in items)
                answer = client.post("/v1/batches", content=content, headers=JSONL)
            else:
                answer = client.post("/v1/batches", content=dumps(items))
            assert answer.status_code in (202, 400), answer.text
            if answer.status_code == 400:
                _error(answer, 400)

        submit()


class SlowResolver:
    """The system resolver stood in for (the network edge: nothing here resolves names of the
    internet): names under `.slow.test` answer a public address after `seconds`, `hang.test`
    never; every other name resolves as usual."""

    PUBLIC = "93.184.216.34"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.asked: list[str] = []

    async def __call__(
        self, loop: asyncio.AbstractEventLoop, host: Any, port: Any, **kw: Any
    ) -> Any:
        if isinstance(host, str) and host.endswith((".slow.test", "hang.test")):
            self.asked.append(host)
            await asyncio.sleep(3600 if host.endswith("hang.test") else self.seconds)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (self.PUBLIC, port or 443))]
        return await ORIGINAL_GETADDRINFO(loop, host, port, **kw)


ORIGINAL_GETADDRINFO = asyncio.BaseEventLoop.getaddrinfo


async def test_webhook_hosts_are_looked_up_before_any_database_connection(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One pooled connection, and webhook hosts that take 1.5 s each to look up: while a batch
    naming three of them is being checked, another request still gets the connection (it would
    wait its 1 s for it and answer 503 if the lookups ran inside the transaction, one after
    another); the three are looked up at once, a batch naming the same host 50 times looks it up
    once, more than ten hosts are refused unlooked-up, and a host that never answers is refused
    within MEDIAGATE_URL_RESOLVE_SECONDS."""
    resolver = SlowResolver(1.5)

    async def getaddrinfo(self: asyncio.AbstractEventLoop, host: Any, port: Any, **kw: Any) -> Any:
        return await resolver(self, host, port, **kw)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    changes = {"database_pool_size": 1, "database_timeout_seconds": 1.0, "url_resolve_seconds": 3.0}
    with running_stack(
        base_settings(pg_url, **changes), embedded_worker=False, loop="asyncio"
    ) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            hooks = [{"url": f"https://h{i}.slow.test/hook"} for i in range(3)]
            items = [{**item, "webhook": hooks[i]} for i, item in enumerate(_items(3))]
            started = time.monotonic()
            batch = asyncio.create_task(client.post("/v1/batches", json=items))
            await asyncio.sleep(0.5)
            other = await client.get("/v1/batches")
            answer = await batch
            took = time.monotonic() - started
            asked_three = sorted(resolver.asked)
            resolver.asked.clear()
            same = _items(50, webhook={"url": "https://same.slow.test/hook"})
            repeated = await client.post("/v1/batches", json=same)
            asked_same = list(resolver.asked)
            resolver.asked.clear()
            many = [
                {**item, "webhook": {"url": f"https://m{i}.slow.test/"}}
                for i, item in enumerate(_items(11))
            ]
            too_many = await client.post("/v1/batches", json=many)
            asked_many = list(resolver.asked)
            started = time.monotonic()
            hanging = await client.post(
                "/v1/batches", json=_items(1, webhook={"url": "https://hang.test/hook"})
            )
            hung_for = time.monotonic() - started
    assert other.status_code == 200, other.text
    assert answer.status_code == 202, answer.text
    assert asked_three == ["h0.slow.test", "h1.slow.test", "h2.slow.test"]
    assert took < 1.5 * 2.5, took  # at once, not 4.5 s in turn
    assert repeated.status_code == 202 and asked_same == ["same.slow.test"]
    assert _error(too_many, 400)["param"] == "requests[10].webhook.url" and asked_many == []
    error = _error(hanging, 400)
    assert error["param"] == "requests[0].webhook.url" and "does not resolve" in error["message"]
    assert 2.5 < hung_for < 6, hung_for
