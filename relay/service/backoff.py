"""Capped exponential backoff with full jitter (AWS architecture blog, 2015).

Each failure doubles the ceiling up to ``cap``; the delay is drawn uniformly
from [0, ceiling] so many clients that lost the same server do not return in
lock-step. ``reset()`` after a success.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    def __init__(
        self,
        base: float = 1.0,
        cap: float = 300.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._uniform = uniform
        self.failures = 0

    def ceiling(self) -> float:
        """The largest delay the next failure may draw."""
        return min(self.cap, self.base * 2.0 ** min(self.failures, 62))

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before retrying."""
        ceiling = self.ceiling()
        self.failures += 1
        return self._uniform(0.0, ceiling)

    def reset(self) -> None:
        self.failures = 0
