"""The one test clock: time that moves only when the test says so.

The product takes its time as ``clock: Callable[[], float]`` wherever it decides by time: monotonic clocks (the
circuit breakers, the balancer's pool and health checks, the rate-limit failover, login throttling) and wall
clocks (JWT expiry, the verified-token cache, the cache entries' expiry, the sliding-window rate limiter). A
:class:`ManualClock` is such a callable. It starts at an arbitrary instant (give ``start=time.time()`` when the
code under test compares its time with real timestamps, as the two-level cache does with entries in Redis) and
never goes backwards: tests move it with :meth:`advance` or :meth:`advance_to`, so they never sleep.
"""

from __future__ import annotations

__all__ = ["ManualClock"]


class ManualClock:
    """A clock tests drive by hand; call it for the time, as the product does."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def __call__(self) -> float:
        return self._now

    @property
    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass."""
        if seconds < 0:
            raise ValueError(f"a clock does not go backwards (advance by {seconds})")
        self._now += seconds

    def advance_to(self, instant: float) -> None:
        """Move to ``instant``, which must not be earlier than now."""
        self.advance(instant - self._now)
