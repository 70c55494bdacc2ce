"""The generation task: run one job through its provider into storage, exactly once in effect.

Each run is an attempt, counted under the job's row lock; a re-run after a crash updates the
same (job, index) media rows, so outputs and usage are never counted twice. An attempt that
another worker took over (ours was cut off or paused past its lease) ends quietly: `superseded`,
with arq's bookkeeping of the job left to the worker that holds it now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import traceback
from typing import Any

from arq import Retry

from app.jobs import service as job_service
from app.jobs.inputs import validate_input
from app.media.service import outputs_of
from app.platform import tracing
from app.platform.arq_seam import SUPERSEDED_JOBS
from app.platform.backoff import Backoff
from app.platform.errors import OUTAGE_ERRORS, MediagateError, UnavailableError, translated
from app.platform.job_store import OverQuota
from app.platform.limits import acquire_slot, release_slot
from app.platform.metrics import (
    FALLBACKS,
    JOBS_IN_PROGRESS,
    PROVIDER_TIME,
    QUEUE_WAIT,
    RETRIES,
)
from app.platform.resources import Resources
from app.platform.tables import Job, MediaObject, VirtualKey, as_utc, utcnow
from app.platform.vocabulary import TERMINAL_STATUSES, ErrorCode, EventType, JobStatus
from providers.base import GenerationRequest, MediaType, Provider, ProviderError
from providers.registry import ModelSpec
from workers.heartbeat import ENDED, RUNNING
from workers.inputs import InputGone, load_files
from workers.lease import Stopped, Superseded, held_lease
from workers.outcome import Outcome
from workers.run import JobRun

log = logging.getLogger("mediagate.worker")


MAX_RETRY_AFTER = 300.0
MAX_RETRY_GAP = 60.0
OUTAGE_RETRY_SECONDS = 5.0


def retry_delay(attempt: int, base: float, retry_after: float | None = None) -> float:
    """The upstream's Retry-After when it gave one (within reason), else the backoff, capped at
    a minute."""
    if retry_after is not None:
        return min(MAX_RETRY_AFTER, retry_after)
    return Backoff(base, MAX_RETRY_GAP).delay(attempt)


async def generate_media(
    ctx: dict[str, Any], job_id: str, trace: dict[str, str] | None = None
) -> str:
    """The arq task. `trace`: the submit's span context, when tracing is on."""
    res: Resources = ctx["resources"]
    ctx[RUNNING] = ctx.get(RUNNING, 0) + 1
    try:
        with (
            JOBS_IN_PROGRESS.track_inprogress(),
            tracing.continued("job.run", trace, job_id=job_id),
        ):
            outcome = await _run(res, job_id)
        if outcome.ended:
            ctx[ENDED] = ctx.get(ENDED, 0) + 1  # the pool's throughput, for queue ETAs
        if outcome == Outcome.SUPERSEDED:
            # arq would now delete the in-progress lock and the queued job that another worker
            # holds (arq_seam.ResilientWorker reads this).
            ctx[SUPERSEDED_JOBS].add(job_id)
        return outcome
    except OUTAGE_ERRORS as exc:
        outage = translated(exc)
        if not isinstance(outage, UnavailableError):
            raise
        # The database, Redis or storage is away: run the job again once it is back (an attempt
        # that had started counts; its outputs are overwritten next time).
        log.warning("job.deferred job_id=%s part=%s", job_id, outage.part)
        raise Retry(defer=OUTAGE_RETRY_SECONDS) from exc
    finally:
        ctx[RUNNING] -= 1


async def _run(res: Resources, job_id: str) -> Outcome:
    caps = res.settings.provider_caps()
    slot: str | None = None
    if caps:
        # The provider's pool-wide cap: without a slot, the job waits in the queue, not in a
        # worker. Which provider it needs, the row says.
        if await job_service.cancel_if_late(res, job_id) is not None:
            return Outcome.CANCELED
        waiting = await res.jobs.read(job_id)
        if waiting is None or waiting.status in TERMINAL_STATUSES:
            log.info("job.skipped job_id=%s", job_id)
            return Outcome.SKIPPED
        if waiting.provider in caps:
            slot = waiting.provider
            lease = res.settings.job_lease_seconds
            ns = res.settings.redis_namespace
            if not await acquire_slot(res.redis, ns, caps, slot, job_id, lease):
                raise Retry(defer=random.uniform(0.5, 1.5))
    outcome: Outcome | None = None
    try:
        started = await res.jobs.start_attempt(job_id)
        if started is None:
            # Late (it ends unstarted, and says so), or gone, deleted or ended.
            if await job_service.cancel_if_late(res, job_id) is not None:
                return Outcome.CANCELED
            log.info("job.skipped job_id=%s", job_id)
            return Outcome.SKIPPED
        outcome = await _attempt(res, started.job, started.key, [], started.job.provider)
        return outcome
    finally:
        # A superseded attempt's slot is the newer attempt's now (both hold it as the job).
        if slot is not None and outcome != Outcome.SUPERSEDED:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await release_slot(res.redis, res.settings.redis_namespace, slot, job_id)


async def _attempt(
    res: Resources, job: Job, key: VirtualKey, outputs: list[MediaObject], provider: str
) -> Outcome:
    started = time.monotonic()
    job_id = job.id
    if job.attempts > 1:
        # A re-run keeps what an earlier attempt recorded until it overwrites it.
        async with res.sessionmaker() as session:
            outputs = (await outputs_of(session, [job_id]))[job_id]
    run = JobRun(res, job, key, outputs)
    if job.attempts == 1 and job.started_at is not None:
        waited = (as_utc(job.started_at) - as_utc(job.created_at)).total_seconds()
        QUEUE_WAIT.labels(str(job.type), job.provider, job.model).observe(max(0.0, waited))
    try:
        async with held_lease(res, job_id, attempt=run.attempt, slot=provider) as lease:
            run.lease = lease
            if job.tries > res.settings.max_tries_for(job.type):
                # Earlier attempts died with their workers (killed, out of memory): stop trying.
                outcome = await run.fail(
                    ErrorCode.WORKER_LOST, "The job's workers stopped repeatedly."
                )
                log.warning(
                    "job.failed job_id=%s code=worker_lost attempts=%d", job_id, job.attempts
                )
                return outcome
            log.info(
                "job.started job_id=%s provider=%s attempt=%d try=%d",
                job_id,
                job.provider,
                job.attempts,
                job.tries,
            )
            await run.publish(EventType.STARTED)  # its `attempts` says which attempt this is
            return await _execute(run, started)
    except Superseded:
        return await _after_superseded(run)
    except Stopped:
        log.info("job.stopped job_id=%s attempt=%d", job_id, run.attempt)
        await _cancel_upstream(run)
        return Outcome.CANCELED
    finally:
        # Outputs the provider returned but the attempt's end did not record: billed anyway.
        await run.bill.settle(res, job_id)


async def _after_superseded(run: JobRun) -> Outcome:
    """The attempt lost the job. If its owner canceled it meanwhile (and no attempt took over),
    the upstream task is this attempt's to cancel; otherwise it may be the newer attempt's."""
    if isinstance(await run.fenced_out(), Superseded):
        log.warning("job.superseded job_id=%s attempt=%d", run.job.id, run.attempt)
        return Outcome.SUPERSEDED
    log.info("job.stopped job_id=%s attempt=%d", run.job.id, run.attempt)
    await _cancel_upstream(run)
    return Outcome.CANCELED


def _remaining_seconds(res: Resources, job: Job) -> float:
    """The job's per-type deadline counts from its first start, across retries and fallbacks."""
    first_start = as_utc(job.started_at or utcnow())
    elapsed = (utcnow() - first_start).total_seconds()
    return res.settings.timeout_for(job.type) - elapsed


async def _execute(run: JobRun, started: float) -> Outcome:
    """The attempt's state machine, from running to its outcome. Each way out is one arm:

    - outputs stored             -> succeeded
    - no output, input gone      -> failed (provider_error, invalid_request)
    - over the storage quota     -> failed (storage_quota_exceeded), its outputs deleted
    - out of time                -> failed (timeout)
    - the provider's error       -> retried, moved to the next target, or failed with its code
    - an outage of ours          -> retried later (arq), the job not failed
    - a bug of ours              -> failed (internal_error)
    - stopped, superseded, interrupted: raised, for `_attempt` to decide."""
    res, job = run.res, run.job
    provider = res.providers.get(job.provider)
    if provider is None:
        return await run.fail(
            ErrorCode.PROVIDER_UNAVAILABLE, f"provider {job.provider!r} is not configured"
        )
    remaining = _remaining_seconds(res, job)
    if remaining <= 0:
        return await _timed_out(run)
    try:
        async with asyncio.timeout(remaining):
            stored = await _generate(run, provider, remaining)
    except Stopped:
        raise  # Superseded too: `_attempt` decides what a stop means
    except InputGone as exc:
        return await run.fail(ErrorCode.INVALID_REQUEST, str(exc))
    except OverQuota:
        return await _over_quota(run)
    except TimeoutError:
        return await _timed_out(run)
    except ProviderError as exc:
        return await _after_provider_error(run, exc)
    except asyncio.CancelledError:
        # The owner canceled (the API already marked the job), this worker is stopping (arq runs
        # the job again and the re-run resumes what we started), or the lease was lost, in which
        # case nothing more is written: `held_lease` turns this into Superseded.
        if not run.lease_lost:
            log.info("job.interrupted job_id=%s", job.id)
            await _cancel_upstream(run)
        raise
    except Exception as exc:
        return await _after_our_error(run, exc)
    if stored == 0:
        return await run.fail(ErrorCode.PROVIDER_ERROR, "The provider returned no output.")
    await run.finish(JobStatus.SUCCEEDED)
    log.info(
        "job.succeeded job_id=%s provider=%s outputs=%d ms=%d",
        job.id,
        job.provider,
        len(run.outputs),
        (time.monotonic() - started) * 1000,
    )
    return Outcome.SUCCEEDED


async def _generate(run: JobRun, provider: Provider, remaining: float) -> int:
    """Call the provider and store each output as it arrives; how many it returned. `remaining`:
    seconds left before the job's time limit."""
    res, job = run.res, run.job
    files = await load_files(res, job)
    media_type: MediaType = job.type
    request = GenerationRequest(
        job.id,
        media_type,
        job.provider_model,
        job.input,
        job.provider_task_id,
        files,
        priority=str(job.priority),
        deadline_seconds=remaining,
    )
    index = 0
    labels = (str(job.type), job.provider, job.model)
    with (
        PROVIDER_TIME.labels(*labels).time(),
        tracing.span("provider.generate", provider=job.provider, model=job.model),
    ):
        async for media in provider.generate(request, run):
            run.bill.output(res, job, index)
            await run.store_output(index, media)
            index += 1
    return index


async def _over_quota(run: JobRun) -> Outcome:
    """A job over its key's storage quota stores nothing."""
    await run.discard_outputs("quota")
    key = run.key
    outcome = await run.fail(
        ErrorCode.STORAGE_QUOTA_EXCEEDED,
        f"The outputs would take the key over its storage quota "
        f"({key.max_bytes} bytes, {key.max_objects} objects); nothing was stored.",
    )
    log.warning("job.failed job_id=%s code=storage_quota_exceeded", run.job.id)
    return outcome


async def _after_our_error(run: JobRun, exc: Exception) -> Outcome:
    """The database, Redis or storage is down: not the job's fault, so not its failure (the
    attempt counts: a job cannot retry forever; its outputs are overwritten next). Anything else
    is a bug of ours, and the job fails."""
    job = run.job
    if isinstance(outage := translated(exc), UnavailableError):
        delay = retry_delay(job.tries, run.res.settings.retry_base_seconds)
        log.warning("job.retrying job_id=%s part=%s in=%.1fs", job.id, outage.part, delay)
        raise Retry(defer=delay) from exc
    # Type and frames only: an exception's message may quote the prompt.
    frames = "".join(traceback.format_tb(exc.__traceback__)[-3:])
    log.error("job.crashed job_id=%s error=%s\n%s", job.id, type(exc).__name__, frames)
    return await run.fail(ErrorCode.INTERNAL_ERROR, "The job failed inside mediagate.")


async def _timed_out(run: JobRun) -> Outcome:
    """The job's time limit passed (before this attempt began, or during it)."""
    outcome = await run.fail(ErrorCode.TIMEOUT, "The job did not finish within its time limit.")
    log.warning("job.failed job_id=%s code=timeout attempt=%d", run.job.id, run.attempt)
    return outcome


async def _after_provider_error(run: JobRun, exc: ProviderError) -> Outcome:
    """Retry the same target, fall back to the next one, or fail with the error's code."""
    res, job = run.res, run.job
    if exc.retryable:
        if job.tries < res.settings.max_tries_for(job.type):
            delay = retry_delay(job.tries, res.settings.retry_base_seconds, exc.retry_after)
            log.warning(
                "job.retrying job_id=%s code=%s in=%.1fs upstream=%r",
                job.id,
                exc.code,
                delay,
                exc.message[:300],
            )
            RETRIES.labels(job.provider, exc.code).inc()
            await run.publish(EventType.RETRYING, error={"code": exc.code, "message": exc.public})
            raise Retry(defer=delay) from exc
        target = _next_target(res, job)
        if target is not None:
            index, spec = target
            try:
                job_input = validate_input(spec, job.request or job.input)
            except MediagateError:
                job_input = None  # validated at submit; a changed catalog may still refuse it
            if job_input is None:
                return await run.fail(exc.code, exc.public)
            if not await res.jobs.fall_back(job.id, run.attempt, index, spec, job_input):
                raise await run.fenced_out()
            FALLBACKS.labels(job.provider).inc()
            log.warning(
                "job.fallback job_id=%s from=%s to=%s code=%s",
                job.id,
                job.provider,
                target[1].provider,
                exc.code,
            )
            raise Retry(defer=0) from exc
    outcome = await run.fail(exc.code, exc.public)
    # The upstream's own words stay here: they may name our account. One line, bounded.
    log.warning("job.failed job_id=%s code=%s upstream=%r", job.id, exc.code, exc.message[:300])
    return outcome


def _next_target(res: Resources, job: Job) -> tuple[int, ModelSpec] | None:
    """The next fallback target whose provider this worker has, with its index, if any."""
    for index in range(job.target_index + 1, len(job.targets)):
        spec = res.catalog.get(job.targets[index])
        if spec is not None and spec.provider in res.providers:
            return index, spec
    return None


async def _cancel_upstream(run: JobRun) -> None:
    """When the owner canceled, stop the upstream task too (a stopping worker leaves it to the
    re-run instead)."""
    job = run.job
    task_id = job.provider_task_id
    if task_id is None:
        return
    try:
        async with asyncio.timeout(10):
            fresh = await run.res.jobs.read(job.id)
    except Exception:
        return
    # Only this attempt's: a newer attempt may have resumed the task.
    if fresh is None or fresh.status != JobStatus.CANCELED or fresh.attempts != run.attempt:
        return
    provider = run.res.providers.get(job.provider)
    if provider is None:
        return
    try:
        await asyncio.shield(asyncio.wait_for(provider.cancel(task_id), timeout=10))
        log.info("job.upstream_canceled job_id=%s provider=%s", job.id, job.provider)
    except (ProviderError, TimeoutError, asyncio.CancelledError) as exc:
        log.warning("job.upstream_cancel_failed job_id=%s error=%s", job.id, type(exc).__name__)
