"""Workers: ``WORKERS`` / ``--workers`` parsing, each worker's identity, ``up --workers``, and the metrics of
several workers merged as one tier (prometheus_client's multiprocess mode, in child interpreters: the mode is
chosen when prometheus_client is imported, and this interpreter must keep the normal one)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.runner import add_worker_options, process_environ
from shared.settings import MAX_WORKERS, CommonSettings, SettingsError, parse_workers
from stack.cli import build_parser
from stack.supervisor import StackOptions, plan_children

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("value", "workers"), [("1", 1), ("4", 4), (" 8 ", 8), (str(MAX_WORKERS), MAX_WORKERS)])
def test_a_number_of_workers_is_taken_as_is(value: str, workers: int) -> None:
    assert parse_workers(value) == workers


@pytest.mark.parametrize(("value", "cores", "workers"), [("auto", 6, 6), ("AUTO", 1, 1), ("auto", 1000, MAX_WORKERS)])
def test_auto_is_one_worker_per_available_core(value: str, cores: int, workers: int) -> None:
    assert parse_workers(value, cpus=lambda: cores) == workers


def test_auto_counts_this_machines_cores() -> None:
    assert 1 <= parse_workers("auto") <= MAX_WORKERS


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two", "", "257", "²", "0x2"])
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=f"expected a number of workers from 1 to {MAX_WORKERS}, or auto"):
        parse_workers(value)


def test_workers_default_to_one_and_no_parent() -> None:
    common = CommonSettings.from_env({}, service="gateway")
    assert (common.workers, common.worker_index, common.runtime_dir) == (1, None, None)
    assert not common.supervises_workers


def test_workers_from_the_environment_make_this_process_their_parent() -> None:
    common = CommonSettings.from_env({"WORKERS": "3", "INSTANCE_ID": "gateway-1"}, service="gateway")
    assert common.workers == 3
    assert common.supervises_workers
    assert common.instance_id == "gateway-1"


def test_a_bad_workers_value_stops_with_one_line_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^WORKERS='many': expected a number of workers from 1 to 256, or auto$"):
        CommonSettings.from_env({"WORKERS": "many"}, service="gateway")


def test_each_worker_names_itself_after_the_instance() -> None:
    environ = {"WORKERS": "2", "WORKER_INDEX": "1", "INSTANCE_ID": "balancer-1", "WORKER_RUNTIME_DIR": "/run/x"}
    common = CommonSettings.from_env(environ, service="balancer")
    assert common.instance_id == "balancer-1-w1"
    assert (common.worker_index, common.runtime_dir) == (1, "/run/x")
    assert not common.supervises_workers


def test_a_worker_index_beyond_the_workers_is_refused() -> None:
    with pytest.raises(SettingsError, match="WORKER_INDEX=2: must be at most 1"):
        CommonSettings.from_env({"WORKERS": "2", "WORKER_INDEX": "2"}, service="apiserver")


def _process_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scalable-api gateway")
    add_worker_options(parser)
    return parser


def test_the_workers_option_stands_in_for_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERS", "2")
    assert process_environ(_process_parser().parse_args(["--workers", "auto"]))["WORKERS"] == "auto"
    assert process_environ(_process_parser().parse_args([]))["WORKERS"] == "2"


def test_a_bad_workers_option_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        _process_parser().parse_args(["--workers", "0"])
    assert stopped.value.code == 2
    assert "argument --workers: expected a number of workers from 1 to 256, or auto" in capsys.readouterr().err


def test_up_keeps_one_worker_per_tier_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKERS", "8")  # an operator's shell does not multiply the local stack
    default = build_parser().parse_args(["up"])
    assert default.workers == "1"
    children = plan_children(StackOptions(apiservers=2, workers=default.workers), "postgresql://x/db", "redis://x")
    assert {child.env["WORKERS"] for child in children} == {"1"}
    asked = build_parser().parse_args(["up", "--workers", "auto"])
    children = plan_children(StackOptions(workers=asked.workers), "postgresql://x/db", "redis://x")
    assert {child.env["WORKERS"] for child in children} == {"auto"}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["up", "--workers", "none"])


# Builds the three apps (no I/O) in one worker's interpreter, counts one request and one dashboard figure of
# each kind, and prints what /metrics and the gateway's dashboard would say.
_ONE_WORKER = """
import json
from apiserver.app import create_app as apiserver
from apiserver.settings import ApiServerSettings
from balancer.app import create_app as balancer
from balancer.settings import BalancerSettings
from gateway.admin.routes import http_figures
from gateway.app import create_app as gateway
from gateway.keys import STATS
from gateway.settings import GatewaySettings
from shared.keys import METRICS

env = {"DATABASE_URL": "postgresql://a:b@127.0.0.1:9/db", "REDIS_URL": "redis://127.0.0.1:9/0", "LOG_LEVEL": "error"}
apps = [
    apiserver(ApiServerSettings.from_env(env)),
    balancer(BalancerSettings.from_env({**env, "BALANCER_BACKENDS": "http://127.0.0.1:9"})),
    gateway(GatewaySettings.from_env(env)),
]
for app in apps:
    app[METRICS].observe_request("GET", "/api/v1/resources", 200, 0.003)
stats = apps[2][STATS]
stats.response(200)
stats.decision("free", "allowed")
stats.login("succeeded")
print(json.dumps({
    "metrics": apps[0][METRICS].render().decode(),
    "dashboard": stats.snapshot(),
    "http": http_figures(apps[2][METRICS]),
}))
"""


def _run_worker(directory: Path) -> dict[str, object]:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", _ONE_WORKER], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    reply: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return reply


def test_every_worker_answers_for_the_whole_tier_in_multiprocess_mode(tmp_path: Path) -> None:
    _run_worker(tmp_path)
    second = _run_worker(tmp_path)  # another process: its answer includes the first one's figures
    text = str(second["metrics"])
    for service in ("apiserver", "balancer", "gateway"):
        line = f'http_requests_total{{method="GET",route="/api/v1/resources",service="{service}",status="200"}} 2.0'
        assert line in text
        assert f'http_request_duration_seconds_count{{route="/api/v1/resources",service="{service}"}} 2.0' in text
    assert 'ratelimit_decisions_total{decision="allowed",tier="free"} 2.0' in text
    # Every gauge says how workers merge: none falls back to one series per pid.
    assert 'pid="' not in text
    assert "gateway_in_flight_requests 0.0" in text
    assert 'lb_backend_up{backend="127.0.0.1:9"} 1.0' in text
    dashboard = second["dashboard"]
    assert isinstance(dashboard, dict)
    assert dashboard["requests"] == 2
    assert dashboard["responses_by_class"] == {"2xx": 2}
    assert dashboard["rate_limit_decisions"] == {"free": {"allowed": 2}}
    assert dashboard["logins"] == {"succeeded": 2}
    http = second["http"]
    assert isinstance(http, dict)
    assert http["responses_by_status"] == {"200": 6}  # the three services' requests, as the shared directory has them
