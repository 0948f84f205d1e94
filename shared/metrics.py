"""Prometheus metrics: one registry per process, the HTTP request middleware and the ``/metrics`` handler.

Each app owns its own :class:`CollectorRegistry` (not the global one) so tests can build many apps in one
interpreter. Labelled children are looked up once per (method, route, status) and cached: the request
path pays two dictionary hits, a counter increment and a histogram observation.

Several workers on one port (:mod:`shared.workers`): a scrape reaches one worker at random, so every worker must
answer for the whole tier. The parent then starts each worker with ``PROMETHEUS_MULTIPROC_DIR`` set, which
prometheus_client reads at import: every value lives in a per-process file in that directory, and ``/metrics``
(and :meth:`Metrics.families`, which the gateway's dashboard reads) merges the files of all workers, dead ones
included, so counters and histograms are the tier's sums and never go backwards when a worker is restarted.
Gauges say how they merge (``multiprocess_mode``): in-flight figures are ``livesum``, states (breaker, backend
up, degraded) ``livemax``; a dead worker's live gauges are dropped by the parent (``mark_process_dead``).
Without the variable (one worker, and every test that builds apps in-process) nothing of this is in play.
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

# prometheus_client's own variable: when set (by the worker parent), values are kept in per-process files there.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# Latency buckets tuned for a fast API: sub-millisecond to multi-second.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED_ROUTE = "unmatched"


class Metrics:
    """The metric families every process exports, registered in a private registry."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        # Read once, as prometheus_client did at import: it decides where every value of this process lives.
        self.multiprocess_dir = os.environ.get(MULTIPROCESS_DIR_VARIABLE) or None
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests served, by route template and status.",
            ("service", "method", "route", "status"),
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "http_request_duration_seconds",
            "Time from request received to response sent.",
            ("service", "route"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.breaker_state = Gauge(
            "circuit_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open.",
            ("name",),
            registry=self.registry,
            multiprocess_mode="livemax",  # across workers: non-zero while any worker's breaker is not closed
        )
        # Connections on this process's listening port (shared.connections): open ones, the ones refused at once
        # (reason "per_address" or "total": which cap), and the ones closed for sending no whole head in time.
        self.connections_open = Gauge(
            "http_connections_open",
            "Client connections open on the listening port.",
            ("service",),
            registry=self.registry,
            multiprocess_mode="livesum",  # across workers: the tier's open connections
        )
        self.connections_refused = Counter(
            "http_connections_refused_total",
            "Connections closed on arrival because a connection cap was reached.",
            ("service", "reason"),
            registry=self.registry,
        )
        self.header_timeouts = Counter(
            "http_header_timeouts_total",
            "Connections closed because a request head was not complete within HEADER_TIMEOUT.",
            ("service",),
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.http_requests.labels(self.service, method, route, str(status)),
                self.http_duration.labels(self.service, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text of this process, or of every worker of the tier in multiprocess mode."""
        return generate_latest(self._source())

    def families(self, *names: str) -> dict[str, Metric]:
        """The named metric families (``http_requests``, not ``http_requests_total``) as ``/metrics`` has them:
        this process's values, or the whole tier's in multiprocess mode."""
        return {family.name: family for family in self._source().collect() if family.name in names}

    def _source(self) -> CollectorRegistry:
        if self.multiprocess_dir is None:
            return self.registry
        tier = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(tier, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
        return tier


def route_template(request: web.Request) -> str:
    """The route's template (``/api/v1/resources/{id}``), never the raw path, so label cardinality stays bounded."""
    resource = request.match_info.route.resource
    if resource is None:
        return UNMATCHED_ROUTE
    return resource.canonical


def metrics_handler(metrics: Metrics) -> Handler:
    """``/metrics``, rendered on a worker thread: a render takes 15-35 ms for a gateway's few hundred series (and
    reads every worker's files in multiprocess mode), which on the event loop would stall every request in flight
    for as long at each scrape. On a thread the loop still gets the interpreter every switch interval (5 ms).
    prometheus_client's values and registries are safe to read from another thread."""

    async def serve_metrics(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(metrics.render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return serve_metrics
