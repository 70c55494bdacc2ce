"""One attempt at a job, as the generation task drives it: the hooks a provider calls (progress,
upstream task id), storing outputs (content type judged by the bytes, the key's byte quota
enforced while streaming and again under a row lock, a thumbnail for videos), and the attempt's
end. Its parts live beside it: `billing`, `progress`, `inputs`, `leftovers`, `thumbnails`.

Every write is fenced by the attempt (the job store, `app.platform.job_store`): when a write finds
the job no longer running this attempt, the attempt stops with `Stopped` (its owner canceled it)
or `Superseded` (another attempt took it over), and writes nothing more. Each attempt stores
objects under keys of its own, and deletes only objects that no row points at."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from app.jobs import events as job_events
from app.jobs.snapshot import job_snapshot
from app.media import usage
from app.media.storage_keys import download_name, output_key
from app.platform import tracing
from app.platform.job_store import KeyGone, NotThisAttempt, Output, OverQuota
from app.platform.metrics import JOB_DURATION, JOBS_FINISHED
from app.platform.resources import Resources
from app.platform.tables import Job, MediaObject, VirtualKey, as_utc, utcnow
from app.platform.vocabulary import TERMINAL_EVENTS, EventType, JobStatus, Variant, ending_event
from app.webhooks import service as webhooks
from providers.base import GeneratedMedia, iter_chunks, sniffed
from workers.billing import Bill, warn_budget
from workers.lease import Lease, Stopped, Superseded
from workers.leftovers import sweep_earlier_attempts
from workers.outcome import Outcome
from workers.progress import ProgressWriter
from workers.thumbnails import Spool, thumbnail_of

log = logging.getLogger("mediagate.worker")


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
                raise OverQuota  # the store aborts the upload: nothing partial remains
            yield chunk


FENCE_READ_SECONDS = 10.0


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
        self.progress_row = ProgressWriter(res.jobs, job.id, self.attempt)
        self.bill = Bill()
        """What the provider charged this attempt, not yet recorded: recorded with the
        attempt's end, or by `bill.settle` when it ends without one."""

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
            seq = await job_events.publish(
                self.res.bus, self.job.id, event, snapshot, attempt=self.attempt
            )
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
        self.progress_row.stop()  # the end writes the job's progress itself
        fresh = await self.res.jobs.finish(
            self.job.id,
            self.attempt,
            status,
            error_code=code,
            error_message=message,
            charged=self.bill.uncharged,
        )
        if fresh is None:
            raise await self.fenced_out()
        if self.bill.take():
            await warn_budget(self.res, fresh, self.key)
        self.job = fresh
        if self.attempt > 1:
            await sweep_earlier_attempts(self.res, fresh, self.attempt)
        self._count_end(JobStatus(status), code)
        await self.publish(ending_event(status))

    async def fail(self, code: str, message: str) -> Outcome:
        """End the job `failed` with `code` (`finish`): the outcome of the attempt."""
        await self.finish(JobStatus.FAILED, code, message)
        return Outcome.FAILED

    def _count_end(self, status: JobStatus, code: str | None) -> None:
        job = self.job
        labels = (str(job.type), job.provider, job.model)
        JOBS_FINISHED.labels(*labels, str(status), code or "").inc()
        if job.started_at is not None:
            JOB_DURATION.labels(*labels).observe(
                (utcnow() - as_utc(job.started_at)).total_seconds()
            )

    # RunHooks, for the provider ---------------------------------------------------------------

    async def progress(self, percent: int) -> None:
        """A step (`ProgressWriter`): an event each, the row at most once a second."""
        percent = max(0, min(99, percent))
        if percent <= self.job.progress:
            return  # nothing new: no write, no event
        self.job.progress = percent
        if not await self.progress_row.step(percent):
            raise await self.fenced_out()
        await self.publish(EventType.PROGRESS)

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
        key = output_key(self.job.key_id, self.job.id, self.attempt, index, ext, variant)
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
