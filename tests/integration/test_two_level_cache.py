"""The two-level cache against a real Redis: single-flight, versioned fills, pub/sub coherence between
instances, and behaviour with Redis or the database gone (the cross-process fill lock: test_cache_fill_lock.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from apiserver.cache.entry import Entry, SourceUnavailable
from apiserver.cache.two_level import CacheConfig
from stack.services.redis import EmbeddedRedis
from tests.integration.cache_support import GatedLoader, cache_instance, holds
from tests.support.clock import ManualClock
from tests.support.polling import wait_until

pytestmark = pytest.mark.integration


class CountingLoader:
    def __init__(self, version: int = 1, payload: bytes = b'{"id":1}', delay: float = 0.02) -> None:
        self.calls = 0
        self.version = version
        self.payload = payload
        self.delay = delay
        self.down = False

    async def __call__(self) -> tuple[int, bytes]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.down:
            raise SourceUnavailable("database down")
        return self.version, self.payload


async def test_concurrent_misses_cost_one_load_per_process(redis_url: str) -> None:
    async with cache_instance(redis_url, "a") as cache:
        loader = CountingLoader()
        results = await asyncio.gather(*(cache.get("res:1", loader) for _ in range(50)))
        assert loader.calls == 1
        assert {result.entry.payload for result in results} == {b'{"id":1}'}
        assert (await cache.get("res:1", loader)).source == "l1"


async def test_an_older_version_never_overwrites_a_newer_one_in_redis(redis_url: str) -> None:
    async with cache_instance(redis_url, "a") as cache:
        await cache.write_through("res:4", cache.entry_for_write(2, b"new"))
        stale_reader = CountingLoader(version=1, payload=b"old")
        await cache.l2.put("res:4", Entry(1, time.time() + 60, b"old"), 60)
        cached = await cache.l2.get("res:4")
        assert cached is not None
        assert cached.payload == b"new"
        cache.l1.clear()
        assert (await cache.get("res:4", stale_reader)).entry.payload == b"new"
        assert stale_reader.calls == 0


async def test_a_write_evicts_every_instances_l1(redis_url: str) -> None:
    async with cache_instance(redis_url, "a") as writer, cache_instance(redis_url, "b") as reader:
        await reader.get("res:7", CountingLoader(version=1, payload=b"v1"))
        assert (await reader.get("res:7", CountingLoader())).source == "l1"
        await writer.write_through("res:7", writer.entry_for_write(2, b"v2"))

        async def reader_sees_v2() -> bool:
            return (await reader.get("res:7", CountingLoader(version=1, payload=b"v1"))).entry.payload == b"v2"

        await wait_until(reader_sees_v2, within=1)
        assert reader.list_generation == writer.list_generation >= 1


async def test_deleted_entries_become_tombstones(redis_url: str) -> None:
    async with cache_instance(redis_url, "a") as cache:
        await cache.get("res:8", CountingLoader(version=3, payload=b"x"))
        await cache.write_through("res:8", cache.entry_for_write(4, b""))
        late_reader = CountingLoader(version=3, payload=b"x")  # read before the delete committed
        await cache.l2.put("res:8", Entry(3, time.time() + 60, b"x"), 60)
        assert (await cache.get("res:8", late_reader)).entry.absent


async def test_not_found_is_cached_briefly(redis_url: str) -> None:
    clock = ManualClock(time.time())
    config = CacheConfig(negative_ttl=5.0)
    async with cache_instance(redis_url, "a", clock=clock, config=config) as cache:
        absent = CountingLoader(version=0, payload=b"")
        for _ in range(3):
            assert (await cache.get("res:404", absent)).entry.absent
        assert absent.calls == 1
        clock.advance(6.0)
        await cache.get("res:404", absent)
        assert absent.calls == 2


async def test_stale_if_error_when_the_database_is_down(redis_url: str) -> None:
    clock = ManualClock(time.time())
    async with cache_instance(redis_url, "a", clock=clock, config=CacheConfig(fresh_ttl=1.0)) as cache:
        loader = CountingLoader(version=1, payload=b"kept")
        await cache.get("res:2", loader)
        clock.advance(5.0)
        loader.down = True
        lookup = await cache.get("res:2", loader)
        assert lookup.stale
        assert lookup.entry.payload == b"kept"
        with pytest.raises(SourceUnavailable):
            await cache.get("res:never-cached", loader)


async def test_redis_down_bypasses_l1_and_recovers(own_redis: EmbeddedRedis) -> None:
    async with cache_instance(own_redis.url, "a") as cache:
        loader = CountingLoader()
        await cache.get("res:1", loader)
        assert (await cache.get("res:1", loader)).source == "l1"
        own_redis.kill()
        await wait_until(lambda: holds(not cache.l1_enabled), within=5)
        assert len(cache.l1) == 0
        for _ in range(5):
            assert (await cache.get("res:1", loader)).source == "db"  # still answers, straight from the source
        own_redis.start()
        await wait_until(lambda: holds(cache.l1_enabled), within=5)

        async def served_from_l1() -> bool:
            await cache.get("res:1", loader)
            return (await cache.get("res:1", loader)).source == "l1"

        await wait_until(served_from_l1, within=5)


async def test_clear_leaves_other_namespaces(redis_url: str) -> None:
    raw = aioredis.Redis.from_url(redis_url)
    try:
        async with cache_instance(redis_url, "a") as cache, cache_instance(redis_url, "b") as peer:
            await raw.set("rl:x", b"1")
            await raw.set("auth:y", b"2")
            await cache.get("res:1", CountingLoader())
            await peer.get("res:1", CountingLoader())
            await cache.clear()
            assert await raw.get("rl:x") == b"1"
            assert await raw.get("auth:y") == b"2"
            assert not await raw.exists("cache:res:1")
            await wait_until(lambda: holds(len(peer.l1) == 0), within=1)
    finally:
        await raw.aclose()


async def test_a_write_to_another_key_does_not_discard_a_fill_in_flight(redis_url: str) -> None:
    async with cache_instance(redis_url, "a") as cache:
        loader = GatedLoader(1, b"hot")
        fill = asyncio.create_task(cache.get("res:1", loader))
        await asyncio.wait_for(loader.entered.wait(), 5)  # the fill is now waiting on the database
        await cache.write_through("res:2", cache.entry_for_write(5, b"other"))
        loader.release.set()
        assert (await fill).entry.payload == b"hot"
        assert (await cache.get("res:1", CountingLoader())).source == "l1"


async def test_a_write_to_the_same_key_keeps_the_overlapping_fill_out_of_l1(redis_url: str) -> None:
    async with cache_instance(redis_url, "a") as cache:
        loader = GatedLoader(1, b"old")  # read before the write committed
        fill = asyncio.create_task(cache.get("res:3", loader))
        await asyncio.wait_for(loader.entered.wait(), 5)
        await cache.write_through("res:3", cache.entry_for_write(2, b"new"))
        loader.release.set()
        await fill
        assert cache.l1.get("res:3") is None, "the stale fill must not be cached behind the write"
        assert (await cache.get("res:3", CountingLoader(version=1, payload=b"old"))).entry.payload == b"new"
