"""Instance status, the external-dependency demo, and the admin-only internal endpoints the gateway calls.

``/internal/*`` answers only to a verified admin identity (the gateway's admin API signs one); through the
public gateway these paths are never proxied.
"""

from __future__ import annotations

import math
import time
from importlib.metadata import PackageNotFoundError, version

import orjson
from aiohttp import web

from apiserver.external import ExternalFailure
from apiserver.http import JSON, identity_of
from apiserver.keys import BREAKERS, CACHE, EXTERNAL, SETTINGS, STARTED_AT
from shared.authz import require_admin
from shared.breaker import BreakerOpen
from shared.errors import Problem

EXTERNAL_BREAKER = "external-api"

try:
    VERSION = version("scalable-api")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    VERSION = "0.0.0"


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=JSON)


async def status(request: web.Request) -> web.Response:
    app = request.app
    return _json(
        {
            "status": "ok",
            "instanceId": app[SETTINGS].common.instance_id,
            "version": VERSION,
            "uptime": round(time.time() - app[STARTED_AT], 3),
            "cache": {"l1_entries": len(app[CACHE].l1), "l1_enabled": app[CACHE].l1_enabled},
        }
    )


async def external(request: web.Request) -> web.Response:
    breaker = request.app[BREAKERS][EXTERNAL_BREAKER]
    try:
        permit = breaker.acquire()
    except BreakerOpen as exc:
        raise Problem(
            503,
            "Service Unavailable",
            "The external dependency is failing; its circuit breaker is open.",
            type_="circuit-open",
            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
        ) from None
    try:
        result = await request.app[EXTERNAL].call()
    except ExternalFailure as exc:
        breaker.record_failure(permit, exc)
        raise Problem(502, "Bad Gateway", "The external dependency failed.", type_="upstream-failed") from None
    except BaseException:
        breaker.release(permit)
        raise
    breaker.record_success(permit)
    return _json({"data": result, "breaker": breaker.state, "instanceId": request.app[SETTINGS].common.instance_id})


async def list_breakers(request: web.Request) -> web.Response:
    require_admin(identity_of(request))
    breakers = [breaker.snapshot() for breaker in request.app[BREAKERS].values()]
    return _json({"instance": request.app[SETTINGS].common.instance_id, "breakers": breakers})


async def reset_breaker(request: web.Request) -> web.Response:
    require_admin(identity_of(request))
    name = request.match_info["name"]
    breaker = request.app[BREAKERS].get(name)
    if breaker is None:
        raise Problem(404, "Not Found", f"No circuit breaker named {name[:80]!r} on this instance.")
    breaker.reset()
    return _json(breaker.snapshot())


async def cache_stats(request: web.Request) -> web.Response:
    require_admin(identity_of(request))
    cache = request.app[CACHE]
    return _json(
        {
            "instance": request.app[SETTINGS].common.instance_id,
            "l1_entries": len(cache.l1),
            "l1_evictions": cache.l1.evictions,
            "l1_enabled": cache.l1_enabled,
            "list_generation": cache.list_generation,
            **cache.stats.snapshot(),
        }
    )


async def clear_cache(request: web.Request) -> web.Response:
    require_admin(identity_of(request))
    deleted = await request.app[CACHE].clear()
    return _json({"cleared": True, "redis_keys_deleted": deleted})


def add_system_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/status", status)
    app.router.add_get("/api/v1/external", external)
    app.router.add_get("/internal/breakers", list_breakers)
    app.router.add_post("/internal/breakers/{name}/reset", reset_breaker)
    app.router.add_get("/internal/cache", cache_stats)
    app.router.add_post("/internal/cache/clear", clear_cache)
