"""A short lease on a running task, renewed while it runs: arq's in-progress lock in Redis (arq's
own lasts the whole job timeout, hours for video) and, for a generation attempt, the job's
heartbeat in the database. If the worker dies, the lock lapses within one lease and another
worker runs the job again; if Redis lost the job too, the outbox reconciler sees the silent
heartbeat and queues it again.

The heartbeat is fenced by attempt (the job store's `hold`), so it is also how a worker learns
that it lost a job: a renewal that finds another attempt (or the job ended by its owner), or no
renewal for a whole lease (the worker was cut off or paused; another worker may have taken
over), cancels the attempt at once. `held_lease` then raises `Superseded` in place of the
cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from app.platform.arq_seam import in_progress_key
from app.platform.limits import acquire_slot
from app.platform.resources import Resources

log = logging.getLogger("mediagate.worker")


class Stopped(Exception):
    """The job stopped running under us (canceled by its owner)."""


class Superseded(Stopped):
    """Another attempt took the job over (this one's worker was cut off or paused past its lease):
    this attempt ends quietly, with no event, no webhook and no cancel of the upstream task that
    the newer attempt may have resumed."""


@dataclass(slots=True)
class Lease:
    job_id: str
    attempt: int | None
    """The generation attempt the lease fences; None for tasks that are not attempts."""
    lost: bool = False
    closing: bool = False
    """Set once the attempt records its end (a fenced write): let it, rather than cancel it."""


async def _renew_once(res: Resources, lease: Lease, slot: str | None, first: bool) -> bool | None:
    """True: the lease is ours. False: another attempt holds the job, or it ended. None: a store
    did not answer, so nothing is known."""
    settings = res.settings
    lease_ms = settings.job_lease_seconds * 1000
    held: bool | None = True
    if lease.attempt is not None and not first:
        try:
            if not await res.jobs.hold(lease.job_id, lease.attempt):
                return False
        except Exception:
            held = None
    # Redis may be down a while, or restarted empty (the lock is set again, if nobody took it);
    # the database's attempt number has the last word.
    key = in_progress_key(lease.job_id)
    with contextlib.suppress(Exception):
        if not await res.redis.pexpire(key, lease_ms):
            await res.redis.set(key, b"1", px=lease_ms, nx=True)
    if slot is not None and not first:
        with contextlib.suppress(Exception):
            await acquire_slot(
                res.redis,
                settings.redis_namespace,
                settings.provider_caps(),
                slot,
                lease.job_id,
                settings.job_lease_seconds,
            )
    return held


async def _renew(
    res: Resources, lease: Lease, owner: asyncio.Task[object], slot: str | None
) -> None:
    seconds = res.settings.job_lease_seconds
    period = seconds / 3
    last_held = time.monotonic()
    first = True
    while True:
        try:
            # Bounded: a connection that stopped forwarding (a partition) would hang forever.
            async with asyncio.timeout(period):
                held = await _renew_once(res, lease, slot, first)
        except TimeoutError:
            held = None
        now = time.monotonic()
        if held:
            last_held = now
        elif lease.attempt is not None and (held is False or now - last_held > seconds):
            lease.lost = True
            log.warning(
                "job.lease_lost job_id=%s attempt=%d reason=%s",
                lease.job_id,
                lease.attempt,
                "taken" if held is False else "unrenewed",
            )
            if not lease.closing:
                owner.cancel()
            return
        first = False
        await asyncio.sleep(period)


@contextlib.asynccontextmanager
async def held_lease(
    res: Resources,
    job_id: str,
    *,
    attempt: int | None = None,
    slot: str | None = None,
) -> AsyncIterator[Lease]:
    """`attempt`, the generation attempt whose heartbeat fences the lease (tasks that are not
    attempts have no job row to beat); `slot`, the provider whose pool-wide slot the job holds and
    renews with its lease."""
    owner = asyncio.current_task()
    assert owner is not None
    lease = Lease(job_id, attempt)
    renewer = asyncio.create_task(_renew(res, lease, owner, slot))
    try:
        yield lease
    except asyncio.CancelledError as exc:
        # Our own cancellation (and no other, such as a worker shutdown, beside it): the attempt
        # lost its lease and ends quietly.
        if lease.lost and owner.uncancel() == 0:
            raise Superseded("the lease was lost") from exc
        raise
    finally:
        renewer.cancel()
        try:
            await asyncio.wait({renewer})  # raises only if the owner itself is cancelled
        except asyncio.CancelledError:
            # The lost lease's cancellation arrived after the body had ended: nothing to stop.
            if not (lease.lost and owner.uncancel() == 0):
                raise
