"""OpenTelemetry tracing, off unless configured (`MEDIAGATE_TRACING`, or the standard
`OTEL_EXPORTER_OTLP_ENDPOINT`): one trace from the submit request through the enqueue (the W3C
`traceparent` travels in the arq job), the worker's attempts, each provider call, each storage
write, to each webhook delivery.

The instrumentations of the libraries beneath do the rest: Litestar's plugin (ASGI) for
requests, httpx for provider calls and webhook deliveries, redis and SQLAlchemy for their
commands. aiobotocore's async client is not patched by the botocore instrumentation (it
overrides the call it wraps), so storage writes get a span of ours (`storage.put`).

Whoever runs tests or embeds mediagate may install a tracer provider of their own first; it is
then used as it is (an in-memory exporter, say).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Tracer

TRACER_NAME = "mediagate"
TRACE_FIELD = "trace"
"""The arq job keyword that carries the enqueuing span's context (`traceparent`)."""


def setup(service_name: str, *, enabled: bool) -> bool:
    """Install the tracer provider (OTLP over HTTP, configured by the standard `OTEL_*`
    variables) unless one is installed already, and the libraries' instrumentations, once per
    process. Returns whether tracing is on."""
    if not enabled:
        return False
    if not isinstance(trace.get_tracer_provider(), _sdk_provider_class()):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (HTTPXClientInstrumentor(), RedisInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
    return True


def instrument_engine(engine: Any) -> None:
    """Spans for one engine's statements (made once its resources are open)."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine)


def _sdk_provider_class() -> type:
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider


def tracer() -> Tracer:
    return trace.get_tracer(TRACER_NAME)


def carrier() -> dict[str, str]:
    """The current span's context as W3C headers (`traceparent`), to travel with a job; empty
    when no span is recording."""
    found: dict[str, str] = {}
    propagate.inject(found)
    return found


def job_kwargs() -> dict[str, Any]:
    """The keyword that carries the current trace in an arq job (none when nothing traces)."""
    found = carrier()
    return {TRACE_FIELD: found} if found else {}


@contextlib.contextmanager
def continued(name: str, parent: Mapping[str, str] | None, **attributes: Any) -> Iterator[Span]:
    """A span that continues the trace a job carried (a consumer of its enqueue)."""
    context = propagate.extract(dict(parent or {}))
    with tracer().start_as_current_span(
        name, context=context, kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    with tracer().start_as_current_span(name, attributes=attributes) as current:
        yield current
