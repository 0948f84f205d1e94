"""docker-compose.dev.yml serves `make run`: PostgreSQL and Redis in containers on 127.0.0.1, the suite natively.

The commands are the README's: ``docker compose -f docker-compose.dev.yml up``, then ``make run`` with
``DATABASE_URL`` / ``REDIS_URL`` pointing at them. ``make -o .venv/.installed`` runs the recipe without reinstalling
the virtualenv, and the ports are free ones, so a developer's own ``make run`` on 8080 is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from database.accounts import DEV_ADMIN
from stack.services.ports import free_port
from tests.compose.project import ROOT, Project, Stacks, run_in

pytestmark = [pytest.mark.compose, pytest.mark.e2e, pytest.mark.timeout(900)]
DEV_SERVICES = Project("scalable-api-test-dev", files=("docker-compose.dev.yml",))
DATABASE_URL = "postgresql://app:app@127.0.0.1:5432/scalable_api"
REDIS_URL = "redis://127.0.0.1:6379/0"
READY_WITHIN = 120.0


@pytest.fixture
def dev_services(stacks: Stacks) -> Iterator[Project]:
    """The dev Compose project up (beside whatever stack runs: it publishes only 5432 and 6379 on loopback)."""
    DEV_SERVICES.down()
    stacks.run("dev services: up --wait", DEV_SERVICES, "up", "--wait")
    try:
        yield DEV_SERVICES
    finally:
        DEV_SERVICES.down()


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGINT to make and everything `scalable-api up` started (it stops its children cleanly), then SIGKILL."""
    for sig, grace in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue


def wait_for_ready(process: subprocess.Popen[bytes], log: Path) -> bool:
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline and process.poll() is None:
        if "ready." in log.read_text(errors="replace"):
            return True
        time.sleep(0.5)
    return False


def make_run(tmp_path: Path, gateway_port: int) -> tuple[subprocess.Popen[bytes], Path]:
    ports = f"--gateway-port {gateway_port} --balancer-port {free_port()} --apiserver-port {free_port()}"
    args = f"ARGS=--apiservers 1 {ports} --data-dir {tmp_path / 'data'}"
    env = {**os.environ, "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL, "LOG_LEVEL": "warning"}
    env = {key: value for key, value in env.items() if not key.startswith(("PYTEST_", "COV_"))}
    log = tmp_path / "make-run.log"
    command = ["make", "--no-print-directory", "-o", ".venv/.installed", "run", args]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, f"BIN={Path(sys.executable).parent}"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process, log


def test_dev_services_serve_make_run(
    dev_services: Project, stacks: Stacks, engine: docker.DockerClient, tmp_path: Path
) -> None:
    gateway_port = free_port()
    started = time.monotonic()
    process, log = make_run(tmp_path, gateway_port)
    try:
        ready = wait_for_ready(process, log)
        stacks.timings["make run on the dev services: ready."] = round(time.monotonic() - started, 1)
        assert ready, f"make run did not print ready.:\n{log.read_text(errors='replace')[-3000:]}"
        request = urllib.request.Request(
            f"http://127.0.0.1:{gateway_port}/api/v1/auth/login",
            data=json.dumps(DEV_ADMIN.login).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 - our own loopback URL
            assert response.status == 200
    finally:
        stop_group(process)
    output = log.read_text(errors="replace")
    assert "PostgreSQL             DATABASE_URL from the environment" in output
    assert "Redis                  REDIS_URL from the environment" in output
    (postgres,) = dev_services.containers(engine, "postgres")
    resources = run_in(postgres, "psql", "-U", "app", "-d", "scalable_api", "-tAc", "SELECT count(*) FROM resources")
    assert int(resources) >= 1000, "make run seeded the containers' PostgreSQL"
    (redis,) = dev_services.containers(engine, "redis")
    assert run_in(redis, "redis-cli", "--scan").split(), "make run's processes wrote to the containers' Redis"
