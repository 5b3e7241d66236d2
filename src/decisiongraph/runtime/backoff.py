"""Exponential backoff with full jitter, as a pure function of the attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 0.1
    cap: float = 30.0
    factor: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (attempt >= 1).

        Jitter spreads restarts of many workers so they do not retry in step.
        """
        ceiling = min(self.cap, self.base * self.factor ** max(attempt - 1, 0))
        return (rng or random).uniform(ceiling / 2, ceiling)
