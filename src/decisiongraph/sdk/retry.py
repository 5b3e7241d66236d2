"""Retry policy: exponential backoff with full jitter, honouring Retry-After.

Appends are retried with the same idempotency keys, so a retry after a lost
response can never store an event twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 6
    base: float = 0.1
    cap: float = 5.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            try:
                return min(max(float(retry_after), 0.0), 60.0)
            except ValueError:
                pass
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)
