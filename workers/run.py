"""One attempt at a job, as the generation task drives it: the hooks a provider calls (progress,
upstream task id), storing outputs (content type judged by the bytes, the key's byte quota
enforced while streaming and again under a row lock, a thumbnail for videos), and loading the
job's inputs (uploads by id, or https URLs fetched with SSRF checks).

Every write is fenced by the attempt (the job store, `app.platform.job_store`): when a write finds
the job no longer running this attempt, the attempt stops with `Stopped` (its owner canceled it)
or `Superseded` (another attempt took it over), and writes nothing more. Each attempt stores
objects under keys of its own, and deletes only objects that no row points at."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from sqlmodel import col, select

from app.jobs.inputs import references
from app.jobs.snapshot import job_snapshot
from app.media import usage
from app.media.service import download_name, storage_key_for
from app.platform import tracing
from app.platform.errors import InvalidRequestError
from app.platform.job_store import KeyGone, NotThisAttempt, Output, OverQuota
from app.platform.metrics import JOB_DURATION, JOBS_FINISHED
from app.platform.resources import Resources
from app.platform.tables import Job, MediaObject, VirtualKey, as_utc, utcnow
from app.platform.tenant_urls import fetch_input
from app.platform.vocabulary import TERMINAL_EVENTS, EventType, JobStatus, Variant, ending_event
from app.webhooks import service as webhooks
from providers.base import GeneratedMedia, InputFile, iter_chunks, sniffed
from providers.prices import unit_cost
from storage.base import StorageError
from workers.lease import Lease, Stopped, Superseded
from workers.thumbnails import Spool, thumbnail_of

log = logging.getLogger("mediagate.worker")


class InputGone(Exception):
    """An input the job names is gone or cannot be fetched; the message says which and why."""


class QuotaCrossed(Exception):
    """Storing this output would take the key over its quota."""


class _Digest:
    """Hashes and counts a stream; stops it once it passes `limit` bytes."""

    def __init__(self, limit: int | None) -> None:
        self.sha = hashlib.sha256()
        self.size = 0
        self.limit = limit

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.sha.update(chunk)
            self.size += len(chunk)
            if self.limit is not None and self.size > self.limit:
                raise QuotaCrossed  # the store aborts the upload: nothing partial remains
            yield chunk


FENCE_READ_SECONDS = 10.0
PROGRESS_SAVE_SECONDS = 1.0


class JobRun:
    def __init__(
        self, res: Resources, job: Job, key: VirtualKey, outputs: list[MediaObject]
    ) -> None:
        self.res = res
        self.job = job
        self.attempt = job.attempts
        """The attempt this run is: the fencing token of every write it makes."""
        self.key = key
        self.outputs = outputs
        self.expires_at: datetime | None = usage.expiry(key, res.settings.retention_days)
        self.lease: Lease | None = None
        """The lease the attempt runs under (`workers.lease`), once it holds one."""
        self._progress_saved_at = time.monotonic()
        """Starting the attempt wrote the job's row: a job done within a second writes no
        progress but its end."""
        self._progress_flush: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[bool]] = set()
        self.uncharged = 0
        """What the provider charged this attempt (micro-dollars) not yet recorded: every
        output it returned. Recorded with the attempt's end, or by `settle_charges`."""

    def charge_output(self, index: int) -> None:
        """The provider returned output `index`: it bills for it (an image each; a video or a
        speech once, for the whole clip), whatever happens to it here afterwards."""
        job = self.job
        spec = self.res.catalog.get(job.targets[job.target_index] if job.targets else job.model)
        if spec is None or spec.price is None or (index > 0 and job.type != "image"):
            return
        self.uncharged += unit_cost(spec.price, job.type, job.input) or 0

    async def settle_charges(self) -> None:
        """Record a charge the attempt's end did not (it stopped, was canceled or superseded, or
        a dependency failed): the provider was paid all the same. Best effort: a database that
        does not answer now loses it (and says so in the log)."""
        amount, self.uncharged = self.uncharged, 0
        if amount <= 0:
            return
        try:
            async with asyncio.timeout(FENCE_READ_SECONDS):
                await self.res.jobs.charge(self.job.id, amount)
        except Exception as exc:
            log.warning(
                "job.charge_lost job_id=%s micros=%d error=%s",
                self.job.id,
                amount,
                type(exc).__name__,
            )

    @property
    def lease_lost(self) -> bool:
        return self.lease is not None and self.lease.lost

    async def fenced_out(self) -> Stopped:
        """Why a fenced write (or the lease) failed: the job ended under this attempt, canceled
        by its owner (`Stopped`); or it belongs to another attempt now, or cannot be read
        (`Superseded`)."""
        try:
            async with asyncio.timeout(FENCE_READ_SECONDS):
                fresh = await self.res.jobs.read(self.job.id)
        except Exception:
            fresh = None
        if (
            fresh is not None
            and fresh.attempts == self.attempt
            and fresh.status != JobStatus.RUNNING
        ):
            return Stopped()
        # Another attempt's now; or still this one's, running, after a lease this worker could
        # not renew: either way the job is left to whoever takes it next.
        return Superseded()

    def snapshot(self, **changes: Any) -> dict[str, Any]:
        data = job_snapshot(self.job, self.outputs)
        data.update(changes)
        return data

    async def publish(self, event: str, **changes: Any) -> None:
        """Events are the live view; the database is the record. A job carries on through a
        Redis outage (followers re-read the job), so a failed publish is only logged. An event
        refused because a newer attempt has published (or the job has ended) stops the run."""
        snapshot = self.snapshot(**changes)
        try:
            seq = await self.res.bus.publish(self.job.id, event, snapshot, attempt=self.attempt)
        except (RedisError, OSError) as exc:
            log.warning(
                "job.event_lost job_id=%s event=%s error=%s", self.job.id, event, type(exc).__name__
            )
        else:
            if seq is None and event not in TERMINAL_EVENTS:
                raise await self.fenced_out()
        if webhooks.wants(self.job, self.key, event):
            await webhooks.notify(self.res, self.job, event, snapshot, attempt=self.attempt)

    async def finish(
        self, status: str, code: str | None = None, message: str | None = None
    ) -> None:
        """Record the attempt's end, then announce it. If the job is no longer this attempt's,
        nothing is recorded and `Superseded` (or `Stopped`, when its owner canceled it) raised."""
        if self.lease is not None:
            self.lease.closing = True
        if self._progress_flush is not None:
            self._progress_flush.cancel()  # the end writes the job's progress itself
        fresh = await self.res.jobs.finish(
            self.job.id,
            self.attempt,
            status,
            error_code=code,
            error_message=message,
            charged=self.uncharged,
        )
        if fresh is None:
            raise await self.fenced_out()
        charged, self.uncharged = self.uncharged, 0
        if charged:
            await self._warn_budget()
        self.job = fresh
        if self.attempt > 1:
            await self._sweep_earlier_attempts()
        self._count_end(JobStatus(status), code)
        await self.publish(ending_event(status))

    async def _warn_budget(self) -> None:
        """The first charge past the key's soft budget this month sends `key.budget_warning`."""
        if self.key.soft_spend_micros_per_month is None:
            return
        try:
            await webhooks.warn_budget(self.res, self.job, self.key)
        except Exception as exc:  # a warning never fails the job it is about
            log.warning("key.budget_warning_failed job_id=%s error=%s", self.job.id, exc)

    def _count_end(self, status: JobStatus, code: str | None) -> None:
        job = self.job
        labels = (str(job.type), job.provider, job.model)
        JOBS_FINISHED.labels(*labels, str(status), code or "").inc()
        if job.started_at is not None:
            JOB_DURATION.labels(*labels).observe(
                (utcnow() - as_utc(job.started_at)).total_seconds()
            )

    async def _sweep_earlier_attempts(self) -> None:
        """Delete what earlier attempts of the job stored but never recorded (their worker died
        between the upload and the commit). Those attempts are fenced out, so no row will ever
        point at such an object; a failure here only leaves them to reconciliation."""
        async with self.res.sessionmaker() as session:
            rows = await session.exec(
                select(MediaObject.storage_key).where(
                    MediaObject.job_id == self.job.id, col(MediaObject.deleted_at).is_(None)
                )
            )
            live = set(rows.all())
        prefix = f"{self.job.key_id}/{self.job.id}/"
        try:
            leftovers = []
            async for info in self.res.store.list_objects(prefix):
                parts = info.key.split("/")
                attempt = parts[2].split("-", 1)[0] if len(parts) == 4 else ""
                if info.key not in live and attempt.isdigit() and int(attempt) < self.attempt:
                    leftovers.append(info.key)
            if leftovers:
                await self.res.store.delete_many(leftovers)
                log.info("job.leftovers_deleted job_id=%s count=%d", self.job.id, len(leftovers))
        except StorageError as exc:
            log.warning("job.leftovers_kept job_id=%s error=%s", self.job.id, type(exc).__name__)

    # RunHooks, for the provider ---------------------------------------------------------------

    async def progress(self, percent: int) -> None:
        """Every step is an event (fenced by attempt in Redis, live on SSE); the database, which
        answers `GET /v1/jobs/{id}`, takes the latest step at most once a second: at once if the
        last write of the row is a second old, else when it is."""
        percent = max(0, min(99, percent))
        if percent <= self.job.progress:
            return  # nothing new: no write, no event
        self.job.progress = percent
        wait = self._progress_saved_at + PROGRESS_SAVE_SECONDS - time.monotonic()
        if wait <= 0:
            if not await self._save_progress():
                raise await self.fenced_out()
        elif self._progress_flush is None:
            self._progress_flush = asyncio.get_running_loop().call_later(wait, self._flush_progress)
        await self.publish(EventType.PROGRESS)

    async def _save_progress(self) -> bool:
        self._progress_saved_at = time.monotonic()
        return await self.res.jobs.set_progress(self.job.id, self.attempt, self.job.progress)

    def _flush_progress(self) -> None:
        # A write fenced by attempt: should the run have ended or lost the job meanwhile, it
        # changes nothing, so it needs no cleanup.
        self._progress_flush = None
        task = asyncio.create_task(self._save_progress())
        self._background.add(task)
        task.add_done_callback(self._progress_written)

    def _progress_written(self, task: asyncio.Task[bool]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("job.progress_not_saved job_id=%s", self.job.id)

    async def task_started(self, task_id: str | None) -> None:
        if not await self.res.jobs.set_task(self.job.id, self.attempt, task_id):
            raise await self.fenced_out()
        self.job.provider_task_id = task_id

    # Storing outputs --------------------------------------------------------------------------

    async def _byte_room(self) -> int | None:
        """Bytes the key may still store, if it has a byte quota."""
        if self.key.max_bytes is None:
            return None
        async with self.res.sessionmaker() as session:
            used, _ = await usage.totals(session, self.key.id)
        replaced = sum(m.bytes for m in self.outputs)  # a re-run overwrites these
        return max(0, self.key.max_bytes - used + replaced)

    async def _store(
        self,
        variant: Variant,
        index: int,
        content_type: str,
        ext: str,
        chunks: AsyncIterator[bytes],
    ) -> MediaObject:
        key = storage_key_for(self.job.key_id, self.job.id, self.attempt, index, ext, variant)
        digest = _Digest(await self._byte_room())
        with tracing.span("storage.put", variant=str(variant), index=index) as span:
            await self.res.store.put(
                key, digest.wrap(chunks), content_type=content_type, filename=download_name(key)
            )
            span.set_attribute("bytes", digest.size)
        try:
            media, replaced = await self._record(variant, index, key, content_type, digest)
        except Exception:
            # Written by this attempt alone, and no row points at it (a crash here leaves an
            # orphan, which the key's purge or reconciliation removes).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(FENCE_READ_SECONDS):
                    await self.res.store.delete(key)
            raise
        if replaced is not None:
            # An earlier attempt's object, which no row points at any more; that attempt is
            # fenced out, so nothing will point at it again.
            await self.res.store.delete(replaced)
        return media

    async def _record(
        self, variant: Variant, index: int, key: str, content_type: str, digest: _Digest
    ) -> tuple[MediaObject, str | None]:
        """Record an output (`JobStore.record_output`): a deleted key stops the attempt, a
        superseded one is fenced out, the quota is checked again under the key's row lock."""
        output = Output(
            job_id=self.job.id,
            key_id=self.job.key_id,
            attempt=self.attempt,
            variant=variant,
            index=index,
            storage_key=key,
            content_type=content_type,
            size=digest.size,
            sha256=digest.sha.hexdigest(),
            expires_at=self.expires_at,
        )
        try:
            recorded = await self.res.jobs.record_output(output)
        except KeyGone:
            raise Stopped from None  # its jobs were canceled with it
        except NotThisAttempt:
            raise await self.fenced_out() from None
        except OverQuota:
            raise QuotaCrossed from None
        return recorded.media, recorded.replaced

    async def store_output(self, index: int, output: GeneratedMedia) -> None:
        output = await sniffed(output)
        spool = Spool() if self.job.type == "video" else None
        chunks = output.chunks if spool is None else spool.tee(output.chunks)
        try:
            media = await self._store(
                Variant.OUTPUT, index, output.content_type, output.extension, chunks
            )
            self.outputs = [m for m in self.outputs if m.index != index] + [media]
            self.outputs.sort(key=lambda m: m.index)
            if spool is not None:
                await self._store_thumbnail(index, spool)
        finally:
            if spool is not None:
                spool.close()
        await self.publish(EventType.OUTPUT)

    async def _store_thumbnail(self, index: int, spool: Spool) -> None:
        """A still of a video output, as OpenAI's `variant=thumbnail` serves; a video that cannot
        be decoded simply has none."""
        still = await asyncio.to_thread(thumbnail_of, spool)
        if still is None:
            log.warning("job.no_thumbnail job_id=%s index=%d", self.job.id, index)
            return
        await self._store(Variant.THUMBNAIL, index, "image/webp", "webp", iter_chunks(still))

    async def discard_outputs(self, reason: str) -> None:
        """Delete everything the job stored (a job over quota stores nothing)."""
        storage_keys = await self.res.jobs.discard_outputs(self.job.id, self.attempt, reason)
        if storage_keys is None:
            raise await self.fenced_out()
        for storage_key in storage_keys:
            await self.res.store.delete(storage_key)
        self.outputs = []

    # Inputs -----------------------------------------------------------------------------------

    async def load_files(self) -> dict[str, InputFile]:
        """The inputs the job refers to: uploads read from storage, URLs fetched."""
        files: dict[str, InputFile] = {}
        for name, ref in references(self.job.input).items():
            if "url" in ref:
                try:
                    files[name] = await fetch_input(self.res, ref["url"], name)
                except InvalidRequestError as exc:
                    raise InputGone(exc.message) from exc
                continue
            async with self.res.sessionmaker() as session:
                media = await session.get(MediaObject, ref["media_id"])
            if media is None or media.deleted_at is not None or media.key_id != self.job.key_id:
                raise InputGone(f"The input {name} was deleted.")
            try:
                data = b"".join([c async for c in self.res.store.iter_bytes(media.storage_key)])
            except StorageError as exc:
                raise InputGone(f"The input {name} could not be read.") from exc
            files[name] = InputFile(download_name(media.storage_key), media.content_type, data)
        return files
