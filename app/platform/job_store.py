"""What a job store does: the writes a worker's attempt makes to its job (start, hold, progress,
upstream task, fallback, outputs, end, charges), a late job's end, and the submit's common case,
every one fenced by attempt. Two stores keep this contract (`app/jobs/transitions`): the ORM
store (SQLite, and PostgreSQL behind PgBouncer) and the one-statement store (PostgreSQL); a
process's store is chosen once, where its resources are opened, and one contract suite runs
every scenario against both.

The contract lives here, beside `Resources` which carries the store, because the platform
imports no domain; the stores, which need the keys and media domains, live in the jobs domain.

The fence: `start_attempt` counts a new attempt under the row lock, and every later write of
that attempt is conditional, in the same statement, on the job still running *that* attempt. A
job canceled by its owner is never flipped back, and an attempt that another worker took over
changes nothing: its writes match no row, and say so."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from app.platform.database import SessionMaker
from app.platform.settings import Settings
from app.platform.tables import Job, MediaObject, VirtualKey
from providers.registry import ModelSpec


@dataclass(frozen=True, slots=True)
class Started:
    """A new attempt: the job as it runs now (its `attempts` is the attempt's fencing token) and
    its key as it is now."""

    job: Job
    key: VirtualKey


@dataclass(frozen=True, slots=True)
class Output:
    """An object an attempt stored, to be recorded as the job's output (or thumbnail)."""

    job_id: str
    key_id: str
    attempt: int
    variant: str
    index: int
    storage_key: str
    content_type: str
    size: int
    sha256: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Recorded:
    media: MediaObject
    replaced: str | None
    """The storage key of an earlier attempt's object at the same place, which no row points at
    any more (the caller deletes it); None when there was none or it was the same key."""


class NotRecorded(Exception):
    """An output was not recorded, and nothing changed."""


class KeyGone(NotRecorded):
    """The job's key was deleted (its jobs were canceled with it)."""


class NotThisAttempt(NotRecorded):
    """The job no longer runs this attempt (it ended, or another attempt took it over)."""


class OverQuota(NotRecorded):
    """The output would take the key over its storage quota."""


class JobStore(Protocol):
    async def insert_queued(self, job: Job) -> int | None:
        """Insert the new, queued job and commit, if its key may write and has none of
        `tables.SUBMIT_LIMITS`; returns how many of the key's jobs were queued before it
        (counted up to `queue.FAIR_COUNT_CAP`). None: nothing was inserted (the key has limits,
        or was revoked or deleted): the caller takes the checked path, which says why."""
        ...

    async def start_attempt(self, job_id: str) -> Started | None:
        """Count a new attempt of a queued job (not past its deadline) or of a running one (its
        worker was lost), and mark it running; None for a job that is gone, deleted, ended, or
        late (`cancel_if_late` ends that one)."""
        ...

    async def read(self, job_id: str) -> Job | None:
        """The job's row as it is now."""
        ...

    async def hold(self, job_id: str, attempt: int) -> bool:
        """Renew the attempt's hold on the job (its heartbeat) in one statement, committed at
        once: on the one-statement store outside any transaction, so no lock outlives it; on the
        ORM store a transaction of its own, whose lock lasts to its COMMIT (see `orm_store`).
        False if the job no longer runs this attempt."""
        ...

    async def set_progress(self, job_id: str, attempt: int, progress: int) -> bool:
        """Raise the job's progress (never lower it); False if it no longer runs this attempt."""
        ...

    async def set_task(self, job_id: str, attempt: int, task_id: str | None) -> bool:
        """Remember (or forget) the job's upstream task; False if it no longer runs this
        attempt."""
        ...

    async def fall_back(
        self, job_id: str, attempt: int, index: int, target: ModelSpec, job_input: dict[str, Any]
    ) -> bool:
        """Move the running job to its fallback target `index`: its own input, a fresh count of
        tries, no upstream task; False if it no longer runs this attempt."""
        ...

    async def record_output(self, output: Output) -> Recorded:
        """Record the output with the key's usage, in one transaction under the key's row lock
        (a deleted key records nothing) and the attempt's fence; a re-run replaces the row at
        the same (job, variant, index). Raises `KeyGone`, `NotThisAttempt` or `OverQuota`
        (the quota checked again under the lock), having changed nothing."""
        ...

    async def discard_outputs(self, job_id: str, attempt: int, reason: str) -> list[str] | None:
        """Mark every object of the job deleted (`reason`), fenced by the attempt; the storage
        keys to delete, or None if the job no longer runs this attempt (nothing changed)."""
        ...

    async def finish(
        self,
        job_id: str,
        attempt: int,
        status: str,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        charged: int = 0,
    ) -> Job | None:
        """Move the attempt's job to a terminal status, adding what the attempt was `charged`
        (micro-dollars) to the job and to its key's spend of the day; the job as it is now, or
        None if it no longer runs this attempt (nothing changed, nothing charged)."""
        ...

    async def charge(self, job_id: str, amount: int) -> None:
        """Add what a provider charged to the job and its key's spend, whoever holds the job
        now: an attempt that got outputs but did not end the job was billed all the same."""
        ...

    async def cancel_if_late(self, job_id: str) -> Job | None:
        """End a queued job not started before its deadline (it never reaches a provider); the
        canceled job, or None if it is not late (or not queued)."""
        ...


JobStoreFactory = Callable[[AsyncEngine, SessionMaker, Settings], JobStore]
"""Chooses and builds a process's store (`app.jobs.transitions.store.job_store`)."""
