"""How an attempt at a job came out: the job's end (which this attempt recorded) or one of the
two ways an attempt ends without one."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    """By its owner, or as a late job never started."""
    SUPERSEDED = "superseded"
    """Another attempt took the job over; arq's bookkeeping of it is that worker's."""
    SKIPPED = "skipped"
    """Nothing to run: the job was gone, deleted or already ended when its task ran."""

    @property
    def ended(self) -> bool:
        """The job ended with this attempt (the pool's throughput counts it)."""
        return self in (Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CANCELED)
