"""Gateway-specific metrics, and the dashboard's summary of them.

The dashboard's figures (responses by class, rate-limit decisions, shed requests, logins) are read back from
the Prometheus families rather than kept in a second in-process tally, so with several workers
(:mod:`shared.workers`) the worker serving the dashboard reports the whole tier's figures, as ``/metrics`` does.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge
from prometheus_client.metrics_core import Metric

from shared.identity import Tier
from shared.metrics import Metrics

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
LOGIN_RESULTS = ("succeeded", "failed")
_FAMILIES = ("ratelimit_decisions", "gateway_responses", "gateway_shed", "gateway_logins")


class GatewayStats:
    def __init__(self, metrics: Metrics) -> None:
        self.started_at = time.time()
        self._metrics = metrics
        registry = metrics.registry
        self._decisions = Counter(
            "ratelimit_decisions",
            "Rate-limit decisions, by tier and decision (allowed, limited, revoked, unavailable).",
            ("tier", "decision"),
            registry=registry,
        )
        self.in_flight = Gauge(
            "gateway_in_flight_requests",
            "Requests being served right now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._shed = Counter(
            "gateway_shed", "Requests refused with 503 because too many were in flight.", registry=registry
        )
        responses = Counter(
            "gateway_responses",
            "Responses to API requests (probes excluded), by status class.",
            ("class",),
            registry=registry,
        )
        logins = Counter("gateway_logins", "Password sign-ins, by result.", ("result",), registry=registry)
        # Bound once: the request path pays one increment.
        self._responses = {status: responses.labels(status) for status in STATUS_CLASSES}
        self._logins = {result: logins.labels(result) for result in LOGIN_RESULTS}

    def decision(self, tier: Tier, decision: str) -> None:
        self._decisions.labels(tier, decision).inc()

    def response(self, status: int) -> None:
        self._responses[STATUS_CLASSES[min(max(status // 100, 1), 5) - 1]].inc()

    def shed(self) -> None:
        self._shed.inc()

    def login(self, result: str) -> None:
        self._logins[result].inc()

    def snapshot(self) -> dict[str, object]:
        families = self._metrics.families(*_FAMILIES)
        tiers: dict[str, dict[str, int]] = {}
        for labels, count in sorted(_totals(families.get("ratelimit_decisions"), ("tier", "decision")).items()):
            tiers.setdefault(labels[0], {})[labels[1]] = count
        classes = {labels[0]: n for labels, n in _totals(families.get("gateway_responses"), ("class",)).items()}
        logins = {labels[0]: n for labels, n in _totals(families.get("gateway_logins"), ("result",)).items() if n}
        return {
            "uptime": round(time.time() - self.started_at, 3),
            "requests": sum(classes.values()),
            "responses_by_class": {status: count for status, count in sorted(classes.items()) if count},
            "rate_limit_decisions": tiers,
            "shed": sum(_totals(families.get("gateway_shed"), ()).values()),
            "logins": logins,
        }


def _totals(family: Metric | None, labels: tuple[str, ...]) -> dict[tuple[str, ...], int]:
    """A counter family's ``_total`` samples by the values of ``labels``."""
    totals: dict[tuple[str, ...], int] = {}
    for sample in family.samples if family is not None else ():
        if sample.name.endswith("_total"):
            key = tuple(sample.labels[name] for name in labels)
            totals[key] = totals.get(key, 0) + int(sample.value)
    return totals
