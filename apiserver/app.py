"""The API server application factory (no I/O here: resources open in cleanup contexts at start-up)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web
from prometheus_client import Counter

from apiserver.cache.local import LocalCache
from apiserver.cache.redis import RedisCache
from apiserver.cache.stats import CacheStats
from apiserver.cache.two_level import CacheConfig, TwoLevelCache
from apiserver.external import FlakyDependency
from apiserver.heartbeat import run_heartbeat
from apiserver.idempotency import idempotency_sweeper
from apiserver.keys import BREAKERS, CACHE, EXTERNAL, REPOSITORY, SETTINGS, STARTED_AT
from apiserver.replicas import ReadRouter, Replica
from apiserver.repository import ResourceRepository
from apiserver.resources import add_resource_routes
from apiserver.settings import ApiServerSettings
from apiserver.system import EXTERNAL_BREAKER, add_system_routes
from shared.breaker import STATE_CODES, AsyncCircuitBreaker
from shared.context import request_middleware
from shared.health import add_health_routes
from shared.keys import INSTANCE_ID, METRICS, PG_POOL, REDIS, SERVICE
from shared.metrics import Metrics
from shared.resources import create_pg_pool, pg_context, redis_context
from shared.shutdown import stop_tasks
from shared.tracing import Tracing

REDIS_BREAKER = "redis-cache"
_log = structlog.get_logger("apiserver")


def _breaker_listener(metrics: Metrics) -> Callable[[AsyncCircuitBreaker, str, str], None]:
    def on_change(breaker: AsyncCircuitBreaker, old: str, new: str) -> None:
        metrics.breaker_state.labels(breaker.name).set(STATE_CODES[new])
        _log.warning("circuit_breaker_transition", breaker=breaker.name, old=old, new=new)

    return on_change


def _build_breakers(
    settings: ApiServerSettings, metrics: Metrics, clock: Callable[[], float]
) -> dict[str, AsyncCircuitBreaker]:
    listener = _breaker_listener(metrics)
    breakers = {
        EXTERNAL_BREAKER: AsyncCircuitBreaker(
            EXTERNAL_BREAKER,
            fail_max=settings.external_breaker_fail_max,
            reset_timeout=settings.external_breaker_reset,
            max_reset_timeout=settings.external_breaker_reset * 8,
            clock=clock,
            on_state_change=listener,
        ),
        # Redis as a cache: after 3 straight failures skip it for 1 s (up to 2 s), then one trial call, so a
        # returning Redis is used again within about 2 s.
        REDIS_BREAKER: AsyncCircuitBreaker(
            REDIS_BREAKER,
            fail_max=3,
            reset_timeout=1.0,
            max_reset_timeout=2.0,
            clock=clock,
            on_state_change=listener,
        ),
    }
    for index in range(len(settings.replica_urls)):
        # A replica that fails is skipped for 1 s (growing to 10 s); reads fall back to the primary meanwhile.
        name = replica_breaker_name(index)
        breakers[name] = AsyncCircuitBreaker(
            name, fail_max=2, reset_timeout=1.0, max_reset_timeout=10.0, clock=clock, on_state_change=listener
        )
    for name in breakers:
        metrics.breaker_state.labels(name).set(0)
    return breakers


async def _open_replicas(settings: ApiServerSettings, breakers: dict[str, AsyncCircuitBreaker]) -> ReadRouter | None:
    if not settings.replica_urls:
        return None
    replicas = []
    for index, url in enumerate(settings.replica_urls):
        name = replica_breaker_name(index)
        pool = await create_pg_pool(url, max_size=settings.pg_pool_size)
        replicas.append(Replica(name=name, pool=pool, breaker=breakers[name]))
    return ReadRouter(replicas, interval=settings.replica_poll_interval)


def replica_breaker_name(index: int) -> str:
    return f"pg-replica-{index + 1}"


def _cache_context(settings: ApiServerSettings, metrics: Metrics) -> Callable[[web.Application], AsyncIterator[None]]:
    db_queries = Counter(
        "db_queries", "PostgreSQL queries issued by the API server.", ("target",), registry=metrics.registry
    )
    count_query = {target: db_queries.labels(target).inc for target in ("primary", "replica")}

    async def cache_and_repository(app: web.Application) -> AsyncIterator[None]:
        stats = CacheStats(metrics.registry)
        l2 = RedisCache(app[REDIS], app[BREAKERS][REDIS_BREAKER], on_command=stats.redis_command)
        l1 = LocalCache(max_entries=max(settings.l1_max_entries, 1), max_age=settings.cache_stale_ttl)
        config = CacheConfig(
            fresh_ttl=settings.cache_ttl,
            negative_ttl=settings.cache_negative_ttl,
            list_ttl=settings.cache_list_ttl,
            stale_ttl=settings.cache_stale_ttl,
        )
        cache = TwoLevelCache(l1, l2, config=config, stats=stats, instance_id=settings.common.instance_id)
        app[CACHE] = cache
        router = await _open_replicas(settings, app[BREAKERS])
        if router is not None:
            cache.on_write_position = router.note_write
        app[REPOSITORY] = ResourceRepository(app[PG_POOL], router=router, on_query=lambda t: count_query[t]())
        tasks = [asyncio.create_task(cache.run_subscriber()), asyncio.create_task(run_heartbeat(app))]
        if router is not None:
            tasks.append(asyncio.create_task(router.run_poller()))
        try:
            yield
        finally:
            await stop_tasks(*tasks)
            if router is not None:
                await asyncio.gather(*(replica.pool.close() for replica in router.replicas))

    return cache_and_repository


def create_app(
    settings: ApiServerSettings,
    *,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> web.Application:
    metrics = Metrics("apiserver")
    tracing = Tracing("apiserver", settings.common.instance_id)
    app = web.Application(
        middlewares=[request_middleware(metrics=metrics, tracing=tracing)],  # context, spans, metrics, problems
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[SERVICE] = "apiserver"
    app[INSTANCE_ID] = settings.common.instance_id
    app[STARTED_AT] = time.time()
    app[BREAKERS] = _build_breakers(settings, metrics, clock)
    app[EXTERNAL] = FlakyDependency(
        failure_rate=settings.external_failure_rate, latency_ms=settings.external_latency_ms, rng=rng
    )
    app.cleanup_ctx.append(tracing.context)  # flushed last, after every resource closed
    app.cleanup_ctx.append(redis_context(settings.redis_url))
    app.cleanup_ctx.append(pg_context(settings.database_url, max_size=settings.pg_pool_size))
    app.cleanup_ctx.append(_cache_context(settings, metrics))
    app.cleanup_ctx.append(idempotency_sweeper(lambda app: app[PG_POOL], settings.idempotency_ttl))

    async def check_postgres() -> None:
        await app[REPOSITORY].ping()

    async def check_redis() -> None:
        await app[REDIS].ping()

    # Either dependency alone is enough to serve: without Redis, L1 is bypassed and reads go to PostgreSQL;
    # without PostgreSQL, cached reads are served and writes answer 503. Only both down means not ready.
    add_health_routes(
        app,
        metrics,
        {"postgres": check_postgres, "redis": check_redis},
        serves_without=lambda failing: len(failing) < 2,
    )
    add_resource_routes(app)
    add_system_routes(app)
    return app
