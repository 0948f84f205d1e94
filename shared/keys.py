"""Typed application and request keys used by the shared middlewares and contexts."""

from __future__ import annotations

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from shared.metrics import Metrics

METRICS = web.AppKey("metrics", Metrics)
SERVICE = web.AppKey("service", str)
INSTANCE_ID = web.AppKey("instance_id", str)
REDIS = web.AppKey("redis", aioredis.Redis)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)

REQUEST_ID = web.RequestKey("request_id", str)
TRACEPARENT = web.RequestKey("traceparent", str)
