"""The Lua script is a port of ``base.evaluate``: both limiters give the same verdicts on the same schedule.

A seeded random schedule of hits and peeks over several identities, with bursts, costs above one, a limit that
changes, and pauses shorter and longer than a window, runs against the in-process limiter and the Redis one side
by side; every field of every decision must agree. The Redis hash also stays bounded by the window.
"""

from __future__ import annotations

import random

import pytest
import redis.asyncio as aioredis

from gateway.ratelimit.base import Decision, WindowConfig
from gateway.ratelimit.local import LocalRateLimiter
from gateway.ratelimit.redis import RedisRateLimiter, bucket_key
from tests.support.clock import ManualClock

pytestmark = pytest.mark.integration

CONFIG = WindowConfig(window=6.0, buckets=6)


def _fields(decision: Decision) -> tuple[bool, int, int, float, float, bool]:
    # The script answers whole milliseconds (rounded up); the local limiter keeps floats.
    reset_ms = max(-(-round(decision.reset * 1e6) // 1000), 0)
    retry_ms = max(-(-round(decision.retry_after * 1e6) // 1000), 0)
    return decision.allowed, decision.limit, decision.remaining, reset_ms / 1000, retry_ms / 1000, decision.revoked


def _advance_ms(clock: ManualClock, seconds: float) -> None:
    """Whole milliseconds, as the script receives the time, so both limiters see the same instant."""
    clock.advance_to(round((clock.now + seconds) * 1000) / 1000)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_local_and_redis_agree_on_every_decision(redis_url: str, seed: int) -> None:
    rng = random.Random(seed)
    clock = ManualClock(start=1_700_000_000.0)
    local = LocalRateLimiter(CONFIG, clock=clock)
    client = aioredis.from_url(redis_url)
    try:
        remote = RedisRateLimiter(client, CONFIG, clock=clock)
        refused = admitted = 0
        for _ in range(1500):
            key = rng.choice(["a", "b", "c"])
            limit = rng.choice([5, 5, 5, 8, 3])
            if rng.random() < 0.1:
                pair = (await local.peek(key, limit), await remote.peek(key, limit))
            else:
                cost = rng.choice([1, 1, 1, 1, 2, 3])
                pair = (await local.hit(key, limit, cost=cost), await remote.hit(key, limit, cost=cost))
            assert _fields(pair[0]) == _fields(pair[1])
            admitted += pair[0].allowed
            refused += not pair[0].allowed
            pause = rng.random()
            if pause < 0.02:
                _advance_ms(clock, rng.uniform(CONFIG.window, 3 * CONFIG.window))  # everything leaves the window
            elif pause < 0.3:
                _advance_ms(clock, rng.uniform(0.0, CONFIG.width * 2.5))
        assert admitted > 100
        assert refused > 100
        for key in ("a", "b", "c"):
            stored = await client.hgetall(bucket_key(key))
            bucket_fields = [name for name in stored if name not in (b"t", b"f", b"l")]
            assert len(bucket_fields) <= CONFIG.buckets + 1
            total = sum(int(stored[name]) for name in bucket_fields)
            assert total == int(stored.get(b"t", b"0"))
        await remote.close()
    finally:
        await client.aclose()


async def test_an_idle_identity_expires_from_redis(redis_url: str) -> None:
    clock = ManualClock(start=1_700_000_000.0)
    client = aioredis.from_url(redis_url)
    try:
        limiter = RedisRateLimiter(client, CONFIG, clock=clock)
        await limiter.hit("idle", 5)
        ttl_ms = await client.pttl(bucket_key("idle"))
        assert 0 < ttl_ms <= (CONFIG.buckets + 1) * CONFIG.width * 1000 + 1000
        await limiter.close()
    finally:
        await client.aclose()
