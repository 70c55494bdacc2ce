"""The one retry policy: exponential backoff with full jitter in its upper half, capped."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float
    """Seconds before the second attempt (before jitter)."""
    cap: float
    """The longest wait between two attempts (before jitter)."""

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt number `attempt` (1 for the first) failed: half to all
        of `base * 2^(attempt-1)`, at most `cap`, so that many clients failing together do not
        retry together."""
        return float(
            min(self.cap, self.base * 2.0 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)
        )
