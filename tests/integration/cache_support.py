"""A two-level cache wired to a real Redis, with its invalidation subscriber running, for the cache tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from prometheus_client import CollectorRegistry

from apiserver.cache.local import LocalCache
from apiserver.cache.redis import RedisCache
from apiserver.cache.stats import CacheStats
from apiserver.cache.two_level import CacheConfig, TwoLevelCache
from shared.breaker import AsyncCircuitBreaker
from shared.resources import make_redis
from tests.support.polling import wait_until


@asynccontextmanager
async def cache_instance(
    redis_url: str, name: str, *, clock: Callable[[], float] = time.time, config: CacheConfig | None = None
) -> AsyncIterator[TwoLevelCache]:
    client = make_redis(redis_url)
    breaker = AsyncCircuitBreaker(f"redis-{name}", fail_max=3, reset_timeout=0.2, max_reset_timeout=0.5)
    stats = CacheStats(CollectorRegistry())
    cache = TwoLevelCache(
        LocalCache(max_entries=1000, max_age=600, clock=clock),
        RedisCache(client, breaker, on_command=stats.redis_command),
        config=config or CacheConfig(),
        stats=stats,
        instance_id=name,
        clock=clock,
    )
    subscriber = asyncio.create_task(cache.run_subscriber())
    try:
        await wait_until(lambda: holds(cache.l1_enabled), within=10)
        yield cache
    finally:
        subscriber.cancel()
        with suppress(asyncio.CancelledError):
            await subscriber
        await client.aclose()


async def holds(value: bool) -> bool:
    return value


class GatedLoader:
    """A loader that counts its calls and waits until the test lets it finish, so the test decides what happens
    while a fill is in flight (a write lands, a peer misses the same key) without sleeping for it."""

    def __init__(self, version: int, payload: bytes, *, released: bool = False) -> None:
        self.calls = 0
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        if released:
            self.release.set()
        self.version = version
        self.payload = payload

    async def __call__(self) -> tuple[int, bytes]:
        self.calls += 1
        self.entered.set()
        await self.release.wait()
        return self.version, self.payload
