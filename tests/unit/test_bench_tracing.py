"""The tracing scenario's arithmetic: medians over rounds, costs paired within a round, the implied 1 % cost."""

from __future__ import annotations

from typing import Any

import pytest

from stack.bench.budgets import TRACING_MAX_COST_PCT, checks
from stack.bench.tracing import Exported, summarize


def _run(rps: float, gateway: float, balancer: float, apiserver: float) -> dict[str, Any]:
    return {
        "requests": int(rps * 10),
        "rps": rps,
        "failed": 0,
        "cpu_ms_per_request": {"gateway": gateway, "balancer": balancer, "apiserver": apiserver},
    }


ROUNDS = [
    # the machine drifts between rounds; within a round the three chains are measured close together
    {"off": _run(1000, 0.3, 0.2, 0.1), "default": _run(990, 0.303, 0.202, 0.101), "always": _run(400, 0.9, 0.5, 0.2)},
    {"off": _run(800, 0.36, 0.24, 0.12), "default": _run(760, 0.37, 0.25, 0.12), "always": _run(300, 1.1, 0.6, 0.3)},
    {"off": _run(1200, 0.3, 0.2, 0.1), "default": _run(1230, 0.3, 0.2, 0.1), "always": _run(450, 0.9, 0.6, 0.3)},
]


def test_medians_and_paired_costs() -> None:
    row = summarize(ROUNDS, {"default": Exported(3, 3000, 290), "always": Exported(90, 900_000, 80_500)})
    assert row["rps"] == {"off": 1000, "default": 990, "always": 400}
    assert row["cost_pct_rounds"] == [1.0, 5.0, -2.5]
    assert row["cost_pct"] == 1.0  # the median of the paired costs, not the cost of the medians
    assert row["chain_cpu_ms_per_request"]["off"] == pytest.approx(0.6)
    # always minus off per round: 1.0, 1.28, 1.2 ms; the median 1.2
    assert row["sampled_request_extra_cpu_ms"] == pytest.approx(1.2)
    # 1 % of the extra over off per round: 1.6667, 1.7778, 2.0 %
    assert row["implied_cost_pct"] == pytest.approx(1.78)
    assert row["exports"] == {"default": 3, "always": 90}
    assert row["spans_per_request"] == {"default": 0.01, "always": 7.0}  # 29,000 and 11,500 requests
    assert row["failed"] == 0


def test_the_budget_holds_the_implied_cost() -> None:
    row = summarize(ROUNDS, {})
    (check,) = [check for check in checks([row]) if check.what.startswith("tracing")]
    assert check.measured == row["implied_cost_pct"]
    assert check.met
    expensive = [{**runs, "always": _run(100, 3.0, 2.0, 1.0)} for runs in ROUNDS]
    (check,) = [check for check in checks([summarize(expensive, {})]) if check.what.startswith("tracing")]
    assert check.measured is not None
    assert check.measured > TRACING_MAX_COST_PCT
    assert check.met is False


def test_a_round_whose_off_chain_served_nothing_is_left_out() -> None:
    dead = {**ROUNDS[0], "off": {**_run(0, 0, 0, 0), "requests": 0}}
    row = summarize([dead, *ROUNDS[1:]], {})
    assert len(row["cost_pct_rounds"]) == 2
    skipped = summarize([dead], {})
    assert "skipped" in skipped
    (check,) = [check for check in checks([skipped]) if check.what.startswith("tracing")]
    assert check.met is None, "not measured, never met"
