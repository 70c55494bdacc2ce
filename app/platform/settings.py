"""The one settings object, read from `MEDIAGATE_*` environment variables and validated at start."""

from __future__ import annotations

import dataclasses
import secrets
import types
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from app.platform.vocabulary import Priority

ENV_PREFIX = "MEDIAGATE_"
MIN_SECRET_LENGTH = 32
_DEV_SECRET = secrets.token_bytes(32)


class SettingsError(ValueError):
    """A variable is missing or malformed; the message names it."""


def at_least(minimum: int, default: Any) -> Any:
    """A field whose value (when set) must be `minimum` or more."""
    return dataclasses.field(default=default, metadata={"min": minimum})


def above(minimum: int, default: Any) -> Any:
    """A field whose value must be greater than `minimum`."""
    return dataclasses.field(default=default, metadata={"above": minimum})


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the job rows live."""

    database_url: str = "sqlite+aiosqlite:///./.mediagate/mediagate.db"
    database_timeout_seconds: float = above(0, 5.0)
    """Connecting to the database, or waiting for a pooled connection, gives up after this long
    (the API answers 503 instead of hanging)."""
    database_pgbouncer: bool = False
    """PostgreSQL is reached through PgBouncer in transaction mode: no prepared statement
    outlives its transaction (asyncpg's statement cache is off, each statement gets a name of
    its own), and the hot paths' single statements outside a transaction give way to the ORM
    path. Run `mediagate migrate` against PostgreSQL itself (or a session-mode pool)."""
    database_pool_size: int = at_least(1, 20)
    """PostgreSQL connections each process keeps open (no overflow: a connection opened and
    closed per request costs more than waiting for a pooled one)."""


@dataclass(frozen=True)
class RedisSettings:
    """The queue and the event bus."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_tls_ca_file: str | None = None
    """CA certificates that sign a `rediss://` server's certificate (a private CA); unset: the
    system's."""
    redis_sentinels: str | None = None
    """Redis Sentinel instead of one address: `host:port,host:port`; the master's name is
    `MEDIAGATE_REDIS_SENTINEL_MASTER`, the database number and password come from the URL."""
    redis_sentinel_master: str = "mymaster"
    redis_namespace: str = "mediagate"
    """Prefix of every Redis key we own (queue, events): deployments can share one Redis."""
    events_ttl_seconds: int = 86_400


@dataclass(frozen=True)
class SecuritySettings:
    """Who may do what, and what we sign."""

    admin_key: str | None = None
    secret_key: str | None = None
    """Signs media links: 32+ random characters, required outside dev mode (a key derived from
    the admin key would let anyone holding one signed link guess the admin key offline)."""
    public_url: str | None = None
    """Base of the links we hand out (https://media.example.com); else the request's own base."""
    allow_private_urls: bool = False
    """Let input URLs be http:// and point at private or loopback addresses (tests, intranets)."""
    auth_failures_per_minute: int | None = at_least(1, 30)
    """Failed authentications one client address may make a minute, counted apart for tenant
    keys, the admin key and dashboard sign-ins: past it, an unknown tenant token gets 429 without
    a database read (a known key is still let in), and so does any admin bearer or sign-in;
    unset: no limit."""
    dashboard_session_seconds: int = at_least(1, 28_800)
    """A dashboard sign-in's whole life (using it does not extend it); sign-out ends it at once,
    and a new admin key ends every session."""
    forwarded_allow_ips: str | None = "127.0.0.1"
    """Proxies whose X-Forwarded-For (and -Proto) name the client: comma-separated addresses or
    networks, or `*` (uvicorn's `forwarded_allow_ips`); empty: none, the peer is the client."""
    url_resolve_seconds: float = above(0, 5.0)
    """How long looking up the host of a tenant's webhook URL may take at submit (a batch's
    hosts are looked up at once, within this too); longer is refused as not resolving."""
    key_cache_seconds: float = at_least(0, 60.0)
    """How long an API process may reuse a key it authenticated without reading its row again.
    A change to the key (revoke, delete, limits) is announced over Redis and drops every copy at
    once; this bounds a copy's age should a notice be missed. 0 reads the row on every request."""


@dataclass(frozen=True)
class StorageSettings:
    """Where media lives, and for how long."""

    storage: Literal["memory", "s3", "files"] = "memory"
    files_dir: str = "./.mediagate/media"
    """Where `MEDIAGATE_STORAGE=files` keeps objects (`mediagate dev` does)."""
    s3_endpoint_url: str | None = None
    s3_bucket: str = "mediagate"
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_public_base_url: str | None = None
    s3_create_bucket: bool = False
    media_url_ttl_seconds: int = at_least(1, 3600)
    retention_days: int | None = at_least(1, None)
    """Media expires this many days after it is stored (a key's own retention_days wins);
    unset keeps media until it is deleted."""
    reconcile_grace_seconds: int = at_least(0, 3600)
    """Objects without a row are deleted by reconciliation only once older than this."""


@dataclass(frozen=True)
class ApiSettings:
    """What one API process takes and how it answers."""

    max_body_bytes: int = at_least(1, 1_048_576)
    max_upload_bytes: int = at_least(1, 26_214_400)
    """Largest upload, and largest input fetched by URL."""
    max_concurrent_uploads: int = at_least(1, 8)
    """Multipart uploads one API process reads at a time (each is held in memory while it is
    read, up to MAX_UPLOAD_BYTES); more get 429 at once."""
    max_batch_bytes: int = at_least(1, 6_291_456)
    """Largest `POST /v1/batches` body: 1,000 jobs with prompts of 4,000 characters and room to
    spare (raise it for models that take longer prompts)."""
    max_concurrent_batches: int = at_least(1, 2)
    """Batch bodies one API process reads and parses at a time; more get 429 at once."""
    requests_per_minute: int | None = at_least(1, 3000)
    """Each key's requests per minute, unless the key has its own limit; empty: unlimited."""
    max_streams_per_key: int | None = at_least(1, 100)
    """Event streams one key may hold open on one API process; more get 429."""
    max_waits_per_key: int | None = at_least(1, 20)
    """Requests of one key that may wait for their job at once on one API process (the images
    and speech endpoints, which answer when the job ends); more get 429."""
    max_queue_length: int | None = at_least(1, 100_000)
    """Beyond this many jobs waiting in the queue, submits get 429 `queue_full` at once; empty:
    no limit."""
    max_queued_per_key: int | None = at_least(1, 10_000)
    """Each key's share of the queue: beyond this many of its jobs waiting, its submits get 429
    `queue_share_exceeded` while other keys' are still taken (a key's own `max_queued_jobs`
    wins); empty: no share, only the queue's limit."""
    default_max_priority: Priority = Priority.NORMAL
    """The highest priority a key may submit at unless an admin gave it its own."""
    idempotency_ttl_seconds: int = at_least(1, 86_400)
    """How long an Idempotency-Key maps to the job it created."""
    sync_wait_seconds: float = at_least(0, 120.0)
    """How long /v1/images/generations and /v1/audio/speech wait before answering 202."""
    max_wait_seconds: float = at_least(0, 60.0)
    """The longest `Prefer: wait=N` (POST /v1/jobs) or `?wait=N` (GET /v1/jobs/{id}) holds a
    request; longer asks are cut to it."""
    default_image_model: str = "local-image"
    """Used by the OpenAI-compatible endpoints when a request names no model."""
    default_video_model: str = "local-video"
    default_speech_model: str = "local-speech"
    sse_ping_seconds: float = 15.0
    sse_max_seconds: int = 3600
    stream_link_seconds: int = at_least(1, 86_400)
    """How long a job's signed `urls.stream` link works (every answer that shows the job gives
    a fresh one)."""
    cors_origins: str | None = None
    """Comma-separated origins (`https://app.example.com,http://localhost:5173`, or `*`) whose
    pages may call the API and read its answers; empty: no CORS headers at all."""
    access_log: bool = False
    """One log line per HTTP request (uvicorn's access log); mediagate's own events are logged
    either way."""


@dataclass(frozen=True)
class ExecutionSettings:
    """How workers run jobs."""

    worker_concurrency: int = at_least(1, 10)
    worker_poll_delay: float = above(0, 0.05)
    image_timeout_seconds: int = at_least(1, 600)
    """A job not finished this long after it first started fails with `timeout` (per type)."""
    video_timeout_seconds: int = at_least(1, 3600)
    speech_timeout_seconds: int = at_least(1, 300)
    image_max_tries: int = at_least(1, 4)
    """Attempts per target model for retryable errors, before fallback or failure (per type)."""
    video_max_tries: int = at_least(1, 3)
    speech_max_tries: int = at_least(1, 4)
    retry_base_seconds: float = above(0, 1.0)
    """Backoff before retry n is about base * 2**(n-1) (jittered, at most a minute), unless the
    provider said Retry-After."""
    job_lease_seconds: int = at_least(1, 30)
    """A running job whose worker stops refreshing its lease for this long is picked up again."""
    outbox_grace_seconds: int = at_least(1, 10)
    """A queued job with no arq job in Redis this long after it was committed is queued again
    (Redis lost it, or the enqueue after the commit failed)."""
    worker_shutdown_grace_seconds: int = at_least(0, 30)
    """On SIGTERM a worker takes no new jobs and gives running ones this long to finish; the rest
    are interrupted and run again elsewhere."""
    provider_concurrency: str | None = None
    """Jobs at a time per provider across all workers, e.g. `minimax=4,replicate=2`."""
    worker_heartbeat_seconds: float = above(0, 5.0)
    """How often each worker records its heartbeat in Redis; it counts as gone after three
    missed ones (`/admin/workers`, `mediagate_workers_alive`, `mediagate worker --check`)."""
    worker_metrics_port: int | None = at_least(1, None)
    """Where a worker serves its Prometheus metrics (`mediagate worker --metrics-port`); unset:
    nowhere."""
    local_latency_seconds: float = 0.0
    local_progress_steps: int = 4


@dataclass(frozen=True)
class WebhookSettings:
    """Delivering webhooks."""

    webhook_timeout_seconds: float = above(0, 10.0)
    """One webhook request."""
    webhook_retry_seconds: int = at_least(1, 86_400)
    """A webhook not delivered (2xx) this long after its event is marked failed."""
    webhook_max_attempts: int = at_least(1, 20)
    """A webhook is marked failed after this many attempts (or its retry window), whichever
    comes first."""
    webhook_concurrency: int | None = None
    """Deliveries one worker makes at once; the rest wait, so that webhooks never take the
    slots generation jobs need. Unset: a quarter of the worker's concurrency (at least 1)."""
    webhook_retry_base_seconds: float = above(0, 5.0)
    """Backoff before webhook retry n is about base * 2**(n-1), jittered, at most an hour."""


@dataclass(frozen=True)
class ProviderSettings:
    """The upstream providers, the models file, and fetching inputs by URL."""

    openai_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    minimax_api_key: str | None = None
    minimax_base_url: str = "https://api.minimax.io"
    replicate_api_token: str | None = None
    replicate_base_url: str = "https://api.replicate.com/v1"
    fal_api_key: str | None = None
    fal_base_url: str = "https://queue.fal.run"
    google_api_key: str | None = None
    google_base_url: str = "https://generativelanguage.googleapis.com/v1beta"
    elevenlabs_api_key: str | None = None
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    elevenlabs_concurrency: int | None = at_least(1, None)
    """Calls at once per process to ElevenLabs before its `maximum-concurrent-requests` answer
    says; unset: learned from that header."""
    provider_request_timeout_seconds: float = above(0, 60.0)
    poll_initial_seconds: float = above(0, 2.0)
    """First wait between polls of an upstream task; it grows by half each poll."""
    poll_max_seconds: float = above(0, 30.0)
    models_file: str | None = None
    """YAML file of extra models and aliases, loaded at start (aliases upserted into the DB)."""
    input_url_timeout_seconds: float = above(0, 30.0)


@dataclass(frozen=True)
class ProcessSettings:
    """The process itself."""

    tracing: bool = False
    """OpenTelemetry traces over OTLP (configured by the standard `OTEL_*` variables); on by
    default when `OTEL_EXPORTER_OTLP_ENDPOINT` is set."""
    log_level: str = "INFO"
    dev: bool = False


@dataclass(frozen=True)
class Settings(
    DatabaseSettings,
    RedisSettings,
    SecuritySettings,
    StorageSettings,
    ApiSettings,
    ExecutionSettings,
    WebhookSettings,
    ProviderSettings,
    ProcessSettings,
):
    """Every setting, one `MEDIAGATE_<FIELD>` variable each, grouped by concern in the classes it
    is made of (`GROUPS`)."""

    @classmethod
    def env_names(cls) -> frozenset[str]:
        return frozenset(ENV_PREFIX + f.name.upper() for f in dataclasses.fields(cls))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], *, serving: bool = True, **overrides: Any
    ) -> Settings:
        """Build from an environment mapping; `overrides` win (used by the CLI's flags).
        `serving`: for the API and workers, which need the admin and secret keys; the CLI's
        database tools (migrate, keys, storage) do not."""
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if name in environ:
                values[f.name] = _convert(name, environ[name], hints[f.name])
        if "OTEL_EXPORTER_OTLP_ENDPOINT" in environ and "tracing" not in values:
            values["tracing"] = True
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate(serving=serving)
        return settings

    def validate(self, *, serving: bool = True) -> None:
        if not self.database_url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise SettingsError(
                "MEDIAGATE_DATABASE_URL must start with postgresql+asyncpg:// or "
                f"sqlite+aiosqlite://, got {self.database_url.split(':', 1)[0]!r}"
            )
        if self.redis_sentinels:
            for part in self.redis_sentinels.split(","):
                host, _, port = part.strip().rpartition(":")
                if not host or not port.isdigit():
                    raise SettingsError(
                        f"MEDIAGATE_REDIS_SENTINELS must be host:port,host:port; got {part!r}"
                    )
        for origin in self.cors_origin_list:
            scheme, _, rest = origin.partition("://")
            if origin != "*" and (scheme not in ("http", "https") or not rest or "/" in rest):
                raise SettingsError(
                    "MEDIAGATE_CORS_ORIGINS must list origins like https://app.example.com "
                    f"(scheme and host, no path), or *; got {origin!r}"
                )
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("MEDIAGATE_REDIS_URL must be a redis:// or rediss:// URL")
        if serving and not self.dev and not self.admin_key:
            raise SettingsError("MEDIAGATE_ADMIN_KEY is required (only `mediagate dev` makes one)")
        if self.admin_key is not None and len(self.admin_key) < 16:
            raise SettingsError("MEDIAGATE_ADMIN_KEY must be at least 16 characters")
        if serving and not self.dev and not self.secret_key:
            raise SettingsError(
                "MEDIAGATE_SECRET_KEY is required: 32 or more random characters that sign media "
                "links, e.g. the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        if self.secret_key is not None and len(self.secret_key) < MIN_SECRET_LENGTH:
            raise SettingsError(
                f"MEDIAGATE_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters"
            )
        if self.secret_key is not None and self.secret_key == self.admin_key:
            raise SettingsError("MEDIAGATE_SECRET_KEY must differ from MEDIAGATE_ADMIN_KEY")
        if self.storage == "s3" and not self.s3_bucket:
            raise SettingsError("MEDIAGATE_S3_BUCKET is required when MEDIAGATE_STORAGE=s3")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            variable = ENV_PREFIX + f.name.upper()
            if value is None:
                continue
            if "min" in f.metadata and value < f.metadata["min"]:
                unset = " (or unset)" if f.default is None or "None" in str(f.type) else ""
                raise SettingsError(f"{variable} must be at least {f.metadata['min']}{unset}")
            if "above" in f.metadata and value <= f.metadata["above"]:
                raise SettingsError(f"{variable} must be greater than {f.metadata['above']}")
        try:
            self.provider_caps()
        except ValueError as exc:
            raise SettingsError(f"MEDIAGATE_PROVIDER_CONCURRENCY: {exc}") from None

    def provider_caps(self) -> dict[str, int]:
        """`minimax=4,replicate=2` -> {"minimax": 4, "replicate": 2}."""
        caps: dict[str, int] = {}
        for part in (self.provider_concurrency or "").split(","):
            if not part.strip():
                continue
            name, _, value = part.partition("=")
            if not name.strip() or not value.strip().isdigit() or int(value) < 1:
                raise ValueError(f"expected provider=N (N >= 1), got {part.strip()!r}")
            caps[name.strip()] = int(value)
        return caps

    def timeout_for(self, media_type: str) -> int:
        value: int = getattr(self, f"{media_type}_timeout_seconds")
        return value

    def max_tries_for(self, media_type: str) -> int:
        value: int = getattr(self, f"{media_type}_max_tries")
        return value

    @property
    def longest_timeout(self) -> int:
        return max(self.timeout_for(t) for t in ("image", "video", "speech"))

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in (self.cors_origins or "").split(",") if o.strip()]

    @property
    def signing_secret(self) -> bytes:
        if self.secret_key:
            return self.secret_key.encode()
        # Dev mode without one: random per process start (links from an earlier run stop working).
        return _DEV_SECRET


def _convert(name: str, raw: str, hint: Any) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if raw == "":
            return None
        return _convert(name, raw, args[0])
    if origin is Literal:
        allowed = get_args(hint)
        if raw not in allowed:
            choices = " or ".join(repr(a) for a in allowed)
            raise SettingsError(f"{name} must be {choices}, got {raw!r}")
        return raw
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        try:
            return hint(raw)
        except ValueError:
            choices = " or ".join(repr(str(member)) for member in hint)
            raise SettingsError(f"{name} must be {choices}, got {raw!r}") from None
    if hint is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    if hint is int or hint is float:
        try:
            return hint(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    return raw


GROUPS: tuple[type, ...] = Settings.__bases__
"""The concerns, in the order docs/configuration.md lists them."""


def group_of(field_name: str) -> type:
    return next(g for g in GROUPS if field_name in g.__dataclass_fields__)  # type: ignore[attr-defined]
