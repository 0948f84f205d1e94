"""One backend: its connection pools, circuit breaker, health state, drain flag and traffic statistics."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable

from shared.breaker import OPEN, AsyncCircuitBreaker
from shared.upstream import Upstream

Clock = Callable[[], float]
_LATENCY_SAMPLES = 1024
_EWMA_ALPHA = 0.1


class HealthState:
    """Active health: ``rise`` consecutive passing checks bring a backend up, ``fall`` failing ones take it down.

    Until the first check the backend is optimistically up (traffic flows from the first second), but it does
    not count as serving (``passed``) for the balancer's readiness; the first check's verdict is taken at once.
    As in HAProxy, ``rise`` applies only to a backend that was *seen down*: one that passes its first check, or
    its first after failing only while it was still starting (``starting=True``: inside the start-up grace period
    and never passed), is in rotation at once.
    """

    def __init__(self, *, rise: int, fall: int) -> None:
        self.rise = rise
        self.fall = fall
        self.up = True
        self.checked = False
        self.passed = False  # a check has passed at least once: the backend has served
        self.seen_down = False  # failed a check outside its start-up grace: coming back needs ``rise`` passes
        self.passes = 0
        self.fails = 0
        self.last_check: float | None = None
        self.last_error: str | None = None

    def record(self, ok: bool, now: float, error: str | None = None, *, starting: bool = False) -> bool:
        """Count one check; True when it changed ``up``. ``starting``: the backend is inside its start-up grace
        and has never passed, so a failure takes it out of rotation without marking it seen down."""
        first = not self.checked
        self.checked = True
        self.last_check = now
        if ok:
            self.passes += 1
            self.fails = 0
            self.last_error = None
            self.passed = True
            if not self.up and (self.passes >= self.rise or not self.seen_down):
                self.up = True
                return True
            return False
        self.fails += 1
        self.passes = 0
        self.last_error = error
        self.seen_down = self.seen_down or not starting
        if self.up and (first or starting or self.fails >= self.fall):
            self.up = False
            return True
        return False


class LatencyStats:
    """Time to response head: an EWMA plus a ring of recent samples for percentiles."""

    def __init__(self) -> None:
        self.ewma: float | None = None
        self._samples: deque[float] = deque(maxlen=_LATENCY_SAMPLES)

    def observe(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.ewma = seconds if self.ewma is None else self.ewma + _EWMA_ALPHA * (seconds - self.ewma)

    def percentile(self, fraction: float) -> float | None:
        if not self._samples:
            return None
        ordered = sorted(self._samples)
        index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
        return ordered[index]


class Backend:
    def __init__(
        self,
        backend_id: str,
        url: str,
        weight: float,
        *,
        upstream: Upstream,
        health_upstream: Upstream,
        breaker: AsyncCircuitBreaker,
        health: HealthState,
    ) -> None:
        self.id = backend_id
        self.url = url
        self.weight = weight
        self.upstream = upstream
        self.health_upstream = health_upstream
        self.breaker = breaker
        self.health = health
        self.draining = False
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.latency = LatencyStats()
        self._idle = asyncio.Event()
        self._idle.set()

    def routable(self) -> bool:
        """May carry a normal request now: up, not draining, and the breaker closed or due for its trial."""
        return self.health.up and not self.draining and self.breaker.would_allow()

    def in_rotation(self, breaker_state: str | None = None) -> bool:
        """Up for the ``lb_backend_up`` gauge: healthy, not draining, breaker not open."""
        state = self.breaker.state if breaker_state is None else breaker_state
        return self.health.up and not self.draining and state != OPEN

    def begin(self) -> None:
        self.in_flight += 1
        self.requests += 1
        self._idle.clear()

    def end(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    def fail(self, error: str, now: float) -> None:
        self.failures += 1
        self.last_error = error
        self.last_error_at = now

    async def wait_idle(self, within: float) -> bool:
        """Wait until nothing is in flight (a drain); False when ``within`` seconds pass first."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def snapshot(self, now: float) -> dict[str, object]:
        p50 = self.latency.percentile(0.5)
        p99 = self.latency.percentile(0.99)
        return {
            "id": self.id,
            "url": self.url,
            "weight": self.weight,
            "healthy": self.health.up,
            "in_rotation": self.in_rotation(),
            "breaker": self.breaker.snapshot(),
            "draining": self.draining,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "failures": self.failures,
            "success_rate": round(1 - self.failures / self.requests, 4) if self.requests else None,
            "latency_ms": {
                "p50": _ms(p50),
                "p99": _ms(p99),
                "ewma": _ms(self.latency.ewma),
            },
            "last_error": self.last_error,
            "last_error_ago_s": None if self.last_error_at is None else round(now - self.last_error_at, 3),
            "last_check_ago_s": None if self.health.last_check is None else round(now - self.health.last_check, 3),
            "last_check_error": self.health.last_error,
            "open_connections": self.upstream.open_connections,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
