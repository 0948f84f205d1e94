"""One observed stack for the whole package: the real processes, traffic through them, and (where Debian's
``prometheus`` is installed) a real Prometheus scraping them with the shipped configuration.

    reset PostgreSQL + Redis ─► a backend that answers 500 ─► the stack: 2 apiservers, the balancer (that backend
    in its pool too), a gateway whose anonymous limit is small ─► Prometheus on deploy/prometheus/prometheus.yml
    rendered onto the stack's ports; every target up ─► traffic (tests/observability/traffic.py) ─► every target
    scraped again after the last request ─► each process's /metrics text

Every PromQL query is evaluated at one instant, ``Observed.at``, after that last scrape, so what a test sees does
not depend on how long the tests before it took. Without the binary the Prometheus tests skip; the dashboard's
metric names are still checked against the processes' /metrics.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import yaml

from stack.services.ports import free_port
from tests.observability.prometheus_server import (
    MISSING,
    SCRAPE_INTERVAL,
    SHIPPED_CONFIG,
    PrometheusServer,
    binary,
    render_config,
)
from tests.observability.traffic import ANONYMOUS_LIMIT, RESOURCES, Traffic, create_resources, drive
from tests.support.polling import wait_until
from tests.support.processes import SuiteProcess, start_test_backend
from tests.support.servers import Server, reset_state, run_sync
from tests.support.stack import UNLIMITED, Stack, backend_id, running_stack

TRAFFIC_SECONDS = 5 * SCRAPE_INTERVAL  # every counter is seen rising over several scrapes
# The failing backend's breaker must still be open when the queries run, long after it opened.
BALANCER_ENV = {"BALANCER_BREAKER_RESET": "600", "BALANCER_BREAKER_MAX_RESET": "600"}


@dataclass(frozen=True)
class Observed:
    stack: Stack
    failing_backend: str  # its id in the balancer's pool (``127.0.0.1:<port>``)
    traffic: Traffic
    expositions: dict[str, list[str]]  # job -> the /metrics text of each of its processes
    prometheus: PrometheusServer | None
    at: float  # Unix time every query is evaluated at

    def require_prometheus(self) -> PrometheusServer:
        if self.prometheus is None:
            pytest.skip(MISSING)
        return self.prometheus


def scrape_targets(stack: Stack, prometheus_address: str) -> dict[str, list[str]]:
    """The stack's processes by the shipped configuration's job names."""
    return {
        "gateway": [f"127.0.0.1:{process.port}" for process in stack.gateways],
        "balancer": [f"127.0.0.1:{stack.balancer.port}"],
        "apiserver": [f"127.0.0.1:{process.port}" for process in stack.apiservers],
        "prometheus": [prometheus_address],
    }


def start_prometheus(stack: Stack, root: Path) -> PrometheusServer | None:
    executable = binary("prometheus")
    if executable is None:
        return None
    port = free_port()
    config = render_config(yaml.safe_load(SHIPPED_CONFIG.read_text()), scrape_targets(stack, f"127.0.0.1:{port}"))
    (root / "prometheus").mkdir()
    return PrometheusServer(executable, config, root / "prometheus", port).start()


async def every_target_scraped(http: aiohttp.ClientSession, prometheus: PrometheusServer, *, after: float) -> bool:
    """Every target of the rendered configuration is up, its last scrape started after ``after`` (Unix time)."""
    # timestamp() of a bare selector is the scrape's time (of any other expression, the evaluation time).
    samples = await prometheus.query(http, "timestamp(up) and on (job, instance) up == 1")
    return len(samples) == prometheus.targets and all(sample.value > after for sample in samples)


async def read_metrics(http: aiohttp.ClientSession, process: SuiteProcess) -> str:
    async with http.get(process.url + "/metrics") as response:
        assert response.status == 200, await response.text()
        return await response.text()


async def observe(stack: Stack, failing: SuiteProcess, prometheus: PrometheusServer | None) -> Observed:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.post(failing.url + "/_control", params={"status": "500"}) as response:
            assert response.status == 200, await response.text()
        if prometheus is not None:
            await wait_until(lambda: every_target_scraped(http, prometheus, after=0), within=30, interval=0.2)
        ids = await create_resources(http, stack, RESOURCES)
        traffic = await drive(http, stack, ids, seconds=TRAFFIC_SECONDS)
        ended = time.time()
        if prometheus is not None:
            await wait_until(lambda: every_target_scraped(http, prometheus, after=ended), within=30, interval=0.2)
        expositions = {
            "gateway": [await read_metrics(http, process) for process in stack.gateways],
            "balancer": [await read_metrics(http, stack.balancer)],
            "apiserver": [await read_metrics(http, process) for process in stack.apiservers],
        }
    return Observed(stack, backend_id(failing), traffic, expositions, prometheus, time.time())


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture(scope="package")
def observed(
    postgres_server: Server, redis_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    run_sync(reset_state(postgres_server.url, redis_server.url))
    tmp = tmp_path_factory.mktemp("observability")
    failing = start_test_backend(tmp)
    options = {"apiservers": 2, "extra_backends": [failing], "balancer_env": BALANCER_ENV}
    limits = {**UNLIMITED, "RATE_LIMIT_ANONYMOUS": str(ANONYMOUS_LIMIT)}
    with running_stack(tmp, postgres_server.url, redis_server.url, rate_limits=limits, **options) as stack:
        prometheus = start_prometheus(stack, tmp)
        try:
            yield run_sync(observe(stack, failing, prometheus))
        finally:
            if prometheus is not None:
                prometheus.stop()
