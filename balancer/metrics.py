"""The balancer's own metric families, registered next to the shared HTTP metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from shared.metrics import Metrics


class BalancerMetrics:
    def __init__(self, metrics: Metrics) -> None:
        registry = metrics.registry
        self.shared = metrics
        self.backend_up = Gauge(
            "lb_backend_up",
            "1 when the backend receives traffic (passing health checks, breaker not open, not draining).",
            ("backend",),
            registry=registry,
            multiprocess_mode="livemax",  # with several workers: 1 while any of them sends it traffic
        )
        self.retries = Counter("lb_retries_total", "Requests retried on another backend.", registry=registry)
        self.shed = Counter(
            "lb_shed_requests_total",
            "Requests refused with 503 because the balancer was at its in-flight limit.",
            registry=registry,
        )
        self.panic = Counter(
            "lb_panic_routed_total",
            "Requests routed while every health-passing backend had its breaker open (panic routing).",
            registry=registry,
        )
        self.no_backend = Counter(
            "lb_no_backend_total", "Requests refused with 503 because no backend was available.", registry=registry
        )
        self.upstream_failures = Counter(
            "lb_upstream_failures_total",
            "Failed exchanges with a backend, by kind (connect, reset, timeout, protocol, status).",
            ("backend", "kind"),
            registry=registry,
        )
        self.dns_resolutions = Counter(
            "lb_dns_resolutions_total",
            "DNS discovery resolutions by target and result (ok, error: the last known addresses are kept).",
            ("target", "result"),
            registry=registry,
        )
        self.dns_addresses = Gauge(
            "lb_dns_addresses",
            "Addresses a dns+ target resolved to last time it resolved.",
            ("target",),
            registry=registry,
            multiprocess_mode="livemax",
        )

    def breaker_state(self, name: str, code: int) -> None:
        self.shared.breaker_state.labels(name).set(code)
