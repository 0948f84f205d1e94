"""The same assertions over every rate limiter implementation (in-process and Redis), with a driven clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from gateway.ratelimit.base import RateLimiter, WindowConfig
from gateway.ratelimit.local import LocalRateLimiter
from gateway.ratelimit.redis import RedisRateLimiter
from tests.support.clock import ManualClock

CONFIG = WindowConfig(window=10.0, buckets=10)


@pytest.fixture
def local_limiter(clock: ManualClock) -> RateLimiter:
    return LocalRateLimiter(CONFIG, clock=clock)


@asynccontextmanager
async def redis_limiter_on(
    redis_url: str, clock: ManualClock | None
) -> AsyncIterator[tuple[RedisRateLimiter, aioredis.Redis]]:
    """A Redis limiter and its client, both closed on exit (the limiter first: it holds a connection)."""
    client = aioredis.from_url(redis_url)
    limiter = RedisRateLimiter(client, CONFIG, clock=clock)
    try:
        yield limiter, client
    finally:
        await limiter.close()
        await client.aclose()


@pytest.fixture
async def redis_limiter(clock: ManualClock, redis_url: str) -> AsyncIterator[RateLimiter]:
    async with redis_limiter_on(redis_url, clock) as (limiter, _):
        yield limiter


@pytest.fixture(params=["local_limiter", pytest.param("redis_limiter", marks=pytest.mark.integration)])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    """Each implementation in turn; only the Redis one needs a server."""
    implementation: RateLimiter = request.getfixturevalue(request.param)
    return implementation


async def test_admits_exactly_the_limit_then_refuses(limiter: RateLimiter) -> None:
    decisions = [await limiter.hit("user:1", 5) for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert decisions[-1].retry_after > 0


async def test_identities_are_independent(limiter: RateLimiter) -> None:
    for _ in range(3):
        assert (await limiter.hit("user:1", 3)).allowed
    assert not (await limiter.hit("user:1", 3)).allowed
    assert (await limiter.hit("user:2", 3)).allowed


async def test_capacity_returns_as_the_window_slides(limiter: RateLimiter, clock: ManualClock) -> None:
    assert (await limiter.hit("k", 2)).allowed
    clock.advance(5)
    assert (await limiter.hit("k", 2)).allowed
    refused = await limiter.hit("k", 2)
    assert not refused.allowed
    # The first request stops counting one window (plus at most one bucket) after it was made.
    assert 5.0 <= refused.retry_after <= 6.0 + 1e-6
    clock.advance(refused.retry_after)
    assert (await limiter.hit("k", 2)).allowed
    assert not (await limiter.hit("k", 2)).allowed


async def test_peek_does_not_count(limiter: RateLimiter) -> None:
    await limiter.hit("k", 3)
    for _ in range(5):
        state = await limiter.peek("k", 3)
        assert state.allowed
        assert state.remaining == 2
    assert (await limiter.hit("k", 3)).remaining == 1


async def test_never_more_than_the_limit_in_any_window(limiter: RateLimiter, clock: ManualClock) -> None:
    """Random bursts over three windows: count admissions in every window-long interval (the error bound)."""
    rng = random.Random(7)
    limit, admitted = 20, []
    start = clock.now
    while clock.now < start + 3 * CONFIG.window:
        for _ in range(rng.randint(0, 4)):
            if (await limiter.hit("burst", limit)).allowed:
                admitted.append(clock.now)
        clock.advance(rng.uniform(0.0, 0.3))
    assert len(admitted) > 2 * limit  # the window really slid
    for index, began in enumerate(admitted):
        in_window = [t for t in admitted[index:] if t < began + CONFIG.window]
        assert len(in_window) <= limit


async def test_refused_requests_do_not_count(limiter: RateLimiter, clock: ManualClock) -> None:
    await limiter.hit("k", 1)
    for _ in range(10):
        assert not (await limiter.hit("k", 1)).allowed
    clock.advance(CONFIG.window + CONFIG.width)
    assert (await limiter.hit("k", 1)).allowed


@pytest.mark.integration
async def test_redis_script_checks_revocation_in_the_same_call(redis_url: str, clock: ManualClock) -> None:
    async with redis_limiter_on(redis_url, clock) as (limiter, client):
        assert not (await limiter.hit("user:9", 5, revocation_keys=["auth:revoked:jti:x"])).revoked
        await client.set("auth:revoked:jti:x", b"1")
        decision = await limiter.hit("user:9", 5, revocation_keys=["auth:revoked:jti:y", "auth:revoked:jti:x"])
        assert decision.revoked
        assert not decision.allowed
        assert (await limiter.peek("user:9", 5)).remaining == 4  # the revoked request was not counted
        assert await client.exists("rl:{user:9}")


@pytest.mark.integration
async def test_redis_script_reloads_after_script_flush(redis_url: str, clock: ManualClock) -> None:
    async with redis_limiter_on(redis_url, clock) as (limiter, client):
        await limiter.hit("k", 5)
        await client.script_flush()
        assert (await limiter.hit("k", 5)).remaining == 3


@pytest.mark.integration
async def test_redis_uses_its_own_clock_by_default(redis_url: str) -> None:
    async with redis_limiter_on(redis_url, None) as (limiter, _):
        first = await limiter.hit("k", 2)
        assert first.allowed
        assert 0 < first.reset <= CONFIG.window + CONFIG.width
