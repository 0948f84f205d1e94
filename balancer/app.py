"""The balancer application factory (no I/O here: health loops and pools start and stop in cleanup contexts)."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from balancer.backend import Backend, Clock
from balancer.control import add_control_routes
from balancer.discovery import Discovery, Resolver
from balancer.forwarding import Balancer
from balancer.health import HealthChecker
from balancer.keys import BALANCER, DISCOVERY, HEALTH, SETTINGS, SIBLINGS
from balancer.metrics import BalancerMetrics
from balancer.picking import make_picker
from balancer.pool import BackendPool, breaker_code
from balancer.settings import BalancerSettings
from balancer.siblings import Siblings
from shared.context import request_middleware
from shared.health import add_health_routes
from shared.keys import INSTANCE_ID, METRICS, SERVICE
from shared.metrics import Metrics
from shared.tracing import Tracing

_log = structlog.get_logger("balancer")


class NotReady(Exception):
    """``/ready`` fails: shutting down, or no backend can take traffic."""


def _build_balancer(
    settings: BalancerSettings, metrics: Metrics, clock: Clock, rng: random.Random | None, siblings: Siblings
) -> Balancer:
    lb_metrics = BalancerMetrics(metrics)
    holder: list[Balancer] = []

    def breaker_changed(backend: Backend, old: str, new: str) -> None:
        lb_metrics.breaker_state(backend.breaker.name, breaker_code(new))
        _log.warning("circuit_breaker_transition", backend=backend.id, old=old, new=new)
        if holder:
            holder[0].on_rotation_change(backend, new)

    pool = BackendPool(settings, clock=clock, on_breaker_change=breaker_changed)
    balancer = Balancer(settings, pool, make_picker(settings.algorithm, rng=rng), lb_metrics, clock=clock)
    holder.append(balancer)

    def membership(backend: Backend, added: bool) -> None:
        if added:
            lb_metrics.breaker_state(backend.breaker.name, 0)
            backend.draining = backend.id in siblings.drained  # an operator's drain made on a sibling worker
            balancer.on_rotation_change(backend)
        else:
            # Zero first: in multiprocess mode (several workers) the last value stays in this worker's file.
            lb_metrics.backend_up.labels(backend.id).set(0)
            lb_metrics.backend_up.remove(backend.id)
            balancer.picker.forget(backend.id)

    pool.on_change(membership)
    for spec in settings.backends:
        pool.add(spec)
    return balancer


async def forward(request: web.Request) -> web.StreamResponse:
    return await request.app[BALANCER].forward(request)


def create_app(
    settings: BalancerSettings,
    *,
    clock: Clock = time.monotonic,
    rng: random.Random | None = None,
    resolver: Resolver | None = None,
) -> web.Application:
    """The balancer; ``resolver`` (default: the OS resolver) serves the ``dns+`` entries of ``BALANCER_BACKENDS``."""
    metrics = Metrics("balancer")
    tracing = Tracing("balancer", settings.common.instance_id)
    app = web.Application(
        middlewares=[request_middleware(metrics=metrics, tracing=tracing)],  # context, spans, metrics, problems
        client_max_size=max(settings.retry_body_limit, 1024**2),
    )
    siblings = Siblings.of(settings.common)
    balancer = _build_balancer(settings, metrics, clock, rng, siblings)
    checker = HealthChecker(
        balancer.pool,
        path=settings.health_path,
        interval=settings.health_interval,
        timeout=settings.health_timeout,
        startup_grace=settings.startup_grace,
        clock=clock,
        rng=rng,
        on_change=balancer.on_rotation_change,
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[SERVICE] = "balancer"
    app[INSTANCE_ID] = settings.common.instance_id
    app[BALANCER] = balancer
    app[HEALTH] = checker
    app[SIBLINGS] = siblings

    async def backend_pools(app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await balancer.pool.close()

    async def take_up_recorded_drains(app: web.Application) -> None:
        """A worker (re)started among several takes up the drains its siblings recorded."""
        siblings.load()
        for backend in balancer.pool.backends:
            if backend.id in siblings.drained:
                backend.draining = True
                balancer.on_rotation_change(backend)

    async def stop_being_ready(app: web.Application) -> None:
        balancer.stopping = True

    async def check_backends() -> None:
        if balancer.stopping:
            raise NotReady("shutting down")
        # Serving means a check passed: an optimistically routable backend nobody has checked yet does not count.
        if not any(backend.in_rotation() and backend.health.passed for backend in balancer.pool.backends):
            raise NotReady("no backend in rotation")

    app.cleanup_ctx.append(tracing.context)  # flushed last, after every pool and loop stopped
    app.cleanup_ctx.append(backend_pools)  # first in, last out: pools close after the health loops stop
    app.cleanup_ctx.append(checker.context())
    if settings.dns_targets:  # after the checker: it must be following the pool before discovery adds to it
        discovery = Discovery(
            balancer.pool,
            settings.dns_targets,
            interval=settings.dns_interval,
            resolver=resolver,
            metrics=balancer.metrics,
            clock=clock,
            on_draining=balancer.on_rotation_change,
        )
        app[DISCOVERY] = discovery
        app.cleanup_ctx.append(discovery.context())
    app.on_startup.append(take_up_recorded_drains)
    app.on_shutdown.append(stop_being_ready)
    add_health_routes(app, metrics, {"backends": check_backends})
    add_control_routes(app)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app
