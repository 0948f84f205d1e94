"""The cross-process cache fill lock on a real Redis: one loader call for a key missed by two processes at once,
and a lock that only its owner can release (a loser, or an owner whose lock expired and was taken over, leaves
the current owner's lock alone).

Each "process" is its own TwoLevelCache with its own L1 and Redis client; they share one Redis and one loader.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from apiserver.cache.redis import LOCK_PREFIX
from apiserver.cache.two_level import CacheConfig, TwoLevelCache
from tests.integration.cache_support import GatedLoader, cache_instance
from tests.resilience.report import Sample, record
from tests.support.polling import wait_until

pytestmark = pytest.mark.integration

PATIENT = CacheConfig(lock_wait=30.0)  # a loser waits for the winner's fill as long as the test needs
IMPATIENT = CacheConfig(lock_wait=0.0)  # a loser gives up at once and loads by itself


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def lock_owner(raw: aioredis.Redis, key: str) -> str | None:
    token = await raw.get(LOCK_PREFIX + key)
    return token.decode() if isinstance(token, bytes) else token


async def expired(raw: aioredis.Redis, key: str) -> bool:
    return await lock_owner(raw, key) is None


async def waiting_for_a_peer(cache: TwoLevelCache) -> bool:
    # Its Redis round trips so far: the L2 miss, the lost SET NX, then at least one poll of L2 for the fill.
    return cache.stats.redis_commands >= 3


async def test_only_the_owner_releases_the_fill_lock(redis_url: str, raw: aioredis.Redis) -> None:
    async with cache_instance(redis_url, "a") as first, cache_instance(redis_url, "b") as second:
        token = await first.l2.try_lock("res:1", 30)
        assert token is not None
        assert await second.l2.try_lock("res:1", 30) is None
        assert not await second.l2.unlock("res:1", secrets.token_hex(16))
        assert not await second.l2.unlock("res:1", "")
        assert await lock_owner(raw, "res:1") == token, "a loser must not release the winner's lock"
        assert await first.l2.unlock("res:1", token)
        assert await lock_owner(raw, "res:1") is None
        assert not await first.l2.unlock("res:1", token), "a released lock is not released twice"
        assert await second.l2.try_lock("res:1", 30) is not None


async def test_concurrent_misses_across_processes_cost_one_load(redis_url: str, raw: aioredis.Redis) -> None:
    async with (
        cache_instance(redis_url, "a", config=PATIENT) as first,
        cache_instance(redis_url, "b", config=PATIENT) as second,
    ):
        loader = GatedLoader(7, b'{"id":9}')
        winner = asyncio.create_task(first.get("res:9", loader))
        await asyncio.wait_for(loader.entered.wait(), 5)  # the first process holds the lock and is loading
        loser = asyncio.create_task(second.get("res:9", loader))
        await wait_until(lambda: waiting_for_a_peer(second), within=5)
        assert await lock_owner(raw, "res:9") is not None
        loader.release.set()
        won, served = await asyncio.gather(winner, loser)
        record(
            "resilience",
            "cache_fill_lock",
            title="One key missed by two apiserver processes at once (a slow database load)",
            guarantee="1 database load; the loser waits for the winner's fill and cannot release its lock",
            samples=[Sample(f"get from {result.source}", 200, 0.0, 0.0) for result in (won, served)],
            failed=loader.calls - 1,
            extra={"database_loads": loader.calls, "sources": [won.source, served.source]},
        )
        assert loader.calls == 1
        assert (won.source, served.source) == ("db", "l2")
        assert (served.entry.version, served.entry.payload) == (7, b'{"id":9}')
        assert await lock_owner(raw, "res:9") is None, "the winner releases its lock after the fill"
        assert (await second.get("res:9", loader)).source == "l1"


async def test_a_loser_that_stops_waiting_leaves_the_winners_lock(redis_url: str, raw: aioredis.Redis) -> None:
    async with (
        cache_instance(redis_url, "a") as first,
        cache_instance(redis_url, "b", config=IMPATIENT) as second,
    ):
        slow = GatedLoader(1, b"slow")
        winner = asyncio.create_task(first.get("res:2", slow))
        await asyncio.wait_for(slow.entered.wait(), 5)
        held = await lock_owner(raw, "res:2")
        assert held is not None
        fast = GatedLoader(1, b"fast", released=True)
        assert (await second.get("res:2", fast)).source == "db"
        assert await lock_owner(raw, "res:2") == held, "the loser deleted the winner's lock"
        slow.release.set()
        await winner
        assert await lock_owner(raw, "res:2") is None


async def test_a_lock_whose_owner_died_is_taken_over(redis_url: str, raw: aioredis.Redis) -> None:
    async with cache_instance(redis_url, "dead") as dead, cache_instance(redis_url, "b") as survivor:
        orphan = await dead.l2.try_lock("res:3", 1.0)  # taken, then its process died: never released
        assert orphan is not None
        assert await survivor.l2.try_lock("res:3", 30) is None
        await wait_until(lambda: expired(raw, "res:3"), within=5)

        loader = GatedLoader(2, b"fresh")
        fill = asyncio.create_task(survivor.get("res:3", loader))
        await asyncio.wait_for(loader.entered.wait(), 5)
        taken = await lock_owner(raw, "res:3")
        assert taken not in (None, orphan), "the survivor holds the lock under its own token"
        assert not await dead.l2.unlock("res:3", orphan), "a late owner must not release its successor's lock"
        assert await lock_owner(raw, "res:3") == taken
        loader.release.set()
        assert (await fill).source == "db"
        assert loader.calls == 1
        assert await lock_owner(raw, "res:3") is None


async def test_an_admin_clear_drops_fill_locks(redis_url: str, raw: aioredis.Redis) -> None:
    async with cache_instance(redis_url, "a") as cache:
        assert await cache.l2.try_lock("res:4", 30) is not None
        await cache.clear()
        assert await lock_owner(raw, "res:4") is None
        assert await cache.l2.try_lock("res:4", 30) is not None
