"""``/lb/*``: the balancer's status and its operator controls.

``GET /lb/status`` is read-only and only reachable inside the deployment. Everything that changes state
(drain, enable, breaker reset) requires a signed admin identity in ``X-Internal-Identity`` (the gateway's admin
API signs one with ``INTERNAL_SECRET``), so a caller that can reach the port still cannot take backends out.

Drain: ``POST /lb/backends/{id}/drain?wait=S`` stops new requests to the backend at once, then waits up to
``S`` seconds (default 30) for its in-flight requests to finish: 200 ``{"drained": true}`` when they did, 202
``{"drained": false, "in_flight": n}`` when the wait ended first (poll ``/lb/status`` for the rest).

With several workers, drain, enable and breaker reset apply to every worker of the balancer and the drain's
answer sums over them (:mod:`balancer.siblings`); ``/lb/status`` answers for the worker that received it and
says which (``instance``, ``worker``, ``workers``).
"""

from __future__ import annotations

import asyncio
import math
import re
import time

import orjson
import structlog
from aiohttp import web

from balancer.backend import Backend
from balancer.keys import BALANCER, DISCOVERY, SETTINGS, SIBLINGS
from balancer.siblings import Answer
from shared.authz import require_admin
from shared.errors import Problem
from shared.identity import IDENTITY_HEADER, verify_identity

MAX_DRAIN_WAIT = 300.0
_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{0,12})?([eE][+-]?[0-9]{1,3})?")
RELAY_MARGIN = 5.0  # a sibling's answer may take this much longer than the wait it was given
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
    common = balancer.settings.common
    body: dict[str, object] = {
        "instance": common.instance_id,
        "worker": common.worker_index,
        "workers": common.workers,
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
    wait = drain_wait(request.query.get("wait"))
    if not backend.draining:
        _log.warning("backend_draining", backend=backend.id, in_flight=backend.in_flight)
    backend.draining = True
    request.app[BALANCER].on_rotation_change(backend)
    siblings = request.app[SIBLINGS]
    siblings.remember(request, backend.id, draining=True)
    drained, answers = await asyncio.gather(
        backend.wait_idle(wait), siblings.relay(request, within=wait + RELAY_MARGIN)
    )
    if drained:
        _log.warning("backend_drained", backend=backend.id)
    body: dict[str, object] = {"id": backend.id, "draining": True, "drained": drained, "in_flight": backend.in_flight}
    if siblings.sockets and not siblings.is_relay(request):
        body = _summed(body, answers, siblings.count)
    return _json(body, 200 if body["drained"] else 202)


def drain_wait(raw: str | None) -> float:
    """``?wait=`` as seconds in [0, MAX_DRAIN_WAIT] (default 30): an unsigned decimal (``30``, ``2.5``, ``1e+06`` as
    ``{:g}`` writes it), so neither ``nan`` nor ``inf`` nor the non-ASCII digits ``float()`` also takes can reach
    ``asyncio.wait_for``; larger waits are capped."""
    if raw is None:
        return 30.0
    if not _SECONDS.fullmatch(raw) or not math.isfinite(seconds := float(raw)):
        raise Problem(400, "Bad Request", "wait must be a number of seconds, such as 30 or 2.5.")
    return min(seconds, MAX_DRAIN_WAIT)


def _summed(body: dict[str, object], answers: list[Answer | None], count: int) -> dict[str, object]:
    """This worker's drain answer combined with its siblings': drained on all that answered, in flight summed.
    A sibling without the backend (404: DNS has not shown it there yet) has nothing in flight to it."""
    answered = [answer for answer in answers if answer is not None]
    known = [answer.body for answer in answered if answer.status != 404]
    in_flight = int(str(body["in_flight"])) + sum(int(item.get("in_flight", 0)) for item in known)
    drained = bool(body["drained"]) and all(item.get("drained") is True for item in known)
    workers = {"count": count, "answered": 1 + len(answered)}
    return {**body, "drained": drained, "in_flight": in_flight, "workers": workers}


async def enable_backend(request: web.Request) -> web.Response:
    _require_operator(request)
    backend = _backend(request)
    if request.app[BALANCER].pool.removing(backend.id):
        raise Problem(409, "Conflict", f"Backend {backend.id!r} is leaving the pool (no longer in DNS).")
    backend.draining = False
    request.app[BALANCER].on_rotation_change(backend)
    siblings = request.app[SIBLINGS]
    siblings.remember(request, backend.id, draining=False)
    answers = await siblings.relay(request, within=RELAY_MARGIN)
    _log.warning("backend_enabled", backend=backend.id)
    body: dict[str, object] = {"id": backend.id, "draining": False, "healthy": backend.health.up}
    if siblings.sockets and not siblings.is_relay(request):
        body["workers"] = {"count": siblings.count, "answered": 1 + sum(answer is not None for answer in answers)}
    return _json(body)


async def reset_breaker(request: web.Request) -> web.Response:
    _require_operator(request)
    backend = _backend(request)
    backend.breaker.reset()
    await request.app[SIBLINGS].relay(request, within=RELAY_MARGIN)
    _log.warning("breaker_reset", backend=backend.id)
    return _json(backend.breaker.snapshot())


def add_control_routes(app: web.Application) -> None:
    app.router.add_get("/lb/status", lb_status)
    app.router.add_post("/lb/backends/{id}/drain", drain_backend)
    app.router.add_post("/lb/backends/{id}/enable", enable_backend)
    app.router.add_post("/lb/breakers/{id}/reset", reset_breaker)
