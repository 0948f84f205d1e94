"""A simulated flaky external dependency, the demo of a circuit breaker protecting a slow or failing call."""

from __future__ import annotations

import asyncio
import random
import time


class ExternalFailure(Exception):
    """The dependency answered with an error."""


class FlakyDependency:
    """Answers after ``latency_ms``; fails with probability ``failure_rate`` (both adjustable at run time)."""

    def __init__(self, *, failure_rate: float, latency_ms: float, rng: random.Random | None = None) -> None:
        self.failure_rate = failure_rate
        self.latency_ms = latency_ms
        self._rng = rng or random.Random()

    async def call(self) -> dict[str, object]:
        if self.latency_ms:
            await asyncio.sleep(self.latency_ms / 1000)
        if self._rng.random() < self.failure_rate:
            raise ExternalFailure("the external dependency returned an error")
        return {"quote": self._rng.randint(1, 1_000_000), "fetched_at": time.time()}
