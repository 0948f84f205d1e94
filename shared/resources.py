"""Shared long-lived resources as aiohttp ``cleanup_ctx`` contexts: the Redis client and the PostgreSQL pool.

Each context creates its resource on start-up, stores it under a typed key and closes it on shutdown, so
nothing outlives the app. Neither connects eagerly in a way that stops start-up: a process whose Redis is
down still starts and reports it through ``/ready``; the PostgreSQL pool is created with ``min_size=0`` for
the same reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
from aiohttp import web

from shared.keys import PG_POOL, REDIS

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def make_redis(url: str, **options: Any) -> aioredis.Redis:
    """A Redis client with short timeouts: a dead Redis must cost milliseconds, never hang a request."""
    defaults: dict[str, Any] = {
        "socket_connect_timeout": 0.5,
        "socket_timeout": 1.0,
        "health_check_interval": 10,
        "retry_on_timeout": False,
        "max_connections": 256,
    }
    defaults.update(options)
    client: aioredis.Redis = aioredis.Redis.from_url(url, **defaults)
    return client


def redis_context(url: str) -> CleanupContext:
    async def redis_client(app: web.Application) -> AsyncIterator[None]:
        client = make_redis(url)
        app[REDIS] = client
        try:
            yield
        finally:
            await client.aclose()

    return redis_client


async def _init_connection(connection: asyncpg.Connection[Any]) -> None:
    # jsonb in and out through orjson: no double encoding, and the fast path for the cache.
    await connection.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: b"\x01" + orjson.dumps(value),
        decoder=lambda data: orjson.loads(data[1:]),
        format="binary",
    )


async def create_pg_pool(dsn: str, *, min_size: int = 0, max_size: int = 10) -> asyncpg.Pool[Any]:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=5.0,
        timeout=2.0,
        max_inactive_connection_lifetime=60.0,
    )
    assert pool is not None  # asyncpg returns the pool once awaited
    return pool


def pg_context(dsn: str, *, max_size: int = 10) -> CleanupContext:
    async def pg_pool(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pg_pool(dsn, max_size=max_size)
        app[PG_POOL] = pool
        try:
            yield
        finally:
            await pool.close()

    return pg_pool
