"""The in-process rate limiter: the same algorithm as the Redis one (see ``base``), for one process only.

Unit tests use it with an injected clock, and the failover limiter falls back to it while Redis is down. It
cannot see other replicas, so during an outage each gateway admits up to the full limit on its own.
Revocation markers live in Redis, so this limiter never reports ``revoked``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from gateway.ratelimit.base import Buckets, Decision, WindowConfig, evaluate

Clock = Callable[[], float]
_SWEEP_EVERY = 4096


class LocalRateLimiter:
    def __init__(self, config: WindowConfig, *, clock: Clock = time.time, max_keys: int = 100_000) -> None:
        self._config = config
        self._clock = clock
        self._max_keys = max_keys
        self._counts: dict[str, Buckets] = {}
        self._hits = 0

    @property
    def config(self) -> WindowConfig:
        return self._config

    async def hit(self, key: str, limit: int, *, revocation_keys: Sequence[str] = (), cost: int = 1) -> Decision:
        return self._apply(key, limit, cost)

    async def peek(self, key: str, limit: int) -> Decision:
        return self._apply(key, limit, 0)

    async def close(self) -> None:
        """Nothing to release: the counts live in this process."""

    def _apply(self, key: str, limit: int, cost: int) -> Decision:
        now = self._clock()
        buckets = self._counts.get(key) or Buckets()
        state = evaluate(buckets, now, limit, cost, self._config)
        if state.allowed and cost > 0:
            self._counts[key] = buckets
            self._maybe_sweep(now)
        return Decision(
            allowed=state.allowed,
            limit=limit,
            remaining=max(limit - state.total, 0),
            reset=state.reset,
            retry_after=state.retry_after,
        )

    def _maybe_sweep(self, now: float) -> None:
        """Forget idle identities now and then, so memory follows the active ones, not every one ever seen."""
        self._hits += 1
        if self._hits % _SWEEP_EVERY and len(self._counts) < self._max_keys:
            return
        oldest = int(now // self._config.width) - self._config.buckets
        idle = [key for key, buckets in self._counts.items() if not buckets.counts or buckets.last < oldest]
        for key in idle:
            del self._counts[key]
        while len(self._counts) >= self._max_keys:  # still full of active keys: drop the oldest inserted
            del self._counts[next(iter(self._counts))]
