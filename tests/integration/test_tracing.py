"""One trace for one job, read from an in-memory exporter: the submit request, the worker's
attempt (continuing the context the job carried through Redis), its provider call and storage
write, and the webhook delivery with its HTTP request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.builders import image_job
from tests.emulators.receiver import Receiver
from tests.infra import base_settings, running_stack, wait_for_job


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider, exporting to memory (mediagate uses an installed one as
    it is); the libraries' instrumentation is removed afterwards, so later tests run untraced."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    HTTPXClientInstrumentor().uninstrument()
    RedisInstrumentor().uninstrument()
    exporter.clear()


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    names = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        above = by_id[parent.span_id]
        names.append(above.name)
        parent = above.parent
    return names


async def test_one_trace_from_submit_to_webhook(
    exported: InMemorySpanExporter, hooks: Receiver, sqlite_url: str
) -> None:
    settings = base_settings(sqlite_url, tracing=True, allow_private_urls=True)
    with running_stack(settings, embedded_worker=True) as stack:
        token = stack.new_key()
        async with stack.client(token) as client:
            body = image_job("traced", webhook={"url": hooks.url + "/traced"})
            job = (await client.post("/v1/jobs", json=body)).json()
            assert (await wait_for_job(client, job["id"]))["status"] == "succeeded"
            deadline = asyncio.get_running_loop().time() + 30
            while not any(p == "/traced" for p in hooks.paths):
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # the delivery's span ends after the receiver answers
    spans = exported.get_finished_spans()
    # Request spans are named by route template, never by a raw id.
    assert not [s.name for s in spans if job["id"] in s.name]
    assert any(s.name == "GET /v1/jobs/{id}" for s in spans)
    by_id = {s.context.span_id: s for s in spans}
    submit = next(
        s
        for s in spans
        if s.kind == SpanKind.SERVER
        and s.attributes
        and s.attributes.get("http.method") == "POST"
        and "/v1/jobs" in str(s.attributes.get("http.target", s.attributes.get("url.path", "")))
    )
    trace_id = submit.context.trace_id
    ours = [s for s in spans if s.context.trace_id == trace_id]
    names = {s.name for s in ours}
    assert {"job.run", "provider.generate", "storage.put", "webhook.deliver"} <= names, names
    run = next(s for s in ours if s.name == "job.run")
    assert run.kind == SpanKind.CONSUMER
    assert run.parent is not None and run.parent.span_id in by_id  # the submit's context
    provider = next(s for s in ours if s.name == "provider.generate")
    assert provider.parent is not None and provider.parent.span_id == run.context.span_id
    put = next(s for s in ours if s.name == "storage.put")
    assert "job.run" in _ancestors(put, by_id) and (put.attributes or {}).get("bytes", 0) > 0
    deliver = next(s for s in ours if s.name == "webhook.deliver")
    assert "job.run" in _ancestors(deliver, by_id)  # enqueued by the attempt that ended the job
    posted = [s for s in ours if s.kind == SpanKind.CLIENT and deliver.name in _ancestors(s, by_id)]
    assert posted, "the delivery's HTTP request has a span under the delivery"
    # The database and Redis work of the trace is there too.
    assert any(s.kind == SpanKind.CLIENT and "redis" in str(s.attributes) for s in ours)
