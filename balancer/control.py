"""``/lb/*``: the balancer's status and its operator controls.

``GET /lb/status`` is read-only and only reachable inside the deployment. Everything that changes state
(drain, enable, breaker reset) requires a signed admin identity in ``X-Internal-Identity`` (the gateway's admin
API signs one with ``INTERNAL_SECRET``), so a caller that can reach the port still cannot take backends out.

Drain: ``POST /lb/backends/{id}/drain?wait=S`` stops new requests to the backend at once, then waits up to
``S`` seconds (default 30) for its in-flight requests to finish: 200 ``{"drained": true}`` when they did, 202
``{"drained": false, "in_flight": n}`` when the wait ended first (poll ``/lb/status`` for the rest).
"""

from __future__ import annotations

import time

import orjson
import structlog
from aiohttp import web

from balancer.backend import Backend
from balancer.keys import BALANCER, DISCOVERY, SETTINGS
from shared.authz import require_admin
from shared.errors import Problem
from shared.identity import IDENTITY_HEADER, verify_identity

MAX_DRAIN_WAIT = 300.0
_log = structlog.get_logger("balancer.control")


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _require_operator(request: web.Request) -> None:
    """The shared admin rule on the signed identity header; no Bearer challenge: callers here hold no tokens."""
    identity = verify_identity(request.headers.get(IDENTITY_HEADER), request.app[SETTINGS].common.internal_secret)
    require_admin(
        identity,
        unauthenticated=f"A signed admin identity ({IDENTITY_HEADER}) is required.",
        forbidden="Only admins may change the balancer.",
        challenge=None,
    )


def _backend(request: web.Request) -> Backend:
    # Breakers are named "backend:<id>"; accept either form.
    backend_id = request.match_info["id"].removeprefix("backend:")
    backend = request.app[BALANCER].pool.get(backend_id)
    if backend is None:
        raise Problem(404, "Not Found", f"No backend {backend_id[:80]!r} in the pool.")
    return backend


def status_body(app: web.Application) -> dict[str, object]:
    balancer = app[BALANCER]
    now = time.monotonic()
    backends = [
        {**backend.snapshot(now), "removing": balancer.pool.removing(backend.id)} for backend in balancer.pool.backends
    ]
    body: dict[str, object] = {
        "algorithm": balancer.picker.name,
        "in_flight": balancer.in_flight,
        "max_in_flight": balancer.settings.max_in_flight,
        "retry_budget": {
            "ratio": balancer.budget.ratio,
            "retries_in_flight": balancer.budget.retries,
            "refused": balancer.budget.refused,
        },
        "healthy_backends": sum(1 for backend in balancer.pool.backends if backend.in_rotation()),
        "backends": backends,
    }
    discovery = app.get(DISCOVERY)
    if discovery is not None:
        body["discovery"] = discovery.snapshot()
    return body


async def lb_status(request: web.Request) -> web.Response:
    return _json(status_body(request.app))


async def drain_backend(request: web.Request) -> web.Response:
    _require_operator(request)
    backend = _backend(request)
    try:
        wait = min(float(request.query.get("wait", "30")), MAX_DRAIN_WAIT)
    except ValueError:
        raise Problem(400, "Bad Request", "wait must be a number of seconds.") from None
    if not backend.draining:
        _log.warning("backend_draining", backend=backend.id, in_flight=backend.in_flight)
    backend.draining = True
    request.app[BALANCER].on_rotation_change(backend)
    drained = await backend.wait_idle(max(wait, 0.0))
    if drained:
        _log.warning("backend_drained", backend=backend.id)
    body = {"id": backend.id, "draining": True, "drained": drained, "in_flight": backend.in_flight}
    return _json(body, 200 if drained else 202)


async def enable_backend(request: web.Request) -> web.Response:
    _require_operator(request)
    backend = _backend(request)
    if request.app[BALANCER].pool.removing(backend.id):
        raise Problem(409, "Conflict", f"Backend {backend.id!r} is leaving the pool (no longer in DNS).")
    backend.draining = False
    request.app[BALANCER].on_rotation_change(backend)
    _log.warning("backend_enabled", backend=backend.id)
    return _json({"id": backend.id, "draining": False, "healthy": backend.health.up})


async def reset_breaker(request: web.Request) -> web.Response:
    _require_operator(request)
    backend = _backend(request)
    backend.breaker.reset()
    _log.warning("breaker_reset", backend=backend.id)
    return _json(backend.breaker.snapshot())


def add_control_routes(app: web.Application) -> None:
    app.router.add_get("/lb/status", lb_status)
    app.router.add_post("/lb/backends/{id}/drain", drain_backend)
    app.router.add_post("/lb/backends/{id}/enable", enable_backend)
    app.router.add_post("/lb/breakers/{id}/reset", reset_breaker)
