"""Debian's Prometheus run against a test stack: the shipped configuration rendered onto the stack's ports, and
the HTTP API the tests query.

    deploy/prometheus/prometheus.yml ──render_config──► the same jobs, labels and relabelling; each job's service
        discovery (Docker DNS names) replaced by the stack's 127.0.0.1 targets; scrape interval 1 s
    PrometheusServer.start() ──► prometheus --config.file=<rendered> on a free port, polled until /-/ready
    query(expr, at) ──► GET /api/v1/query: the instant vector as (labels, value) samples

The binaries come from Debian's ``prometheus`` package (``make prometheus`` installs it as root, as ``make
chromium`` does the browser); where they are missing the tests that need them skip, saying how to get them.
"""

from __future__ import annotations

import copy
import math
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp
import yaml

from stack.services.ports import free_port

__all__ = [
    "MISSING",
    "SCRAPE_INTERVAL",
    "SHIPPED_CONFIG",
    "PrometheusServer",
    "QueryError",
    "Sample",
    "binary",
    "finite",
    "render_config",
]

SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"
SCRAPE_INTERVAL = 1.0  # seconds; the shipped 15 s would make the test wait a minute for two samples of a series
MISSING = (
    "Debian's prometheus package is not installed (no prometheus/promtool on PATH): `make prometheus` installs it "
    "as root with apt-get; skipped"
)
_SERVICE_DISCOVERY = "_sd_configs"
_OUTPUT_TAIL = 4000


def binary(name: str) -> str | None:
    """``prometheus`` or ``promtool`` from PATH (Debian installs both in /usr/bin), or None."""
    return shutil.which(name)


def render_config(shipped: Mapping[str, Any], targets: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The shipped configuration with every job's targets replaced by ``targets[job_name]`` (``host:port``).

    Everything else a query depends on is kept: job names, labels, ``relabel_configs`` and
    ``metric_relabel_configs``. Every job must have targets and every target list a job, so a job added to the
    shipped file (or a process kind the stack gained) fails here instead of going unscraped unnoticed.
    """
    rendered = copy.deepcopy(dict(shipped))
    jobs = {job["job_name"]: job for job in rendered["scrape_configs"]}
    if set(jobs) != set(targets):
        raise ValueError(f"the shipped jobs {sorted(jobs)} are not the test stack's {sorted(targets)}")
    for name, job in jobs.items():
        for key in [key for key in job if key.endswith(_SERVICE_DISCOVERY) or key == "static_configs"]:
            del job[key]
        for key in ("scrape_interval", "scrape_timeout"):
            job.pop(key, None)
        job["static_configs"] = [{"targets": list(targets[name])}]
    interval = f"{SCRAPE_INTERVAL:g}s"
    rendered["global"] = {**rendered.get("global", {}), "scrape_interval": interval, "evaluation_interval": interval}
    rendered["global"].pop("scrape_timeout", None)
    return rendered


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector."""

    labels: dict[str, str]
    value: float


class QueryError(Exception):
    """Prometheus refused a query (bad syntax, unknown function, ...)."""


class PrometheusServer:
    """``prometheus`` serving on 127.0.0.1:``port`` with a configuration and a TSDB in ``root``."""

    def __init__(self, executable: str, config: Mapping[str, Any], root: Path, port: int | None = None) -> None:
        self.executable = executable
        self.port = port if port is not None else free_port()
        self.root = root
        self.config_path = root / "prometheus.yml"
        self.log_path = root / "prometheus.log"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        # How many targets it scrapes: every job's static targets (the rendered configuration has no discovery).
        self.targets = sum(
            len(group["targets"]) for job in config["scrape_configs"] for group in job.get("static_configs", [])
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                self.executable,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address={self.address}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"prometheus on port {self.port} not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-_OUTPUT_TAIL:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- the HTTP API ----------------------------------------------------------------------------------------

    async def query(self, http: aiohttp.ClientSession, expr: str, at: float | None = None) -> list[Sample]:
        """``expr`` evaluated at ``at`` (Unix seconds; now when None) as an instant vector."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = await self._get(http, "/api/v1/query", params)
        if data["resultType"] != "vector":
            raise QueryError(f"{expr!r} is a {data['resultType']}, not an instant vector")
        return [Sample(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]

    async def label_values(self, http: aiohttp.ClientSession, label: str, match: str) -> list[str]:
        """What Grafana's ``label_values(match, label)`` lists."""
        values: list[str] = await self._get(http, f"/api/v1/label/{label}/values", {"match[]": match})
        return values

    async def _get(self, http: aiohttp.ClientSession, path: str, params: Mapping[str, str]) -> Any:
        async with http.get(self.url + path, params=params) as response:
            body = await response.json(content_type=None)
        if body.get("status") != "success":
            raise QueryError(f"{path} {dict(params)}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]


def finite(samples: Sequence[Sample]) -> list[Sample]:
    """The samples with a number (``histogram_quantile`` and ratios give NaN where nothing was counted)."""
    return [sample for sample in samples if math.isfinite(sample.value)]
