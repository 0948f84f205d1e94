"""The admin API (role admin: 401 anonymous, 403 user): dashboard, breakers, cache, rate limits, backends.

Breakers live in three places and are addressed by name through one pair of routes::

    ratelimit-redis            this gateway's own breaker around Redis (rate limiting)
    external-api, redis-cache  apiserver breakers: reset fans out to every apiserver's /internal/breakers
    <anything else>            asked of the balancer: POST /lb/breakers/{name}/reset

Cache clear goes to one apiserver's ``/internal/cache/clear``, which deletes only ``cache:`` keys in Redis and
tells every replica to drop its L1; rate-limit counters (``rl:``) and sessions (``auth:``, PostgreSQL) are
never touched.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from redis.exceptions import RedisError

from gateway.admin.upstream import UpstreamError
from gateway.fleet import RECENT_SECONDS, read_fleet
from gateway.http import json_response
from gateway.keys import ADMIN, LIMITER, PRINCIPAL, SETTINGS, STATS
from shared.authz import require_admin
from shared.errors import Problem
from shared.identity import Identity
from shared.keys import METRICS, REDIS
from shared.metrics import LATENCY_BUCKETS, Metrics

# Long-lived or static routes that would swamp the API's latency figures (a stream "takes" minutes).
LATENCY_EXCLUDED = ("/api/v1/admin/stream", "/dashboard", "/health", "/ready", "/metrics")


def _upstream_problem(error: UpstreamError, what: str) -> Problem:
    if error.status == 404:
        return Problem(404, "Not Found", error.detail)
    return Problem(502, "Bad Gateway", f"{what}: {error.detail}", type_="upstream-failed")


async def _or_error(call: Any) -> Any:
    try:
        return await call
    except UpstreamError as error:
        return {"error": error.detail, "status": error.status}
    except (RedisError, OSError) as error:
        return {"error": f"redis: {type(error).__name__}"}


def http_figures(metrics: Metrics) -> dict[str, object]:
    """Cumulative counters as ``/metrics`` has them (every worker's, with several), for the dashboard to turn into
    rates and windowed percentiles (as ``histogram_quantile(rate(...))`` would): responses by status and the API's
    latency histogram (``le`` upper bounds in seconds, cumulative counts)."""
    families = metrics.families("http_requests", "http_request_duration_seconds")
    by_status: dict[str, float] = {}
    for sample in _samples(families, "http_requests"):
        if sample.name.endswith("_total"):
            status = sample.labels["status"]
            by_status[status] = by_status.get(status, 0.0) + sample.value
    buckets = [0.0] * (len(LATENCY_BUCKETS) + 1)
    bounds = [str(float(bound)) for bound in LATENCY_BUCKETS]
    for sample in _samples(families, "http_request_duration_seconds"):
        if not sample.name.endswith("_bucket") or sample.labels["route"].startswith(LATENCY_EXCLUDED):
            continue
        le = sample.labels["le"]
        index = bounds.index(le) if le in bounds else len(LATENCY_BUCKETS)
        buckets[index] += sample.value
    return {
        "responses_by_status": {status: int(count) for status, count in sorted(by_status.items())},
        "latency_seconds": {"le": [*LATENCY_BUCKETS, None], "cumulative": [int(count) for count in buckets]},
    }


def _samples(families: Mapping[str, Metric], name: str) -> list[Sample]:
    family = families.get(name)
    return [] if family is None else family.samples


def gateway_snapshot(app: web.Application) -> dict[str, object]:
    settings, limiter = app[SETTINGS], app[LIMITER]
    return {
        "instance": settings.common.instance_id,
        **app[STATS].snapshot(),
        "http": http_figures(app[METRICS]),
        "rate_limiter": {
            "backend": "local" if limiter.degraded else "redis",
            "fail_open": settings.rate_limits.fail_open,
            "window_seconds": settings.rate_limits.window,
            "tiers": dict(settings.rate_limits.limits),
            "breaker": limiter.breaker.snapshot(),
        },
    }


async def dashboard_snapshot(
    app: web.Application, identity: Identity, *, history: int = RECENT_SECONDS
) -> dict[str, object]:
    """``gateway`` is the process answering; ``fleet`` every live gateway, summed, with the fleet's last
    ``history`` seconds (see :mod:`gateway.fleet`)."""
    admin = app[ADMIN]
    now = time.time()
    return {
        "generated_at": now,
        "gateway": gateway_snapshot(app),
        "fleet": await _or_error(read_fleet(app[REDIS], now=now, seconds=history)),
        "balancer": await _or_error(admin.lb_status(identity)),
        "apiservers": await _or_error(admin.heartbeats()),
    }


async def dashboard(request: web.Request) -> web.Response:
    identity = require_admin(request[PRINCIPAL].identity)
    return json_response(await dashboard_snapshot(request.app, identity))


async def list_breakers(request: web.Request) -> web.Response:
    identity = require_admin(request[PRINCIPAL].identity)
    admin = request.app[ADMIN]
    status = await _or_error(admin.lb_status(identity))
    return json_response(
        {
            "gateway": [request.app[LIMITER].breaker.snapshot()],
            "balancer": balancer_breakers(status),
            "apiservers": await _or_error(admin.fan_out(identity, "GET", "/internal/breakers")),
        }
    )


def balancer_breakers(status: dict[str, Any]) -> object:
    """The per-backend breakers in a ``/lb/status`` document, named as the reset route expects."""
    backends = status.get("backends")
    if "error" in status or not isinstance(backends, list):
        return status
    return [
        {**backend["breaker"], "name": f"backend:{backend.get('id')}", "backend": backend.get("url")}
        for backend in backends
        if isinstance(backend, dict) and isinstance(backend.get("breaker"), dict)
    ]


async def reset_breaker(request: web.Request) -> web.Response:
    identity = require_admin(request[PRINCIPAL].identity)
    name = request.match_info["name"]
    limiter = request.app[LIMITER]
    if name == limiter.breaker.name:
        limiter.breaker.reset()
        return json_response({"scope": "gateway", "breaker": limiter.breaker.snapshot()})
    admin = request.app[ADMIN]
    path = f"/breakers/{quote(name, safe='')}/reset"
    try:
        results = await admin.fan_out(identity, "POST", "/internal" + path)
    except UpstreamError as error:
        results = {"balancer": {"error": error.detail}}
    if any("error" not in result for result in results.values()):
        return json_response({"scope": "apiservers", "results": results})
    try:
        answer = await admin.balancer(identity, "POST", "/lb" + path)
    except UpstreamError as error:
        raise _upstream_problem(error, "The balancer refused the reset") from None
    return json_response({"scope": "balancer", "result": answer})


async def cache_stats(request: web.Request) -> web.Response:
    identity = require_admin(request[PRINCIPAL].identity)
    admin = request.app[ADMIN]
    return json_response({"apiservers": await _or_error(admin.fan_out(identity, "GET", "/internal/cache"))})


async def clear_cache(request: web.Request) -> web.Response:
    identity = require_admin(request[PRINCIPAL].identity)
    admin = request.app[ADMIN]
    errors: dict[str, str] = {}
    for url in await _urls(admin, identity):
        try:
            result = await admin.call(identity, "POST", url + "/internal/cache/clear")
        except UpstreamError as error:
            errors[url] = error.detail
            continue
        return json_response({"cleared": True, "via": url, "result": result})
    raise Problem(
        502, "Bad Gateway", "No apiserver could clear the cache.", type_="upstream-failed", extra={"errors": errors}
    )


async def _urls(admin: Any, identity: Identity) -> list[str]:
    try:
        urls: list[str] = await admin.apiservers(identity)
    except UpstreamError as error:
        raise _upstream_problem(error, "Cannot list the apiservers") from None
    return urls


async def backend_action(request: web.Request) -> web.Response:
    identity = require_admin(request[PRINCIPAL].identity)
    backend, action = request.match_info["backend"], request.match_info["action"]
    try:
        answer = await request.app[ADMIN].balancer(identity, "POST", f"/lb/backends/{quote(backend, safe='')}/{action}")
    except UpstreamError as error:
        raise _upstream_problem(error, f"The balancer refused to {action} {backend!r}") from None
    return json_response({"backend": backend, "action": action, "result": answer})


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/dashboard", dashboard)
    app.router.add_get("/api/v1/admin/circuit-breakers", list_breakers)
    app.router.add_post("/api/v1/admin/circuit-breakers/{name}/reset", reset_breaker)
    app.router.add_get("/api/v1/admin/cache", cache_stats)
    app.router.add_post("/api/v1/admin/cache/clear", clear_cache)
    app.router.add_post("/api/v1/admin/backends/{backend}/{action:drain|enable}", backend_action)
