"""Database tables (SQLModel). Alembic reads `SQLModel.metadata` from here."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    String,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlmodel import Field, SQLModel

from app.platform.vocabulary import (
    DeliveryStatus,
    JobStatus,
    JobType,
    Priority,
    PurgeStatus,
    Variant,
)

T = TypeVar("T", bound=SQLModel)


class EnumText(TypeDecorator[StrEnum]):
    """A `StrEnum` column stored as its text in a VARCHAR (as it always was: no database enum
    type to migrate), read back as the enum's member."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: StrEnum | str | None, dialect: Dialect) -> str | None:
        return None if value is None else str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)


def _enum(enum: type[StrEnum], length: int, default: StrEnum | None = None) -> Any:
    return Field(default=default, sa_type=EnumText(enum, length), nullable=default is None)


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`, as every API response shows times."""
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def _ts(nullable: bool = False) -> Any:
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=nullable)


class VirtualKey(SQLModel, table=True):
    __tablename__ = "virtual_keys"

    id: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = _ts(nullable=True)
    # Quotas and retention; null means unlimited (or, for retention, the global default).
    max_bytes: int | None = Field(default=None, sa_type=BigInteger)
    max_objects: int | None = None
    max_concurrent_jobs: int | None = None
    max_queued_jobs: int | None = None
    """The key's share of the queue; null: `MEDIAGATE_MAX_QUEUED_PER_KEY`."""
    max_streams: int | None = None
    """Event streams the key may hold per API process; null: `MEDIAGATE_MAX_STREAMS_PER_KEY`."""
    retention_days: int | None = None
    requests_per_minute: int | None = None
    """Null: the global default (`MEDIAGATE_REQUESTS_PER_MINUTE`), unlimited if that is unset."""
    max_priority: Priority | None = _enum(Priority, 8)
    """The highest priority the key may submit at; null: `MEDIAGATE_DEFAULT_MAX_PRIORITY`."""
    # Budgets in micro-dollars a calendar month (UTC); null: none. At the hard one submits are
    # refused; crossing the soft one sends `key.budget_warning` once that month.
    max_spend_micros_per_month: int | None = Field(default=None, sa_type=BigInteger)
    soft_spend_micros_per_month: int | None = Field(default=None, sa_type=BigInteger)
    budget_warned_month: str | None = Field(default=None, max_length=7)
    """The month (YYYY-MM) the soft budget's warning was last sent for."""
    # Webhooks for every job of the key; the secret signs them (Standard Webhooks). After a
    # rotation the previous secret also signs until `webhook_previous_until`.
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_events: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    webhook_secret: str | None = Field(default=None, max_length=80)
    webhook_previous_secret: str | None = Field(default=None, max_length=80)
    webhook_previous_until: datetime | None = _ts(nullable=True)
    # Deletion: the key is revoked at once, then a worker task deletes all of its media.
    deleted_at: datetime | None = _ts(nullable=True)
    purge_status: PurgeStatus | None = _enum(PurgeStatus, 16)
    """`pending`, `running` or `done` once the key's media is gone."""
    purge_deleted_objects: int = 0
    purge_finished_at: datetime | None = _ts(nullable=True)


STORAGE_LIMITS = ("max_bytes", "max_objects")
"""A key's limits on what it stores: an output is recorded under the key's row lock, with its
usage counted, only for a key that has one of them."""
SUBMIT_LIMITS = ("max_concurrent_jobs", *STORAGE_LIMITS, "max_spend_micros_per_month")
"""A key's limits a new job is checked against under the key's row lock (concurrency, storage,
hard budget). A key without them submits without the lock: nothing its other submits do can
make this one fail."""


def unlimited(key: VirtualKey, limits: tuple[str, ...] = SUBMIT_LIMITS) -> bool:
    """Whether the key has none of `limits` (SUBMIT_LIMITS or STORAGE_LIMITS)."""
    return all(getattr(key, name) is None for name in limits)


def unlimited_sql(limits: tuple[str, ...] = SUBMIT_LIMITS) -> str:
    """`unlimited` as a condition on the virtual_keys row, for the one-statement paths."""
    return " AND ".join(f"{name} IS NULL" for name in limits)


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_key_id_id", "key_id", "id"),
        # Fair share counts a key's queued jobs on every submit (transitions/one_statement.py).
        Index(
            "ix_jobs_key_id_queued",
            "key_id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
    )

    id: str = Field(primary_key=True, max_length=40)
    key_id: str = Field(foreign_key="virtual_keys.id", max_length=40)
    type: JobType = Field(sa_type=EnumText(JobType, 16), nullable=False)
    model: str = Field(max_length=200)
    provider: str = Field(max_length=64)
    provider_model: str = Field(max_length=200)
    input: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """The input as the serving model takes it (validated, defaults filled in)."""
    request: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """The input as the client sent it: a fallback target validates it afresh."""
    status: JobStatus = Field(
        default=JobStatus.QUEUED, sa_type=EnumText(JobStatus, 16), nullable=False, index=True
    )
    progress: int = 0
    error_code: str | None = Field(default=None, max_length=64)
    error_message: str | None = Field(default=None, max_length=2000)
    attempts: int = 0
    """Every attempt on every target."""
    tries: int = 0
    """Attempts on the current target; fallback to the next target starts it again."""
    targets: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    """Catalog names of the models that may serve the job, in order (an alias's targets)."""
    target_index: int = 0
    provider_task_id: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    started_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)
    cancel_requested_at: datetime | None = _ts(nullable=True)
    deleted_at: datetime | None = _ts(nullable=True)
    """Deleted by its owner (with its media); it answers 404 from then on."""
    webhook: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    """This job's own webhook: {"url", "events"} (the key's webhook applies too)."""
    priority: Priority = Field(
        default=Priority.NORMAL, sa_type=EnumText(Priority, 8), nullable=False
    )
    """`high`, `normal` or `low`: the order jobs are served in (see app/jobs/queue.py)."""
    deadline_at: datetime | None = _ts(nullable=True)
    """A job not started by then ends `canceled` with `deadline_exceeded`."""
    batch_id: str | None = Field(default=None, max_length=40, index=True)
    """The batch it was submitted in, if any (with the client's `custom_id` for it)."""
    custom_id: str | None = Field(default=None, max_length=64)
    cost_estimate_micros: int | None = Field(default=None, sa_type=BigInteger)
    """What the job costs at its model's list price if every output is made (micro-dollars);
    null: the model has no price."""
    cost_micros: int = Field(default=0, sa_type=BigInteger)
    """What the providers charged so far: every output they returned, on every attempt."""
    heartbeat_at: datetime | None = _ts(nullable=True)
    """Renewed by the worker running the job; a running job whose heartbeat is older than the
    lease has lost its worker, and the outbox reconciler queues it again."""


_DEFAULTS: dict[type[SQLModel], dict[str, Any]] = {}
_SAMPLES: dict[type[SQLModel], dict[str, Any]] = {}


def transient(table: type[T], **values: Any) -> T:
    """A new `table` row object (in no session) with `values` and the table's defaults for the
    rest, built as the ORM builds a row it loads: `Job(...)` sets each of its 26 fields through
    SQLAlchemy's instrumentation and pydantic and costs more than the INSERT that stores it
    (docs/performance.md). Used where rows are made or read thousands of times a second (the
    one-statement job store)."""
    defaults = _DEFAULTS.get(table)
    if defaults is None:
        sample = table(**_SAMPLES.get(table, {}))
        defaults = _DEFAULTS[table] = {
            name: value for name, value in sample.__dict__.items() if not name.startswith("_")
        }
    unknown = set(values) - set(defaults)
    if unknown:
        raise TypeError(f"{table.__name__} has no field {', '.join(sorted(unknown))}")
    row: T = table._sa_class_manager.new_instance()  # type: ignore[attr-defined]
    fields = row.__dict__
    for name, default in defaults.items():
        fields[name] = default.copy() if isinstance(default, list | dict) else default
    fields.update(values)
    for name, enum in _enum_columns(table).items():
        value = fields[name]
        if value is not None and type(value) is str:  # a raw driver row's text
            fields[name] = enum(value)
    return row


_ENUM_COLUMNS: dict[type[SQLModel], dict[str, type[StrEnum]]] = {}


def _enum_columns(table: type[SQLModel]) -> dict[str, type[StrEnum]]:
    found = _ENUM_COLUMNS.get(table)
    if found is None:
        columns = table.__table__.columns  # type: ignore[attr-defined]
        found = _ENUM_COLUMNS[table] = {
            column.name: column.type.enum for column in columns if isinstance(column.type, EnumText)
        }
    return found


def transient_job(**values: Any) -> Job:
    return transient(Job, **values)


MEDIA_KINDS = ("image", "video", "audio", "other")
"""Usage is kept per kind of media, judged by content type."""


def media_kind(content_type: str) -> str:
    major = content_type.split("/", 1)[0].lower()
    return major if major in ("image", "video", "audio") else "other"


class MediaObject(SQLModel, table=True):
    __tablename__ = "media_objects"
    __table_args__ = (
        UniqueConstraint("job_id", "variant", "index", name="uq_media_objects_job_variant_index"),
        Index("ix_media_objects_key_id", "key_id"),
        Index("ix_media_objects_expires_at", "expires_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    job_id: str | None = Field(default=None, foreign_key="jobs.id", max_length=40)
    key_id: str = Field(foreign_key="virtual_keys.id", max_length=40)
    variant: Variant = Field(default=Variant.OUTPUT, sa_type=EnumText(Variant, 16), nullable=False)
    """`output` (a job's result), `thumbnail` (of the output with the same index) or `input`
    (an upload, with no job)."""
    index: int = 0
    storage_key: str = Field(max_length=512)
    content_type: str = Field(max_length=128)
    bytes: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    kind: str = Field(default="other", max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    expires_at: datetime | None = _ts(nullable=True)
    deleted_at: datetime | None = _ts(nullable=True)
    deleted_reason: str | None = Field(default=None, max_length=16)
    """`owner`, `expired`, `key_deleted`, `quota` or `missing` (found gone by reconciliation)."""


class KeyUsage(SQLModel, table=True):
    """Running totals of what a key stores, one row per kind of media; moved in the same
    transaction as the media rows. `bytes == bytes_written - bytes_deleted` at all times."""

    __tablename__ = "key_usage"

    key_id: str = Field(primary_key=True, foreign_key="virtual_keys.id", max_length=40)
    kind: str = Field(primary_key=True, max_length=16)
    bytes: int = Field(default=0, sa_type=BigInteger)
    objects: int = Field(default=0, sa_type=BigInteger)
    bytes_written: int = Field(default=0, sa_type=BigInteger)
    objects_written: int = Field(default=0, sa_type=BigInteger)
    bytes_deleted: int = Field(default=0, sa_type=BigInteger)
    objects_deleted: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class Batch(SQLModel, table=True):
    """Up to 1,000 jobs submitted at once: its counts are its jobs' (jobs.batch_id)."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_key_id_id", "key_id", "id"),)

    id: str = Field(primary_key=True, max_length=40)
    key_id: str = Field(foreign_key="virtual_keys.id", max_length=40)
    total: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    cancel_requested_at: datetime | None = _ts(nullable=True)
    deleted_at: datetime | None = _ts(nullable=True)


class KeySpend(SQLModel, table=True):
    """What a key's jobs were charged, one row per key and UTC day (micro-dollars); moved in
    the same statement that adds the charge to the job."""

    __tablename__ = "key_spend"

    key_id: str = Field(primary_key=True, foreign_key="virtual_keys.id", max_length=40)
    day: str = Field(primary_key=True, max_length=10)
    """YYYY-MM-DD, UTC."""
    micros: int = Field(default=0, sa_type=BigInteger)


class ModelAlias(SQLModel, table=True):
    """An operator's name for one or more catalog models, tried in order (fallback)."""

    __tablename__ = "model_aliases"

    name: str = Field(primary_key=True, max_length=200)
    type: JobType = Field(sa_type=EnumText(JobType, 16), nullable=False)
    targets: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class IdempotencyKey(SQLModel, table=True):
    """A client's `Idempotency-Key` for one virtual key: the job it created and a fingerprint of
    the request that created it. Kept for a day; the primary key makes concurrent duplicates
    create one job."""

    __tablename__ = "idempotency_keys"

    key_id: str = Field(primary_key=True, foreign_key="virtual_keys.id", max_length=40)
    idempotency_key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)
    job_id: str = Field(max_length=40)
    created_at: datetime = Field(
        default_factory=utcnow, sa_type=DateTime(timezone=True), index=True
    )


class WebhookDelivery(SQLModel, table=True):
    """One event of one job for one URL, with every attempt to deliver it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_job_id", "job_id"),)

    id: str = Field(primary_key=True, max_length=40)
    job_id: str = Field(foreign_key="jobs.id", max_length=40)
    key_id: str = Field(foreign_key="virtual_keys.id", max_length=40)
    event: str = Field(max_length=32)
    url: str = Field(max_length=2000)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: DeliveryStatus = Field(
        default=DeliveryStatus.PENDING, sa_type=EnumText(DeliveryStatus, 16), nullable=False
    )
    """`pending` (being retried), `delivered` (a 2xx) or `failed` (gave up after 24 h)."""
    attempts: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    """Each attempt: {"at", "status_code", "latency_ms", "error"}."""
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    delivered_at: datetime | None = _ts(nullable=True)


# Values for the required fields of a sample row (only its defaults are kept).
_SAMPLES[Job] = {
    "id": "",
    "key_id": "",
    "type": JobType.IMAGE,
    "model": "",
    "provider": "",
    "provider_model": "",
    "created_at": utcnow(),
}
_SAMPLES[VirtualKey] = {"id": "", "name": "", "prefix": "", "key_hash": ""}
_SAMPLES[MediaObject] = {
    "id": "",
    "key_id": "",
    "storage_key": "",
    "content_type": "",
    "bytes": 0,
    "sha256": "",
}
