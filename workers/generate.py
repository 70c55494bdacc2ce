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
from app.core.jobs import job_snapshot, outputs_of
from app.core.media import download_name, record_output, storage_key_for
from app.core.models import Job, MediaObject
from app.core.resources import Resources
from providers.base import GenerationRequest, MediaType, ProviderError

log = logging.getLogger("mediagate.worker")


class _Stopped(Exception):
    """The job stopped running under us (canceled by its owner)."""


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


def retry_delay(attempt: int) -> float:
    """Exponential backoff with full jitter, capped at a minute."""
    return float(min(60.0, 2.0**attempt) * random.uniform(0.5, 1.0))


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

    async def on_progress(self, progress: int) -> None:
        progress = max(0, min(99, progress))
        async with self.res.sessionmaker() as session:
            changed = await runs.set_progress(session, self.job.id, progress)
            await session.commit()
        if changed:
            self.job.progress = progress
            await self.publish("job.progress")

    async def store_output(
        self, index: int, content_type: str, ext: str, chunks: AsyncIterator[bytes]
    ) -> None:
        key = storage_key_for(self.job.key_id, self.job.id, index, ext)
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
            )
            await session.commit()
        self.outputs = [m for m in self.outputs if m.index != index] + [media]
        self.outputs.sort(key=lambda m: m.index)
        await self.publish("job.output")

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
    if job.attempts > res.settings.job_max_tries:
        # Earlier attempts died with their workers (killed, out of memory): stop trying.
        await run.finish("failed", "worker_lost", "The job's workers stopped repeatedly.")
        log.warning("job.failed job_id=%s code=worker_lost attempts=%d", job_id, job.attempts)
        return "failed"
    log.info("job.started job_id=%s provider=%s attempt=%d", job_id, job.provider, job.attempts)
    await run.publish("job.started")
    lease = asyncio.create_task(_keep_lease(res, job_id))
    try:
        return await _execute(run, started)
    finally:
        lease.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lease


async def _execute(run: _Run, started: float) -> str:
    res, job = run.res, run.job
    provider = res.providers.get(job.provider)
    if provider is None:
        await run.finish(
            "failed", "provider_unavailable", f"provider {job.provider!r} is not configured"
        )
        return "failed"
    media_type: MediaType = job.type  # type: ignore[assignment]
    request = GenerationRequest(job.id, media_type, job.provider_model, job.input)
    try:
        async with asyncio.timeout(res.settings.job_timeout_seconds):
            index = 0
            async for media in provider.generate(request, run.on_progress):
                await run.store_output(index, media.content_type, media.extension, media.chunks)
                index += 1
        if index == 0:
            await run.finish("failed", "provider_error", "The provider returned no output.")
            return "failed"
    except _Stopped:
        log.info("job.stopped job_id=%s", job.id)
        return "canceled"
    except TimeoutError:
        await run.finish("failed", "timeout", "The job did not finish within its time limit.")
        log.warning("job.failed job_id=%s code=timeout", job.id)
        return "failed"
    except ProviderError as exc:
        if exc.retryable and job.attempts < res.settings.job_max_tries:
            delay = exc.retry_after or retry_delay(job.attempts)
            log.warning("job.retrying job_id=%s code=%s in=%.1fs", job.id, exc.code, delay)
            raise Retry(defer=delay) from exc
        await run.finish("failed", exc.code, exc.message)
        log.warning("job.failed job_id=%s code=%s", job.id, exc.code)
        return "failed"
    except asyncio.CancelledError:
        # Either the owner canceled (the API already marked the job) or this worker is stopping,
        # in which case arq runs the job again and the re-run overwrites what we stored.
        log.info("job.interrupted job_id=%s", job.id)
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
