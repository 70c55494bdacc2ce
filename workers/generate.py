"""The generation task: run one job through its provider into storage, exactly once in effect.

A re-run after a crash overwrites the same storage keys and updates the same (job, index) media
rows, so outputs and usage are never counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
import traceback
from collections.abc import AsyncIterator
from typing import Any

from arq import Retry
from arq.constants import in_progress_key_prefix

from app.core import runs
from app.core.errors import MediagateError
from app.core.inputs import references, validate_input
from app.core.jobs import job_snapshot, outputs_of
from app.core.media import download_name, record_output, storage_key_for
from app.core.models import Job, MediaObject, as_utc, utcnow
from app.core.resources import Resources
from providers.base import GenerationRequest, InputFile, MediaType, ProviderError
from providers.registry import ModelSpec
from storage.base import StorageError
from workers.thumbnails import Spool, thumbnail_of

log = logging.getLogger("mediagate.worker")


class _Stopped(Exception):
    """The job stopped running under us (canceled by its owner)."""


class _InputGone(Exception):
    """An input the job names was deleted before the job ran."""


class _Digest:
    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.sha.update(chunk)
            self.size += len(chunk)
            yield chunk


async def _keep_lease(res: Resources, job_id: str) -> None:
    """Hold arq's in-progress lock for a short lease, renewed while we live: if this worker dies,
    the lock lapses within one lease and another worker picks the job up again."""
    lease_ms = res.settings.job_lease_seconds * 1000
    key = in_progress_key_prefix + job_id
    while True:
        with contextlib.suppress(Exception):
            await res.redis.pexpire(key, lease_ms)
        await asyncio.sleep(res.settings.job_lease_seconds / 3)


MAX_RETRY_AFTER = 300.0


def retry_delay(attempt: int, base: float, retry_after: float | None = None) -> float:
    """The upstream's Retry-After when it gave one (within reason), else exponential backoff with
    jitter, capped at a minute."""
    if retry_after is not None:
        return min(MAX_RETRY_AFTER, retry_after)
    return float(min(60.0, base * 2.0 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0))


class _Run:
    def __init__(self, res: Resources, job: Job, outputs: list[MediaObject]) -> None:
        self.res = res
        self.job = job
        self.outputs = outputs

    def snapshot(self, **changes: Any) -> dict[str, Any]:
        data = job_snapshot(self.job, self.outputs)
        data.update(changes)
        return data

    async def publish(self, event: str, **changes: Any) -> None:
        await self.res.bus.publish(self.job.id, event, self.snapshot(**changes))

    # RunHooks, for the provider:

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
            raise _Stopped
        self.job.provider_task_id = task_id

    async def _store(
        self, variant: str, index: int, content_type: str, ext: str, chunks: AsyncIterator[bytes]
    ) -> MediaObject:
        key = storage_key_for(self.job.key_id, self.job.id, index, ext, variant)
        digest = _Digest()
        await self.res.store.put(
            key, digest.wrap(chunks), content_type=content_type, filename=download_name(key)
        )
        async with self.res.sessionmaker() as session:
            if await runs.lock_running(session, self.job.id) is None:
                await session.rollback()
                await self.res.store.delete(key)  # no row will ever point at it
                raise _Stopped
            media = await record_output(
                session,
                job_id=self.job.id,
                key_id=self.job.key_id,
                index=index,
                storage_key=key,
                content_type=content_type,
                size=digest.size,
                sha256=digest.sha.hexdigest(),
                variant=variant,
            )
            await session.commit()
        return media

    async def store_output(
        self, index: int, content_type: str, ext: str, chunks: AsyncIterator[bytes]
    ) -> None:
        spool = Spool() if self.job.type == "video" else None
        if spool is not None:
            chunks = spool.tee(chunks)
        try:
            media = await self._store("output", index, content_type, ext, chunks)
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

        async def chunks() -> AsyncIterator[bytes]:
            yield still

        await self._store("thumbnail", index, "image/webp", "webp", chunks())

    async def load_files(self) -> dict[str, InputFile]:
        """The uploaded inputs the job refers to, read from storage."""
        files: dict[str, InputFile] = {}
        for name, media_id in references(self.job.input).items():
            async with self.res.sessionmaker() as session:
                media = await session.get(MediaObject, media_id)
            if media is None or media.deleted_at is not None or media.key_id != self.job.key_id:
                raise _InputGone(name)
            try:
                data = b"".join([c async for c in self.res.store.iter_bytes(media.storage_key)])
            except StorageError as exc:
                raise _InputGone(name) from exc
            files[name] = InputFile(download_name(media.storage_key), media.content_type, data)
        return files

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


async def generate_media(ctx: dict[str, Any], job_id: str) -> str:
    res: Resources = ctx["resources"]
    started = time.monotonic()
    async with res.sessionmaker() as session:
        job = await runs.start_attempt(session, job_id)
        if job is None:
            await session.commit()
            log.info("job.skipped job_id=%s", job_id)
            return "skipped"
        # A re-run keeps what an earlier attempt recorded until it overwrites it.
        outputs = (await outputs_of(session, [job_id]))[job_id]
        await session.commit()
    run = _Run(res, job, outputs)
    if job.tries > res.settings.max_tries_for(job.type):
        # Earlier attempts died with their workers (killed, out of memory): stop trying.
        await run.finish("failed", "worker_lost", "The job's workers stopped repeatedly.")
        log.warning("job.failed job_id=%s code=worker_lost attempts=%d", job_id, job.attempts)
        return "failed"
    log.info(
        "job.started job_id=%s provider=%s attempt=%d try=%d",
        job_id,
        job.provider,
        job.attempts,
        job.tries,
    )
    await run.publish("job.started")
    lease = asyncio.create_task(_keep_lease(res, job_id))
    try:
        return await _execute(run, started)
    finally:
        lease.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lease


def _remaining_seconds(res: Resources, job: Job) -> float:
    """The job's per-type deadline counts from its first start, across retries and fallbacks."""
    first_start = as_utc(job.started_at or utcnow())
    elapsed = (utcnow() - first_start).total_seconds()
    return res.settings.timeout_for(job.type) - elapsed


async def _execute(run: _Run, started: float) -> str:
    res, job = run.res, run.job
    provider = res.providers.get(job.provider)
    if provider is None:
        await run.finish(
            "failed", "provider_unavailable", f"provider {job.provider!r} is not configured"
        )
        return "failed"
    remaining = _remaining_seconds(res, job)
    if remaining <= 0:
        await run.finish("failed", "timeout", "The job did not finish within its time limit.")
        return "failed"
    media_type: MediaType = job.type  # type: ignore[assignment]
    try:
        async with asyncio.timeout(remaining):
            files = await run.load_files()
            request = GenerationRequest(
                job.id, media_type, job.provider_model, job.input, job.provider_task_id, files
            )
            index = 0
            async for media in provider.generate(request, run):
                await run.store_output(index, media.content_type, media.extension, media.chunks)
                index += 1
        if index == 0:
            await run.finish("failed", "provider_error", "The provider returned no output.")
            return "failed"
    except _Stopped:
        log.info("job.stopped job_id=%s", job.id)
        await _cancel_upstream(run)
        return "canceled"
    except _InputGone as exc:
        await run.finish("failed", "invalid_request", f"The input {exc.args[0]} was deleted.")
        return "failed"
    except TimeoutError:
        await run.finish("failed", "timeout", "The job did not finish within its time limit.")
        log.warning("job.failed job_id=%s code=timeout", job.id)
        return "failed"
    except ProviderError as exc:
        return await _after_provider_error(run, exc)
    except asyncio.CancelledError:
        # Either the owner canceled (the API already marked the job) or this worker is stopping,
        # in which case arq runs the job again and the re-run resumes what we started.
        log.info("job.interrupted job_id=%s", job.id)
        await _cancel_upstream(run)
        raise
    except Exception as exc:
        # Type and frames only: an exception's message may quote the prompt.
        frames = "".join(traceback.format_tb(exc.__traceback__)[-3:])
        log.error("job.crashed job_id=%s error=%s\n%s", job.id, type(exc).__name__, frames)
        await run.finish("failed", "internal_error", "The job failed inside mediagate.")
        return "failed"
    await run.finish("succeeded")
    log.info(
        "job.succeeded job_id=%s provider=%s outputs=%d ms=%d",
        job.id,
        job.provider,
        len(run.outputs),
        (time.monotonic() - started) * 1000,
    )
    return "succeeded"


async def _after_provider_error(run: _Run, exc: ProviderError) -> str:
    """Retry the same target, fall back to the next one, or fail with the error's code."""
    res, job = run.res, run.job
    if exc.retryable:
        if job.tries < res.settings.max_tries_for(job.type):
            delay = retry_delay(job.tries, res.settings.retry_base_seconds, exc.retry_after)
            log.warning("job.retrying job_id=%s code=%s in=%.1fs", job.id, exc.code, delay)
            await run.publish("job.retrying", error={"code": exc.code, "message": exc.message})
            raise Retry(defer=delay) from exc
        target = _next_target(res, job)
        if target is not None:
            index, spec = target
            try:
                job_input = validate_input(spec, job.request or job.input)
            except MediagateError:
                job_input = None  # validated at submit; a changed catalog may still refuse it
            if job_input is None:
                await run.finish("failed", exc.code, exc.message)
                return "failed"
            async with res.sessionmaker() as session:
                moved = await runs.fall_back(session, job.id, index, spec, job_input)
                await session.commit()
            if moved:
                log.warning(
                    "job.fallback job_id=%s from=%s to=%s code=%s",
                    job.id,
                    job.provider,
                    target[1].provider,
                    exc.code,
                )
                raise Retry(defer=0) from exc
    await run.finish("failed", exc.code, exc.message)
    log.warning("job.failed job_id=%s code=%s", job.id, exc.code)
    return "failed"


def _next_target(res: Resources, job: Job) -> tuple[int, ModelSpec] | None:
    """The next fallback target whose provider this worker has, with its index, if any."""
    for index in range(job.target_index + 1, len(job.targets)):
        spec = res.catalog.get(job.targets[index])
        if spec is not None and spec.provider in res.providers:
            return index, spec
    return None


async def _cancel_upstream(run: _Run) -> None:
    """When the owner canceled, stop the upstream task too (a stopping worker leaves it to the
    re-run instead)."""
    job = run.job
    task_id = job.provider_task_id
    if task_id is None:
        return
    async with run.res.sessionmaker() as session:
        fresh = await session.get(Job, job.id)
    if fresh is None or fresh.status != "canceled":
        return
    provider = run.res.providers.get(job.provider)
    if provider is None:
        return
    try:
        await asyncio.shield(asyncio.wait_for(provider.cancel(task_id), timeout=10))
        log.info("job.upstream_canceled job_id=%s provider=%s", job.id, job.provider)
    except (ProviderError, TimeoutError, asyncio.CancelledError) as exc:
        log.warning("job.upstream_cancel_failed job_id=%s error=%s", job.id, type(exc).__name__)
