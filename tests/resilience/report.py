"""The figures each scenario measured, written as JSON under ``reports/<suite>/<scenario>.json``.

A scenario calls :func:`record` *before* asserting, so a failing scenario still leaves its numbers behind
(``tests/resilience/summary.py`` turns every report into the README's "Failure behaviour" table). Figures:
requests sent, failed (as the scenario defines failure), status counts, latency p50/p99 in ms, recovery
time in seconds, the guarantee checked, and whatever else the scenario found worth keeping.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPORTS_DIR = Path(os.environ.get("REPORTS_DIR", Path(__file__).resolve().parents[2] / "reports"))


@dataclass(frozen=True, slots=True)
class Sample:
    """One request of a load run: what was asked, what came back (0 = no HTTP answer) and how long it took."""

    name: str
    status: int
    latency: float
    started: float
    idempotent: bool = True
    error: str = ""
    retry_after: str | None = None


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def status_counts(samples: Iterable[Sample]) -> dict[str, int]:
    counts = Counter("error" if sample.status == 0 else str(sample.status) for sample in samples)
    return dict(sorted(counts.items()))


def record(
    suite: str,
    scenario: str,
    *,
    title: str,
    guarantee: str,
    samples: list[Sample],
    failed: int,
    recovery_s: float | None = None,
    latency_of: Iterable[Sample] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the report for one scenario and return it. ``latency_of`` narrows the latency figures (e.g. to
    admitted requests only); by default they cover every sample that got an HTTP answer."""
    timed = [s.latency for s in (latency_of if latency_of is not None else samples) if s.status and s.latency > 0]
    report: dict[str, Any] = {
        "suite": suite,
        "scenario": scenario,
        "title": title,
        "guarantee": guarantee,
        "sent": len(samples),
        "failed": failed,
        "statuses": status_counts(samples),
        "latency_ms": {"p50": ms(percentile(timed, 0.50)), "p99": ms(percentile(timed, 0.99))},
        "recovery_s": None if recovery_s is None else round(recovery_s, 2),
        "extra": dict(extra or {}),
    }
    directory = REPORTS_DIR / suite
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{scenario}.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
