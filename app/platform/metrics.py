"""Prometheus metrics: every series mediagate exports, named `mediagate_*` with its unit in the
name, in one place (the table in docs/operating.md and the Grafana dashboard are tested against
`SERIES`).

Two kinds:
- counters, histograms and gauges that the code moves as things happen (prometheus-client; with
  `PROMETHEUS_MULTIPROC_DIR` set, as `mediagate api --workers N` sets it, every process writes
  its own and `/metrics` sums them);
- the pool's state, read when scraped (`PoolSnapshot`): queue depth and the age of the oldest
  queued job per priority (from the database, the source of truth, not Redis), live workers,
  and what keys store (the usage ledger). One API process answers for the pool, so several
  scrapers or API processes agree.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

JOBS_FINISHED = Counter(
    "mediagate_jobs_finished_total",
    "Jobs that ended, by type, provider, model, status and error code ('' when none)",
    ["type", "provider", "model", "status", "error_code"],
)
JOB_DURATION = Histogram(
    "mediagate_job_duration_seconds",
    "From a job's first start to its end, across retries and fallbacks",
    ["type", "provider", "model"],
    buckets=SECONDS,
)
QUEUE_WAIT = Histogram(
    "mediagate_job_queue_wait_seconds",
    "From a job's submit to its first start",
    ["type", "provider", "model"],
    buckets=SECONDS,
)
PROVIDER_TIME = Histogram(
    "mediagate_provider_time_seconds",
    "Time inside a provider's generate (one attempt), outputs streamed included",
    ["type", "provider", "model"],
    buckets=SECONDS,
)
JOBS_IN_PROGRESS = Gauge(
    "mediagate_worker_jobs_in_progress",
    "Generation attempts this worker is running",
    multiprocess_mode="livesum",
)
RETRIES = Counter(
    "mediagate_job_retries_total",
    "Attempts retried after a retryable provider error, by provider and error code",
    ["provider", "error_code"],
)
FALLBACKS = Counter(
    "mediagate_job_fallbacks_total",
    "Jobs moved to their next target model, by the provider they left",
    ["provider"],
)
PROVIDER_REQUESTS = Counter(
    "mediagate_provider_requests_total",
    "HTTP requests to upstream providers, by provider and status code ('error': no answer)",
    ["provider", "status"],
)
WEBHOOK_ATTEMPTS = Counter(
    "mediagate_webhook_attempts_total",
    "Webhook delivery attempts, by outcome (delivered, retrying, failed)",
    ["outcome"],
)
SSE_STREAMS = Gauge(
    "mediagate_sse_streams_open",
    "Event streams open on this API process",
    multiprocess_mode="livesum",
)
REFUSALS = Counter(
    "mediagate_refusals_total",
    "Requests refused by a limit (rate, quota, concurrency, queue, streams, waits), by code",
    ["code"],
)


@dataclass
class PoolSnapshot:
    """The pool's state as of one scrape."""

    queued: dict[str, int] = field(default_factory=dict)
    """Queued jobs per priority."""
    oldest_age: dict[str, float] = field(default_factory=dict)
    """Seconds the oldest queued job of each priority has waited."""
    workers_alive: int = 0
    stored_bytes: dict[str, int] = field(default_factory=dict)
    """Bytes keys store now, per kind of media."""
    written_bytes: dict[str, int] = field(default_factory=dict)
    deleted_bytes: dict[str, int] = field(default_factory=dict)


POOL_SERIES = (
    "mediagate_queue_jobs",
    "mediagate_queue_oldest_age_seconds",
    "mediagate_workers_alive",
    "mediagate_media_stored_bytes",
    "mediagate_media_written_bytes_total",
    "mediagate_media_deleted_bytes_total",
)


class _PoolCollector(Collector):
    def __init__(self, snapshot: PoolSnapshot, priorities: Sequence[str]) -> None:
        self.snapshot = snapshot
        self.priorities = priorities

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        depth = GaugeMetricFamily(
            "mediagate_queue_jobs", "Jobs waiting in the queue, by priority", labels=["priority"]
        )
        age = GaugeMetricFamily(
            "mediagate_queue_oldest_age_seconds",
            "How long the oldest queued job of each priority has waited (0: none waits)",
            labels=["priority"],
        )
        for priority in self.priorities:
            depth.add_metric([priority], s.queued.get(priority, 0))
            age.add_metric([priority], s.oldest_age.get(priority, 0.0))
        yield depth
        yield age
        yield GaugeMetricFamily(
            "mediagate_workers_alive",
            "Workers whose heartbeat is fresh",
            value=s.workers_alive,
        )
        stored = GaugeMetricFamily(
            "mediagate_media_stored_bytes", "Bytes keys store now, by kind", labels=["kind"]
        )
        written = CounterMetricFamily(
            "mediagate_media_written_bytes",
            "Bytes ever stored for keys (outputs and uploads), by kind",
            labels=["kind"],
        )
        deleted = CounterMetricFamily(
            "mediagate_media_deleted_bytes",
            "Bytes ever deleted (by owners, expiry, quota, key deletion), by kind",
            labels=["kind"],
        )
        for kind in sorted(set(s.stored_bytes) | set(s.written_bytes)):
            stored.add_metric([kind], s.stored_bytes.get(kind, 0))
            written.add_metric([kind], s.written_bytes.get(kind, 0))
            deleted.add_metric([kind], s.deleted_bytes.get(kind, 0))
        yield stored
        yield written
        yield deleted


def exposition(snapshot: PoolSnapshot | None, priorities: Sequence[str]) -> bytes:
    """The text every scrape gets: this process's series (or, in multi-process mode, every
    process's), plus the pool's state when given."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        registry.register(_Everything())
    if snapshot is not None:
        registry.register(_PoolCollector(snapshot, priorities))
    return generate_latest(registry)


class _Everything(Collector):
    """The process's default registry, inside a registry of its own (so the pool's collector,
    made per scrape, is never registered globally)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


SERIES = (
    "mediagate_jobs_finished_total",
    "mediagate_job_duration_seconds",
    "mediagate_job_queue_wait_seconds",
    "mediagate_provider_time_seconds",
    "mediagate_worker_jobs_in_progress",
    "mediagate_job_retries_total",
    "mediagate_job_fallbacks_total",
    "mediagate_provider_requests_total",
    "mediagate_webhook_attempts_total",
    "mediagate_sse_streams_open",
    "mediagate_refusals_total",
    *POOL_SERIES,
    "mediagate_http_requests_total",
    "mediagate_http_request_duration_seconds",
    "mediagate_http_requests_in_progress",
    "mediagate_http_requests_error_total",
)
"""Every series name we export."""


HTTP_REQUESTS = Counter(
    "mediagate_http_requests_total",
    "API requests, by method, route template and status code",
    ["method", "path", "status_code"],
)
HTTP_DURATION = Histogram(
    "mediagate_http_request_duration_seconds",
    "API request time, by method, route template and status code",
    ["method", "path", "status_code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)
HTTP_IN_PROGRESS = Gauge(
    "mediagate_http_requests_in_progress",
    "API requests being served, by method and route template",
    ["method", "path"],
    multiprocess_mode="livesum",
)
HTTP_ERRORS = Counter(
    "mediagate_http_requests_error_total",
    "API answers with a 5xx status, by method, route template and status code",
    ["method", "path", "status_code"],
)
