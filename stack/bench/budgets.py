"""The performance budgets ``make bench`` holds the stack to, checked with ✓/✗ after a run.

CPU per request per process on the chain scenarios (the apiserver's on an L1 hit), Redis CPU per rate-limit
decision, and the chain's throughput, tail latency and ratio to the apiserver alone. A budget that a run did
not measure (its scenario was not selected) is reported as not measured, never as met.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CPU_BUDGET_MS = {"gateway": 0.20, "balancer": 0.10, "apiserver": 0.07, "redis": 0.025}
CHAIN_SCENARIOS = ("chain_jwt", "chain_anonymous", "chain_api_key", "rate_limited")
CHAIN_JWT_MIN_RPS = 4000.0
CHAIN_JWT_MAX_P99_MS = 30.0
CHAIN_TO_DIRECT_MIN = 0.35
TRACING_MAX_COST_PCT = 5.0  # the chain's CPU per request at the default 1 % ratio, against tracing off


@dataclass(frozen=True, slots=True)
class Check:
    what: str
    measured: float | None
    limit: float
    at_most: bool  # True: measured must be <= limit; False: >= limit

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured <= self.limit if self.at_most else self.measured >= self.limit

    def line(self) -> str:
        mark = {True: "✓", False: "✗", None: "-"}[self.met]
        sign = "≤" if self.at_most else "≥"
        value = "not measured" if self.measured is None else f"{self.measured:g}"
        return f"  {mark} {self.what:<44} {value:>12}   budget {sign} {self.limit:g}"


def _cpu(row: dict[str, Any], process: str) -> float | None:
    values = [value for name, value in row["cpu_ms_per_request"].items() if name.split("-")[0] == process]
    # Several apiservers share the load: their CPU per request adds up.
    return round(sum(values), 4) if values else None


def checks(rows: list[dict[str, Any]]) -> list[Check]:
    by_name = {row["scenario"]: row for row in rows}
    found: list[Check] = []
    for scenario in CHAIN_SCENARIOS:
        row = by_name.get(scenario)
        for process, limit in CPU_BUDGET_MS.items():
            measured = _cpu(row, process) if row else None
            if scenario == "rate_limited" and process in ("balancer", "apiserver"):
                continue  # a refused request never leaves the gateway
            found.append(Check(f"{scenario}: {process} CPU ms/request", measured, limit, at_most=True))
    jwt, direct = by_name.get("chain_jwt"), by_name.get("direct")
    found.append(Check("chain_jwt: req/s", jwt["rps"] if jwt else None, CHAIN_JWT_MIN_RPS, at_most=False))
    p99 = jwt["latency_ms"]["p99"] if jwt else None
    found.append(Check("chain_jwt: p99 ms", p99, CHAIN_JWT_MAX_P99_MS, at_most=True))
    found.append(Check("chain_jwt: failed requests", jwt["failed"] if jwt else None, 0, at_most=True))
    ratio = round(jwt["rps"] / direct["rps"], 3) if jwt and direct and direct["rps"] else None
    found.append(Check("chain_jwt / direct throughput", ratio, CHAIN_TO_DIRECT_MIN, at_most=False))
    limiter = by_name.get("limiter")
    if limiter is not None:
        found.append(Check("limiter: Redis CPU ms/decision", limiter["redis_cpu_ms_per_decision"], 0.025, at_most=True))
        capacity = limiter["redis_core_capacity_per_second"]
        found.append(Check("limiter: decisions/s per Redis core", capacity, 40_000, at_most=False))
    tracing = by_name.get("tracing")
    if tracing is not None:
        # What 1 % of sampled requests add, from the always-sampled chain: the direct 1 % comparison
        # (tracing["cost_pct"], printed beside it) is smaller than the noise of the runs; see stack.bench.tracing.
        implied = tracing.get("implied_cost_pct")  # absent when the scenario was skipped
        found.append(Check("tracing: chain CPU cost at 1 % sampling (%)", implied, TRACING_MAX_COST_PCT, at_most=True))
    scaling = by_name.get("scaling")
    if scaling is not None and "ratio" in scaling:
        found.append(Check("scaling: 2 workers / 1 worker req/s", scaling["ratio"], scaling["target_ratio"], False))
    return found


def print_budgets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Print every check; return them for results.json."""
    found = checks(rows)
    print("budgets (✓ met, ✗ missed, - not measured):")
    for check in found:
        print(check.line())
    return [{"what": c.what, "measured": c.measured, "limit": c.limit, "met": c.met} for c in found]
