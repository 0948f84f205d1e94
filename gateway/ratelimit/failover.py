"""Redis first, the local limiter while Redis is unreachable, and back to Redis on its own.

::

    hit ──► breaker closed? ──yes──► Redis script ──ok──► decision
               │ no (open: skip Redis         │ RedisError / OSError / timeout
               │  until its timeout)          ▼
               └──────────────────────► record failure ──► fail_open? ──yes──► local limiter
                                                                 └──no──► LimiterUnavailable (503)

A circuit breaker (1 s, doubling to 5 s) keeps a dead Redis from costing every request a connect timeout;
after the timeout one trial request goes to Redis, and its success closes the breaker, so the gateway returns
to the shared counters without anyone touching it. Transitions are logged once as warnings and exported as
``ratelimit_backend_degraded`` (1 while falling back) and ``ratelimit_fallback_total``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.exceptions import RedisError

from gateway.ratelimit.base import Decision, LimiterUnavailable, RateLimiter, WindowConfig
from shared.breaker import CLOSED, AsyncCircuitBreaker, BreakerOpen

_log = structlog.get_logger("gateway.ratelimit")
BACKEND_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


class FailoverRateLimiter:
    def __init__(
        self,
        primary: RateLimiter,
        fallback: RateLimiter,
        *,
        fail_open: bool,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._fail_open = fail_open
        self._degraded = Gauge(
            "ratelimit_backend_degraded",
            "1 while rate limits are decided without Redis.",
            registry=registry,
            multiprocess_mode="livemax",  # with several workers: 1 while any of them is degraded
        )
        self._fallbacks = Counter(
            "ratelimit_fallback",
            "Rate-limit decisions made without Redis (local limiter or refusal).",
            registry=registry,
        )
        self.breaker = AsyncCircuitBreaker(
            "ratelimit-redis",
            fail_max=1,
            reset_timeout=1.0,
            # Redis back must mean Redis used within seconds: the retry interval doubles 1 s -> 2 s and stops
            # there (a 5 s cap measured 5.01 s recovery after a 10 s outage, over the 5 s promise).
            max_reset_timeout=2.0,
            clock=clock,
            on_state_change=self._on_state_change,
        )

    @property
    def config(self) -> WindowConfig:
        return self._primary.config

    @property
    def degraded(self) -> bool:
        return self.breaker.state != CLOSED

    async def hit(self, key: str, limit: int, *, revocation_keys: Sequence[str] = (), cost: int = 1) -> Decision:
        try:
            async with self.breaker.guard():
                return await self._primary.hit(key, limit, revocation_keys=revocation_keys, cost=cost)
        except (BreakerOpen, *BACKEND_ERRORS) as exc:
            return await self._fall_back(exc, lambda: self._fallback.hit(key, limit, cost=cost))

    async def peek(self, key: str, limit: int) -> Decision:
        try:
            async with self.breaker.guard():
                return await self._primary.peek(key, limit)
        except (BreakerOpen, *BACKEND_ERRORS) as exc:
            return await self._fall_back(exc, lambda: self._fallback.peek(key, limit))

    async def close(self) -> None:
        await self._primary.close()
        await self._fallback.close()

    async def _fall_back(self, exc: BaseException, local: Callable[[], Awaitable[Decision]]) -> Decision:
        self._fallbacks.inc()
        if not self._fail_open:
            raise LimiterUnavailable(type(exc).__name__) from None
        return await local()

    def _on_state_change(self, breaker: AsyncCircuitBreaker, old: str, new: str) -> None:
        self._degraded.set(0 if new == CLOSED else 1)
        if new == "open" and old == CLOSED:
            mode = "local limiter (fail open)" if self._fail_open else "refusing requests (fail closed)"
            _log.warning("ratelimit_redis_unavailable", fallback=mode)
        elif new == CLOSED:
            _log.warning("ratelimit_redis_recovered")
