"""Redis unreachable: the failover limiter decides locally (or refuses when told to fail closed), then returns
to Redis by itself. Driven by an injected clock; no sleeps."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.ratelimit.base import Decision, LimiterUnavailable, WindowConfig
from gateway.ratelimit.failover import FailoverRateLimiter
from gateway.ratelimit.local import LocalRateLimiter
from tests.support.clock import ManualClock

CONFIG = WindowConfig(window=60, buckets=60)


class FlakyRedis:
    """A stand-in for the Redis limiter that fails while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0
        self.backing = LocalRateLimiter(CONFIG)

    @property
    def config(self) -> WindowConfig:
        return CONFIG

    async def hit(self, key: str, limit: int, *, revocation_keys: Sequence[str] = (), cost: int = 1) -> Decision:
        self.calls += 1
        if self.down:
            raise RedisConnectionError("refused")
        return await self.backing.hit(key, limit, cost=cost)

    async def peek(self, key: str, limit: int) -> Decision:
        return await self.hit(key, limit, cost=0)

    async def close(self) -> None:
        await self.backing.close()


def build(primary: FlakyRedis, clock: ManualClock, *, fail_open: bool) -> FailoverRateLimiter:
    return FailoverRateLimiter(
        primary, LocalRateLimiter(CONFIG), fail_open=fail_open, registry=CollectorRegistry(), clock=clock
    )


def degraded(limiter: FailoverRateLimiter) -> bool:
    return limiter.degraded


async def test_falls_back_and_recovers() -> None:
    primary, clock = FlakyRedis(), ManualClock(100.0)
    limiter = build(primary, clock, fail_open=True)
    assert (await limiter.hit("k", 2)).allowed
    primary.down = True
    assert (await limiter.hit("k", 2)).allowed  # local limiter, fresh count
    assert degraded(limiter)
    calls = primary.calls
    assert (await limiter.hit("k", 2)).allowed
    assert not (await limiter.hit("k", 2)).allowed  # the local limiter still limits
    assert primary.calls == calls  # the breaker keeps the dead Redis out of the request path
    primary.down = False
    clock.advance(1.5)
    decision = await limiter.hit("k", 2)
    assert primary.calls == calls + 1
    assert not degraded(limiter)
    assert decision.remaining == 0  # Redis's own count again (1 before the outage, 2 now)


async def test_fail_closed_refuses() -> None:
    primary, clock = FlakyRedis(), ManualClock(100.0)
    primary.down = True
    limiter = build(primary, clock, fail_open=False)
    with pytest.raises(LimiterUnavailable):
        await limiter.hit("k", 5)
    with pytest.raises(LimiterUnavailable):
        await limiter.peek("k", 5)
