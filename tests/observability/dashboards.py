"""The PromQL of the shipped Grafana dashboards, made concrete, and the metric names it reads; the names the
processes export.

    deploy/grafana/dashboards/*.json ──queries──► every panel target's ``expr`` and every templating query
    concrete(expr) ──► Grafana's variables replaced as Grafana does before a query reaches Prometheus
                       ($__rate_interval → a range, a template variable → its "All" value)
    metric_names(expr) ──► promql-parser's AST walked for vector selectors: their names

Names come from a real PromQL parser (promql-parser: Python bindings of GreptimeTeam's Rust parser, which follows
Prometheus's grammar) rather than a tokenizer: telling a metric name from a function, an aggregation keyword, a
``by``/``on`` label list, a modifier or a string would mean re-implementing that grammar, and a parser also fails
on an expression Prometheus would refuse. Exported names come from the processes' own ``/metrics`` text, read by
prometheus_client's parser, with the sample names each metric type implies (a labelled family that has not been
used yet has no samples, only its ``# TYPE`` line).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "DASHBOARDS",
    "PROMETHEUS_SERIES",
    "Query",
    "concrete",
    "dashboard_queries",
    "exported_names",
    "label_value_queries",
    "metric_names",
]

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards").glob("*.json"))
# The series Prometheus itself writes for every target it scrapes (not exported by any process).
PROMETHEUS_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
# What Grafana puts in for its built-in variables, for a dashboard looked at over the last few minutes.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
# The sample names a family of each type has (after its name, which prometheus_client's parser gives without
# ``_total``), whether or not it has samples yet; gauges and untyped families are their name.
_TYPE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<match>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$")


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a dashboard, and where it is (for messages)."""

    where: str
    expr: str
    variables: dict[str, str]

    @property
    def concrete(self) -> str:
        return concrete(self.expr, self.variables)


def dashboard_queries(path: Path) -> Iterator[Query]:
    """Every panel target's ``expr`` (rows' nested panels included) and the metric selector of every
    ``label_values(...)`` templating query."""
    dashboard: dict[str, Any] = json.loads(path.read_text())
    variables = _template_values(dashboard)
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield Query(
                    f"{path.name}: panel {panel.get('title')!r} {target.get('refId')}", target["expr"], variables
                )
    for selector, _ in label_value_queries(path):
        yield Query(f"{path.name}: templating {selector!r}", selector, variables)


def label_value_queries(path: Path) -> list[tuple[str, str]]:
    """Every ``label_values(selector, label)`` templating query as (selector, label); another kind of query, or
    one without a selector (which would list a label over every metric), is an error."""
    dashboard: dict[str, Any] = json.loads(path.read_text())
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        parsed = _LABEL_VALUES.match(text)
        if parsed is None or parsed["match"] is None:
            raise ValueError(
                f"{path.name}: variable {variable['name']!r} is not label_values(selector, label): {text!r}"
            )
        found.append((parsed["match"], parsed["label"]))
    return found


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _template_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each templating variable's value when "All" is picked (or its current value), as Grafana interpolates it."""
    values: dict[str, str] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        current = variable.get("current", {}).get("value")
        if variable.get("includeAll") and variable.get("allValue"):
            values[variable["name"]] = variable["allValue"]
        elif isinstance(current, str) and current != "$__all":
            values[variable["name"]] = current
        else:
            raise ValueError(f"templating variable {variable['name']!r} has no value to put in")
    return values


def concrete(expr: str, variables: dict[str, str]) -> str:
    """``expr`` with every Grafana variable replaced; an unknown one is an error, not a silent leftover."""

    def value(found: re.Match[str]) -> str:
        name = found[1] or found[2] or found[3]
        known = {**GRAFANA_BUILTINS, **variables}
        if name not in known:
            raise ValueError(f"unknown Grafana variable ${name} in {expr!r}")
        return known[name]

    return _VARIABLE.sub(value, expr)


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects; a selector without a fixed name (``{__name__=~"..."}``) is an error,
    because nothing could check it."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(_selector_name(node, expr))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _selector_name(selector: promql_parser.VectorSelector, expr: str) -> str:
    if selector.name:
        return selector.name
    for matcher in selector.matchers.matchers:
        if matcher.name == "__name__" and matcher.op == promql_parser.MatchOp.Equal:
            return matcher.value
    raise ValueError(f"a selector in {expr!r} has no fixed metric name: {selector}")


def exported_names(exposition: str) -> set[str]:
    """Every series name a Prometheus scraping ``exposition`` (``/metrics`` text) can store."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _TYPE_SUFFIXES.get(family.type, ("",)))
    return names
