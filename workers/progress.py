"""An attempt's progress in the database: every step is an event (live on SSE), but the row, which
answers `GET /v1/jobs/{id}`, takes the latest step at most once a second: at once if its last
write is a second old, else when it is (a timer). Each write is fenced by the attempt."""

from __future__ import annotations

import asyncio
import logging
import time

from app.platform.job_store import JobStore

log = logging.getLogger("mediagate.worker")

SAVE_SECONDS = 1.0


class ProgressWriter:
    def __init__(self, store: JobStore, job_id: str, attempt: int) -> None:
        self.store = store
        self.job_id = job_id
        self.attempt = attempt
        self.progress = 0
        self._saved_at = time.monotonic()
        """Starting the attempt wrote the job's row: a job done within a second writes no
        progress but its end."""
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[bool]] = set()

    async def step(self, progress: int) -> bool:
        """Take a new step; False if the job no longer runs this attempt (the write now
        found so)."""
        self.progress = progress
        wait = self._saved_at + SAVE_SECONDS - time.monotonic()
        if wait <= 0:
            return await self._save()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._flush)
        return True

    def stop(self) -> None:
        """The attempt's end writes the progress itself: no pending write."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _save(self) -> bool:
        self._saved_at = time.monotonic()
        return await self.store.set_progress(self.job_id, self.attempt, self.progress)

    def _flush(self) -> None:
        # A write fenced by attempt: should the run have ended or lost the job meanwhile, it
        # changes nothing, so it needs no cleanup.
        self._timer = None
        task = asyncio.create_task(self._save())
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[bool]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("job.progress_not_saved job_id=%s", self.job_id)
