"""A real Prometheus, scraping a running stack with the shipped configuration, answers what an operator asks.

The stack, its traffic and the Prometheus are the package's ``observed`` fixture (conftest.py); every query is
evaluated at one instant after the last request was scraped, over the last minute (which holds all the traffic):

    request rate per route   sum by (job, route) (rate(http_requests_total[1m]))
    p99 latency per route    histogram_quantile(0.99,
                               sum by (job, route, le) (rate(http_request_duration_seconds_bucket[1m])))
    cache hit ratio          sum by (level) (rate(cache_requests_total{result="hit"}[1m]))
                               / sum by (level) (rate(cache_requests_total[1m]))
    limiter decisions        sum by (tier, decision) (rate(ratelimit_decisions_total[1m])), and the counters themselves
    breaker state            max by (name) (circuit_breaker_state{job="balancer"}), and lb_backend_up by backend

What the clients were answered is known (tests/observability/traffic.py), so the values are checked against it:
counters equal to the client's tally, rates that match the traffic sent, a ratio between 0 and 1.
"""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.observability.conftest import Observed
from tests.observability.prometheus_server import Sample, finite
from tests.observability.traffic import ANONYMOUS_LIMIT

pytestmark = pytest.mark.e2e

WINDOW = "1m"
WINDOW_SECONDS = 60.0
REQUEST_RATE = f"sum by (job, route) (rate(http_requests_total[{WINDOW}]))"
P99 = f"histogram_quantile(0.99, sum by (job, route, le) (rate(http_request_duration_seconds_bucket[{WINDOW}])))"
HIT_RATIO = (
    f'sum by (level) (rate(cache_requests_total{{result="hit"}}[{WINDOW}]))'
    f" / sum by (level) (rate(cache_requests_total[{WINDOW}]))"
)
DECISION_RATE = f"sum by (tier, decision) (rate(ratelimit_decisions_total[{WINDOW}]))"
DECISIONS = "sum by (tier, decision) (ratelimit_decisions_total)"
BALANCER_BREAKERS = 'max by (name) (circuit_breaker_state{job="balancer"})'
APISERVER_BREAKERS = 'max by (name) (circuit_breaker_state{job="apiserver"})'
BACKENDS_UP = "max by (backend) (lb_backend_up)"
LARGEST_BUCKET = 10.0  # seconds: shared.metrics.LATENCY_BUCKETS' last finite bound
RAW_ID = re.compile(r"/\d+(/|$)")


async def query(http: aiohttp.ClientSession, observed: Observed, expr: str) -> list[Sample]:
    return await observed.require_prometheus().query(http, expr, at=observed.at)


def by(samples: list[Sample], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(sample.labels.get(label, "") for label in labels): sample.value for sample in samples}


async def test_request_rate_per_route_matches_the_traffic_sent(observed: Observed, http: aiohttp.ClientSession) -> None:
    rates = by(await query(http, observed, REQUEST_RATE), "job", "route")
    assert not [route for _, route in rates if RAW_ID.search(route)], f"raw paths as route labels: {rates}"
    for route in ("/api/v1/resources/{id}", "/api/v1/resources", "/api/v1/status"):
        sent = sum(n for (_, sent_route, _), n in observed.traffic.answers.items() if sent_route == route)
        # All the traffic is inside the window; Prometheus extrapolates the first and last second a little.
        assert 0.5 * sent / WINDOW_SECONDS <= rates[("gateway", route)] <= 1.5 * sent / WINDOW_SECONDS, (route, rates)
    for route in ("/api/v1/resources/{id}", "/api/v1/resources", "/api/v1/status"):
        assert rates[("apiserver", route)] > 0, (route, rates)
    # The balancer forwards every path through one catch-all route, whose template is the label.
    assert rates[("balancer", "/{tail}")] > 0, rates


async def test_p99_latency_per_route_comes_from_the_histogram(observed: Observed, http: aiohttp.ClientSession) -> None:
    p99 = by(finite(await query(http, observed, P99)), "job", "route")
    for key in (
        ("gateway", "/api/v1/resources/{id}"),
        ("apiserver", "/api/v1/resources/{id}"),
        ("balancer", "/{tail}"),
    ):
        assert 0 < p99[key] <= LARGEST_BUCKET, (key, p99)
    # Each hop's latency includes the hops behind it.
    assert p99[("gateway", "/api/v1/resources/{id}")] >= p99[("apiserver", "/api/v1/resources/{id}")], p99


async def test_l1_and_l2_hit_ratios_after_repeated_reads(observed: Observed, http: aiohttp.ClientSession) -> None:
    ratios = by(await query(http, observed, HIT_RATIO), "level")
    assert set(ratios) == {("l1",), ("l2",)}, ratios
    assert 0 < ratios[("l2",)] <= 1, ratios
    # Every resource is read every round and changes only every few rounds: most reads are L1 hits.
    assert 0.5 < ratios[("l1",)] <= 1, ratios


async def test_limiter_decisions_per_tier(observed: Observed, http: aiohttp.ClientSession) -> None:
    rates = by(await query(http, observed, DECISION_RATE), "tier", "decision")
    for key in (("anonymous", "allowed"), ("anonymous", "limited"), ("free", "allowed"), ("enterprise", "allowed")):
        assert rates.get(key, 0) > 0, (key, rates)
    counts = by(await query(http, observed, DECISIONS), "tier", "decision")
    traffic = observed.traffic
    # The anonymous budget (logins included) was spent once; every later anonymous request was a 429.
    assert counts[("anonymous", "allowed")] == ANONYMOUS_LIMIT, counts
    assert counts[("anonymous", "limited")] == traffic.count(who="anonymous", status=429), counts
    assert counts[("free", "allowed")] == traffic.count(who="user"), counts
    assert counts[("enterprise", "allowed")] == traffic.count(who="admin"), counts
    assert not {key for key in counts if key[0] != "anonymous" and key[1] != "allowed"}, counts


async def test_breaker_state_per_backend(observed: Observed, http: aiohttp.ClientSession) -> None:
    states = by(await query(http, observed, BALANCER_BREAKERS), "name")
    failing = observed.failing_backend
    healthy = [f"127.0.0.1:{process.port}" for process in observed.stack.apiservers]
    # The backend answering 500 has its breaker open (1); the apiservers' are closed (0).
    assert states == {(f"backend:{failing}",): 1.0, **{(f"backend:{backend}",): 0.0 for backend in healthy}}
    up = by(await query(http, observed, BACKENDS_UP), "backend")
    assert up == {(failing,): 0.0, **{(backend,): 1.0 for backend in healthy}}
    apiserver_breakers = by(await query(http, observed, APISERVER_BREAKERS), "name")
    assert apiserver_breakers, "no apiserver breaker series"
    assert set(apiserver_breakers.values()) == {0.0}, apiserver_breakers
