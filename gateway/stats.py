"""Gateway-specific metrics, with an in-process tally the admin dashboard reads without parsing Prometheus text."""

from __future__ import annotations

import time
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter, Gauge

from shared.identity import Tier


class GatewayStats:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.started_at = time.time()
        self._decisions = Counter(
            "ratelimit_decisions",
            "Rate-limit decisions, by tier and decision (allowed, limited, revoked, unavailable).",
            ("tier", "decision"),
            registry=registry,
        )
        self.in_flight = Gauge("gateway_in_flight_requests", "Requests being served right now.", registry=registry)
        self._shed = Counter(
            "gateway_shed", "Requests refused with 503 because too many were in flight.", registry=registry
        )
        self._decision_tally: Tally[tuple[Tier, str]] = Tally()
        self._status_tally: Tally[int] = Tally()
        self.shed_count = 0
        self.logins: Tally[str] = Tally()

    def decision(self, tier: Tier, decision: str) -> None:
        self._decisions.labels(tier, decision).inc()
        self._decision_tally[(tier, decision)] += 1

    def response(self, status: int) -> None:
        self._status_tally[status // 100 * 100] += 1

    def shed(self) -> None:
        self._shed.inc()
        self.shed_count += 1

    def snapshot(self) -> dict[str, object]:
        tiers: dict[str, dict[str, int]] = {}
        for (tier, decision), count in sorted(self._decision_tally.items()):
            tiers.setdefault(tier, {})[decision] = count
        return {
            "uptime": round(time.time() - self.started_at, 3),
            "requests": sum(self._status_tally.values()),
            "responses_by_class": {f"{status // 100}xx": count for status, count in sorted(self._status_tally.items())},
            "rate_limit_decisions": tiers,
            "shed": self.shed_count,
            "logins": dict(self.logins),
        }
