"""The instance heartbeat: every few seconds, this replica's cache and breaker figures in Redis.

``stats:instance:{id}`` holds a JSON snapshot with a TTL of three intervals (a dead replica disappears by
itself); ``stats:instances`` is the set of ids, so readers list replicas with SMEMBERS + MGET, never SCAN.
"""

from __future__ import annotations

import asyncio
import time

import orjson
import structlog
from aiohttp import web
from redis.exceptions import RedisError

from apiserver.keys import BREAKERS, CACHE, SETTINGS, STARTED_AT
from shared.keys import APISERVER_INSTANCES_KEY, APISERVER_ROW_PREFIX, REDIS

_log = structlog.get_logger("apiserver.heartbeat")


def snapshot(app: web.Application) -> dict[str, object]:
    cache = app[CACHE]
    settings = app[SETTINGS]
    return {
        "instance": settings.common.instance_id,
        "service": "apiserver",
        "port": settings.port,
        "ts": time.time(),
        "uptime": round(time.time() - app[STARTED_AT], 3),
        "cache": {
            "l1_entries": len(cache.l1),
            "l1_evictions": cache.l1.evictions,
            "l1_enabled": cache.l1_enabled,
            **cache.stats.snapshot(),
        },
        "breakers": [breaker.snapshot() for breaker in app[BREAKERS].values()],
    }


async def beat(app: web.Application) -> None:
    settings = app[SETTINGS]
    key = APISERVER_ROW_PREFIX + settings.common.instance_id
    ttl = max(int(settings.heartbeat_interval * 3), 3)
    pipe = app[REDIS].pipeline(transaction=False)
    pipe.set(key, orjson.dumps(snapshot(app)), ex=ttl)
    pipe.sadd(APISERVER_INSTANCES_KEY, settings.common.instance_id)
    await pipe.execute()


async def run_heartbeat(app: web.Application) -> None:
    interval = app[SETTINGS].heartbeat_interval
    while True:
        try:
            await beat(app)
        except (RedisError, OSError) as exc:
            _log.debug("heartbeat_failed", error=type(exc).__name__)
        await asyncio.sleep(interval)
