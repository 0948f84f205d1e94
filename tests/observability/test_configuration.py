"""The shipped Prometheus configuration is valid for Prometheus's own checker, and the copy the tests run keeps
everything of it but where the targets are found.

``promtool`` (Debian's ``prometheus`` package) runs as a tool, not a server: no marker is needed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.observability.prometheus_server import MISSING, SCRAPE_INTERVAL, SHIPPED_CONFIG, binary, render_config

GRAFANA_DATASOURCES = SHIPPED_CONFIG.parents[1] / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
JOBS = {"gateway", "balancer", "apiserver", "prometheus"}
TARGETS = {
    "gateway": ["127.0.0.1:18080"],
    "balancer": ["127.0.0.1:13000"],
    "apiserver": ["127.0.0.1:13001", "127.0.0.1:13002"],
    "prometheus": ["127.0.0.1:19090"],
}


def shipped() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(SHIPPED_CONFIG.read_text())
    return config


def promtool_check(path: Path) -> str:
    promtool = binary("promtool")
    if promtool is None:
        pytest.skip(MISSING)
    result = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_promtool_accepts_the_shipped_configuration() -> None:
    assert "SUCCESS" in promtool_check(SHIPPED_CONFIG)


def test_promtool_accepts_the_rendered_copy(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(render_config(shipped(), TARGETS)))
    assert "SUCCESS" in promtool_check(path)


def test_the_shipped_configuration_scrapes_every_process_kind() -> None:
    assert {job["job_name"] for job in shipped()["scrape_configs"]} == JOBS


def test_grafana_rate_interval_follows_the_scrape_interval() -> None:
    """Grafana's $__rate_interval is at least four of the datasource's ``timeInterval``: that must be the scrape
    interval, or rate() panels get windows with too few samples (empty graphs) or needlessly smooth ones."""
    datasources = yaml.safe_load(GRAFANA_DATASOURCES.read_text())["datasources"]
    prometheus = [source for source in datasources if source["type"] == "prometheus"]
    assert prometheus, datasources
    for source in prometheus:
        assert source["jsonData"]["timeInterval"] == shipped()["global"]["scrape_interval"], source


def test_rendering_changes_only_targets_and_intervals() -> None:
    original = shipped()
    rendered = render_config(original, TARGETS)
    assert original == shipped(), "render_config changed its input"
    assert rendered["global"]["scrape_interval"] == f"{SCRAPE_INTERVAL:g}s"
    for before, after in zip(original["scrape_configs"], rendered["scrape_configs"], strict=True):
        assert after["static_configs"] == [{"targets": TARGETS[before["job_name"]]}]
        kept = {key: value for key, value in before.items() if not key.endswith("_sd_configs")}
        for key in ("static_configs", "scrape_interval", "scrape_timeout"):
            kept.pop(key, None)
        assert {key: value for key, value in after.items() if key != "static_configs"} == kept


def test_rendering_refuses_a_job_the_stack_does_not_run() -> None:
    with pytest.raises(ValueError, match="not the test stack's"):
        render_config(shipped(), {key: value for key, value in TARGETS.items() if key != "apiserver"})
