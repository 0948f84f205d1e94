"""Typed application and request keys used by the shared middlewares and contexts."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from redis.asyncio.cluster import RedisCluster

from shared.metrics import Metrics

# What every Redis user takes: a client of one server (or of the Sentinel-managed primary), or of a Redis Cluster.
# Every key a script or MULTI touches shares one hash tag, so the same calls serve both.
RedisClient = aioredis.Redis | RedisCluster

METRICS = web.AppKey("metrics", Metrics)
SERVICE = web.AppKey("service", str)
INSTANCE_ID = web.AppKey("instance_id", str)
REDIS: web.AppKey[RedisClient] = web.AppKey("redis")
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)

REQUEST_ID = web.RequestKey("request_id", str)
TRACEPARENT = web.RequestKey("traceparent", str)

# Redis keys of the apiservers' heartbeats (apiserver.heartbeat writes, the gateway's admin API reads).
APISERVER_INSTANCES_KEY = "stats:instances"  # SET of the ids of apiservers that published
APISERVER_ROW_PREFIX = "stats:instance:"  # + id: one apiserver's JSON snapshot, expiring

# Redis keys of the gateways' fleet figures (gateway.fleet), all under one hash tag so a reader's pipeline and a
# gateway's heartbeat each go to one Redis Cluster node. ``stats:`` is never touched by a cache clear.
GATEWAY_FLEET_KEY = "stats:{gateways}:ids"  # SET of the ids of gateways that published
GATEWAY_ROW_PREFIX = "stats:{gateways}:gateway:"  # + id: one gateway's JSON snapshot, expiring
GATEWAY_SLOT_PREFIX = "stats:{gateways}:slot:"  # + epoch second: HASH of the fleet's traffic in the second before
