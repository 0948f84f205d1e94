"""The shipped Grafana dashboards graph what the processes export.

Every PromQL expression of every dashboard in deploy/grafana/dashboards (panel targets and templating queries),
with Grafana's variables put in, is parsed by a real PromQL parser; each metric name it reads must be one the
running processes' /metrics can give Prometheus (or a series Prometheus writes itself, such as ``up``). Where
Prometheus runs, each expression is also evaluated on it and must answer with data.
"""

from __future__ import annotations

import math

import aiohttp
import pytest

from tests.observability.conftest import Observed
from tests.observability.dashboards import (
    DASHBOARDS,
    PROMETHEUS_SERIES,
    Query,
    dashboard_queries,
    exported_names,
    label_value_queries,
)
from tests.observability.dashboards import metric_names as names_in
from tests.observability.prometheus_server import QueryError

QUERIES = [query for path in DASHBOARDS for query in dashboard_queries(path)]


def test_there_is_something_to_check() -> None:
    assert DASHBOARDS, "no dashboard in deploy/grafana/dashboards"
    assert QUERIES, "the dashboards have no PromQL"


@pytest.mark.parametrize("query", QUERIES, ids=lambda query: query.where)
def test_every_expression_parses_and_names_its_metrics(query: Query) -> None:
    assert names_in(query.concrete), query.expr


@pytest.mark.e2e
def test_every_dashboard_metric_is_exported_by_a_process(observed: Observed) -> None:
    exported = {name for texts in observed.expositions.values() for text in texts for name in exported_names(text)}
    # The parse of /metrics found the families (a counter's name with _total, a histogram's buckets).
    assert {"http_requests_total", "http_request_duration_seconds_bucket", "lb_backend_up"} <= exported
    missing = {}
    for query in QUERIES:
        unknown = names_in(query.concrete) - exported - PROMETHEUS_SERIES
        if unknown:
            missing[query.where] = sorted(unknown)
    assert not missing, f"dashboard expressions read metrics no process exports: {missing}"


@pytest.mark.e2e
async def test_every_dashboard_expression_answers_on_prometheus(
    observed: Observed, http: aiohttp.ClientSession
) -> None:
    prometheus = observed.require_prometheus()
    empty = []
    for query in QUERIES:
        try:
            samples = await prometheus.query(http, query.concrete, at=observed.at)
        except QueryError as error:
            pytest.fail(f"{query.where}: Prometheus refused {query.concrete!r}: {error}")
        if not any(math.isfinite(sample.value) for sample in samples):
            empty.append(f"{query.where}: {query.concrete}")
    assert not empty, "dashboard expressions with no data after the traffic:\n" + "\n".join(empty)


@pytest.mark.e2e
async def test_the_service_variable_lists_every_tier(observed: Observed, http: aiohttp.ClientSession) -> None:
    prometheus = observed.require_prometheus()
    variables = [variable for path in DASHBOARDS for variable in label_value_queries(path)]
    assert [label for _, label in variables] == ["service"], variables
    for selector, label in variables:
        values = await prometheus.label_values(http, label, selector)
        assert set(values) == {"gateway", "balancer", "apiserver"}, values
