"""``/health`` (liveness), ``/ready`` (dependencies) and ``/metrics`` for every process.

Liveness answers as long as the event loop does. Readiness runs every named check concurrently with a short
timeout and answers 503 naming the failing ones, which is what load balancers and Kubernetes act on.

A process that can still serve with some dependencies down says so with ``serves_without``: readiness is then
200 with ``"status": "degraded"`` and the failing checks named, and 503 only when it truly cannot serve. This
matters because every replica shares the same PostgreSQL and Redis: failing readiness on a shared dependency
would make the balancer eject every backend at once, turning a degraded service into a total outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

from shared.errors import problem_response
from shared.keys import INSTANCE_ID, SERVICE
from shared.metrics import Metrics, metrics_handler

Check = Callable[[], Awaitable[object]]
# Well under every checker's own timeout (the balancer's 1 s default, Kubernetes' 1 s): with a dependency hung
# rather than refused (a paused Redis, a blackholed host) /ready must answer "degraded" 200 before the checker
# gives up, or the balancer ejects every apiserver at once over a shared dependency. A loopback or LAN ping takes
# about a millisecond, so 0.3 s only ever expires on a dependency that is not answering.
READY_TIMEOUT = 0.3


async def _run_check(check: Check) -> str | None:
    try:
        await asyncio.wait_for(check(), READY_TIMEOUT)
    except TimeoutError:
        return "timed out"
    except Exception as exc:
        return type(exc).__name__
    return None


def add_health_routes(
    app: web.Application,
    metrics: Metrics,
    checks: Mapping[str, Check],
    *,
    serves_without: Callable[[frozenset[str]], bool] | None = None,
    metrics_visible_to: Callable[[web.Request], bool] | None = None,
) -> None:
    """``serves_without(failing)`` says whether the process can still serve with those checks failing;
    ``metrics_visible_to(request)`` whether ``/metrics`` may answer this caller (404 otherwise)."""

    async def health(request: web.Request) -> web.Response:
        body = {"status": "ok", "service": request.app[SERVICE], "instance": request.app[INSTANCE_ID]}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def ready(request: web.Request) -> web.Response:
        names = list(checks)
        results = await asyncio.gather(*(_run_check(checks[name]) for name in names))
        failing = {name: error for name, error in zip(names, results, strict=True) if error is not None}
        degraded_but_serving = bool(failing) and serves_without is not None and serves_without(frozenset(failing))
        if failing and not degraded_but_serving:
            detail = "Not ready: " + ", ".join(f"{name} ({error})" for name, error in failing.items())
            return problem_response(
                request,
                503,
                "Service Unavailable",
                detail,
                headers={"Retry-After": "1"},
                extra={"failing": failing},
            )
        body = {
            "status": "degraded" if failing else "ready",
            "checks": {name: failing.get(name, "ok") for name in names},
            "instance": request.app[INSTANCE_ID],
        }
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    serve_metrics = metrics_handler(metrics)

    async def guarded_metrics(request: web.Request) -> web.StreamResponse:
        if metrics_visible_to is not None and not metrics_visible_to(request):
            raise web.HTTPNotFound
        return await serve_metrics(request)

    app.router.add_get("/metrics", guarded_metrics)
