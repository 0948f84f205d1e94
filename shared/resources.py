"""Shared long-lived resources as aiohttp ``cleanup_ctx`` contexts: the Redis client and the PostgreSQL pool.

Each context creates its resource on start-up, stores it under a typed key and closes it on shutdown, so
nothing outlives the app. Neither connects eagerly in a way that stops start-up: a process whose Redis is
down still starts and reports it through ``/ready``; the PostgreSQL pool is created with ``min_size=0`` for
the same reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import orjson
import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from shared.keys import PG_POOL, REDIS, RedisClient
from shared.shutdown import closing

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
# Every Redis client: a dead Redis must cost milliseconds, never hang a request; one pool bound per process.
_SHORT_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 0.5, "socket_timeout": 1.0, "max_connections": 256}


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """``redis+cluster://[[user]:password@]host:port[,host:port...][/0]``: any reachable nodes (the seeds); the
    client learns the rest of the cluster and its slot map from them."""

    seeds: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None


def _addresses(netloc: str, what: str) -> tuple[tuple[str, int], ...]:
    """The ``host:port[,host:port...]`` list of a Sentinel or Cluster URL (after any ``user:password@``)."""
    _, _, hosts = netloc.rpartition("@")
    addresses = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"REDIS_URL: {what} {item!r} must be host:port")
        addresses.append((host.strip("[]"), int(port)))
    return tuple(addresses)


def parse_cluster_url(url: str) -> ClusterTarget:
    parsed = urlsplit(url)
    seeds = _addresses(parsed.netloc, "cluster node")
    if parsed.path.strip("/") not in ("", "0"):
        raise ValueError("REDIS_URL: a Redis Cluster has only database 0")
    username = unquote(parsed.username) if parsed.username else None
    password = unquote(parsed.password) if parsed.password else None
    return ClusterTarget(seeds, username, password)


def make_redis_cluster(url: str, **options: Any) -> RedisCluster:
    """A Redis Cluster client with the same short timeouts as :func:`make_redis`: each command goes to the primary
    of its key's slot; MOVED/ASK are followed and the slot map is refreshed after a failover (redis-py)."""
    target = parse_cluster_url(url)
    defaults: dict[str, Any] = {
        **_SHORT_TIMEOUTS,
        "username": target.username,
        "password": target.password,
    }
    defaults.update(options)
    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.seeds], **defaults)


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]``"""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int
    password: str | None


def parse_sentinel_url(url: str) -> SentinelTarget:
    parsed = urlsplit(url)
    sentinels = _addresses(parsed.netloc, "sentinel address")
    parts = [part for part in parsed.path.split("/") if part]
    if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError("REDIS_URL: a sentinel URL ends in /<service name>[/<db number>]")
    password = unquote(parsed.password) if parsed.password else None
    return SentinelTarget(sentinels, parts[0], int(parts[1]) if len(parts) == 2 else 0, password)


class _SentinelManagedRedis(aioredis.Redis):
    """The primary's client; closing it also closes its connections to the sentinels."""

    owning_sentinel: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.owning_sentinel is not None:
            await self.owning_sentinel.aclose()


def make_redis(url: str, **options: Any) -> RedisClient:
    """A Redis client with short timeouts: a dead Redis must cost milliseconds, never hang a request.

    A ``redis+cluster://`` URL gives a Redis Cluster client (:func:`make_redis_cluster`).

    With a ``redis+sentinel://`` URL the client asks the sentinels for the current primary and asks again
    whenever a connection to it fails, so every user of this client (cache, limiter, pub/sub, heartbeats)
    follows a failover without restarting.
    """
    if url.startswith(CLUSTER_SCHEME + "://"):
        return make_redis_cluster(url, **options)
    defaults: dict[str, Any] = {
        **_SHORT_TIMEOUTS,
        "health_check_interval": 10,
        "retry_on_timeout": False,
        # redis-py's default retries 3 times with exponential backoff from 1 s: after a Redis restart every
        # pooled socket is dead, and a breaker's one trial call could spend seconds in those retries. One
        # immediate retry absorbs a stale pooled socket; anything else fails fast to the caller's breaker.
        "retry": Retry(NoBackoff(), 1),
    }
    defaults.update(options)
    if url.startswith(SENTINEL_SCHEME + "://"):
        target = parse_sentinel_url(url)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves Sentinel.__init__ unannotated
            list(target.sentinels),
            sentinel_kwargs={"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
            socket_connect_timeout=defaults["socket_connect_timeout"],
        )
        defaults.pop("socket_connect_timeout")
        primary: _SentinelManagedRedis = sentinel.master_for(
            target.service, redis_class=_SentinelManagedRedis, db=target.db, password=target.password, **defaults
        )
        primary.owning_sentinel = sentinel
        return primary
    client: aioredis.Redis = aioredis.Redis.from_url(url, **defaults)
    return client


def redis_context(url: str) -> CleanupContext:
    async def redis_client(app: web.Application) -> AsyncIterator[None]:
        client = make_redis(url)
        app[REDIS] = client
        try:
            yield
        finally:
            await closing("redis client", client.aclose)

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
            await closing("postgres pool", pool.close, force=pool.terminate)

    return pg_pool
