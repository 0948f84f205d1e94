"""The auto-pipelined limiter against a real Redis: many concurrent decisions share writes and stay exact."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.ratelimit.base import WindowConfig
from gateway.ratelimit.pipeline import ScriptPipeline
from gateway.ratelimit.redis import RedisRateLimiter

pytestmark = pytest.mark.integration

CONFIG = WindowConfig(window=60.0, buckets=60)


class RoundTrips:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def test_concurrent_decisions_are_exact_and_share_round_trips(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    trips = RoundTrips()
    limiter = RedisRateLimiter(client, CONFIG, on_round_trip=trips)
    try:
        decisions = await asyncio.gather(*(limiter.hit("burst", 50) for _ in range(300)))
        assert sum(decision.allowed for decision in decisions) == 50
        assert sorted(d.remaining for d in decisions if d.allowed) == list(range(50))
        assert all(d.retry_after > 0 for d in decisions if not d.allowed)
        assert trips.count < 300 / 4  # the 300 decisions went out in a few writes, not one each
    finally:
        await limiter.close()
        await client.aclose()


async def test_revocation_is_checked_for_each_call_of_a_batch(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    limiter = RedisRateLimiter(client, CONFIG)
    try:
        await client.set("auth:revoked:jti:gone", b"1")
        markers = ["auth:revoked:jti:gone" if n % 3 == 0 else "auth:revoked:jti:ok" for n in range(60)]
        calls = [limiter.hit("user:1", 100, revocation_keys=[marker]) for marker in markers]
        decisions = await asyncio.gather(*calls)
        assert [d.revoked for d in decisions] == [n % 3 == 0 for n in range(60)]
        assert (await limiter.peek("user:1", 100)).remaining == 100 - 40  # revoked calls were not counted
    finally:
        await limiter.close()
        await client.aclose()


async def test_a_flushed_script_cache_is_reloaded_mid_batch(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    limiter = RedisRateLimiter(client, CONFIG)
    try:
        await limiter.hit("k", 1000)
        await client.script_flush()
        decisions = await asyncio.gather(*(limiter.hit("k", 1000) for _ in range(40)))
        assert sorted(d.remaining for d in decisions) == list(range(1000 - 41, 1000 - 1))
    finally:
        await limiter.close()
        await client.aclose()


async def test_a_dropped_connection_fails_its_batch_then_reconnects(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    pipeline = ScriptPipeline(client, "return redis.call('INCR', KEYS[1])", timeout=1.0)
    try:
        assert await pipeline.run(["n"], ()) == 1
        for info in await client.client_list():
            if info["cmd"] in {"evalsha", "eval"}:
                await client.client_kill_filter(_id=info["id"])
        with pytest.raises(RedisConnectionError):
            await pipeline.run(["n"], ())
        assert await pipeline.run(["n"], ()) == 2  # the failed call was never applied; the next one reconnects
    finally:
        await pipeline.close()
        await client.aclose()


async def test_closing_fails_waiting_callers_instead_of_leaving_them(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    pipeline = ScriptPipeline(client, "return redis.call('PING')")
    try:
        assert await pipeline.run(["x"], ()) == b"PONG"
    finally:
        await pipeline.close()
        await client.aclose()
    with pytest.raises(RedisConnectionError):
        await pipeline.run(["x"], ())
