"""One attempt at a job, as the generation task drives it: the hooks a provider calls (progress,
upstream task id), storing outputs (content type judged by the bytes, the key's byte quota
enforced while streaming and again under a row lock, a thumbnail for videos), and loading the
job's inputs (uploads by id, or https URLs fetched with SSRF checks)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from app.core import runs, usage, webhooks
from app.core.errors import InvalidRequestError
from app.core.inputs import references
from app.core.jobs import job_snapshot
from app.core.media import (
    download_name,
    mark_job_media_deleted,
    record_output,
    storage_key_for,
)
from app.core.models import Job, MediaObject, VirtualKey
from app.core.resources import Resources
from app.core.urls import fetch_input
from providers.base import GeneratedMedia, InputFile, iter_chunks, sniffed
from storage.base import StorageError
from workers.thumbnails import Spool, thumbnail_of

log = logging.getLogger("mediagate.worker")


class Stopped(Exception):
    """The job stopped running under us (canceled by its owner)."""


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


class JobRun:
    def __init__(
        self, res: Resources, job: Job, key: VirtualKey, outputs: list[MediaObject]
    ) -> None:
        self.res = res
        self.job = job
        self.key = key
        self.outputs = outputs
        self.expires_at: datetime | None = usage.expiry(key, res.settings.retention_days)

    def snapshot(self, **changes: Any) -> dict[str, Any]:
        data = job_snapshot(self.job, self.outputs)
        data.update(changes)
        return data

    async def publish(self, event: str, **changes: Any) -> None:
        """Events are the live view; the database is the record. A job carries on through a
        Redis outage (followers re-read the job), so a failed publish is only logged."""
        snapshot = self.snapshot(**changes)
        try:
            await self.res.bus.publish(self.job.id, event, snapshot)
        except (RedisError, OSError) as exc:
            log.warning(
                "job.event_lost job_id=%s event=%s error=%s", self.job.id, event, type(exc).__name__
            )
        if webhooks.wants(self.job, self.key, event):
            await webhooks.notify(self.res, self.job, event, snapshot)

    async def finish(
        self, status: str, code: str | None = None, message: str | None = None
    ) -> None:
        async with self.res.sessionmaker() as session:
            done = await runs.finish(
                session, self.job.id, status, error_code=code, error_message=message
            )
            await session.commit()
            fresh = await session.get(Job, self.job.id)
        if fresh is not None:
            self.job = fresh
        if done:
            await self.publish(f"job.{status}")

    # RunHooks, for the provider ---------------------------------------------------------------

    async def progress(self, percent: int) -> None:
        percent = max(0, min(99, percent))
        async with self.res.sessionmaker() as session:
            changed = await runs.set_progress(session, self.job.id, percent)
            await session.commit()
        if changed:
            self.job.progress = percent
            await self.publish("job.progress")

    async def task_started(self, task_id: str | None) -> None:
        async with self.res.sessionmaker() as session:
            saved = await runs.set_task(session, self.job.id, task_id)
            await session.commit()
        if not saved:
            raise Stopped
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
        self, variant: str, index: int, content_type: str, ext: str, chunks: AsyncIterator[bytes]
    ) -> MediaObject:
        key = storage_key_for(self.job.key_id, self.job.id, index, ext, variant)
        digest = _Digest(await self._byte_room())
        await self.res.store.put(
            key, digest.wrap(chunks), content_type=content_type, filename=download_name(key)
        )
        async with self.res.sessionmaker() as session:
            if await runs.lock_running(session, self.job.id) is None:
                await session.rollback()
                await self.res.store.delete(key)  # no row will ever point at it
                raise Stopped
            # Concurrent jobs of the key: the quota is checked again under the key's row lock.
            if await runs.over_quota(session, self.key, self.job.id, variant, index, digest.size):
                await session.rollback()
                await self.res.store.delete(key)
                raise QuotaCrossed
            media, replaced = await record_output(
                session,
                job_id=self.job.id,
                key_id=self.job.key_id,
                index=index,
                storage_key=key,
                content_type=content_type,
                size=digest.size,
                sha256=digest.sha.hexdigest(),
                variant=variant,
                expires_at=self.expires_at,
            )
            await session.commit()
        if replaced is not None:
            # An earlier attempt's output in another format (a crash here leaves an orphan that
            # reconciliation removes).
            await self.res.store.delete(replaced)
        return media

    async def store_output(self, index: int, output: GeneratedMedia) -> None:
        output = await sniffed(output)
        spool = Spool() if self.job.type == "video" else None
        chunks = output.chunks if spool is None else spool.tee(output.chunks)
        try:
            media = await self._store(
                "output", index, output.content_type, output.extension, chunks
            )
            self.outputs = [m for m in self.outputs if m.index != index] + [media]
            self.outputs.sort(key=lambda m: m.index)
            if spool is not None:
                await self._store_thumbnail(index, spool)
        finally:
            if spool is not None:
                spool.close()
        await self.publish("job.output")

    async def _store_thumbnail(self, index: int, spool: Spool) -> None:
        """A still of a video output, as OpenAI's `variant=thumbnail` serves; a video that cannot
        be decoded simply has none."""
        still = await asyncio.to_thread(thumbnail_of, spool)
        if still is None:
            log.warning("job.no_thumbnail job_id=%s index=%d", self.job.id, index)
            return
        await self._store("thumbnail", index, "image/webp", "webp", iter_chunks(still))

    async def discard_outputs(self, reason: str) -> None:
        """Delete everything the job stored (a job over quota stores nothing)."""
        async with self.res.sessionmaker() as session:
            storage_keys = await mark_job_media_deleted(session, self.job.id, reason)
            await session.commit()
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
