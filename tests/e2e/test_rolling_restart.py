"""A rolling restart of every apiserver under ``scalable-api up``, under continuous load, fails no request.

The test runs the real ``python -m stack.cli up`` (3 apiservers, the balancer, the gateway) against the suite's
PostgreSQL and Redis on free ports, keeps GET and POST load flowing through the balancer, asks for the restart
the way an operator does (``scalable-api restart-apiservers``, which signals the ``up`` through its pid file)
and checks what a client and an operator would notice: every response 2xx, every apiserver a new process, and
the whole roll done in bounded time.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from shared.identity import IDENTITY_HEADER, Identity, sign_identity
from shared.settings import DEV_INTERNAL_SECRET
from stack.services.ports import free_port
from tests.resilience.report import Sample, record
from tests.support.polling import wait_until
from tests.support.processes import ChildProcess, suite_env

pytestmark = pytest.mark.e2e

APISERVERS = 3
ROLL_DEADLINE = 60.0
USER = Identity(user_id=2, role="user", tier="free", method="jwt")


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports that were all free a moment ago."""
    for _ in range(100):
        first = free_port()
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first
    raise AssertionError(f"no {count} consecutive free ports")


@dataclass
class Stack:
    up: ChildProcess
    data_dir: Path
    apiserver_ports: list[int]
    balancer_port: int
    gateway_port: int

    @property
    def balancer_url(self) -> str:
        return f"http://127.0.0.1:{self.balancer_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def output(self) -> str:
        return self.up.output(tail=None)

    def apiserver_pids(self) -> dict[int, int]:
        """port -> pid of the apiserver children of this ``up`` (read from /proc)."""
        found: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.up.pid and b"apiserver" in argv and b"--port" in argv:
                found[int(argv[argv.index(b"--port") + 1])] = int(entry.name)
        return found

    def kill_apiservers(self) -> None:
        """SIGKILL the apiservers while ``up`` still owns them (once it is killed they are nobody's children)."""
        for pid in self.apiserver_pids().values():
            with suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def stack(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[Stack]:
    first = consecutive_free_ports(APISERVERS)
    balancer_port, gateway_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    env = suite_env(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        INTERNAL_SECRET=DEV_INTERNAL_SECRET,
        ENVIRONMENT="development",
        BALANCER_HEALTH_INTERVAL="0.5",
        BALANCER_HEALTH_TIMEOUT="0.4",
    )
    args = [
        *("--apiservers", str(APISERVERS), "--apiserver-port", str(first)),
        *("--balancer-port", str(balancer_port), "--gateway-port", str(gateway_port)),
        *("--data-dir", str(data_dir), "--resources", "20"),
    ]
    up = ChildProcess("stack.cli", ["up", *args], env, tmp_path / "up.log")
    up.spawn()
    running = Stack(up, data_dir, [first + index for index in range(APISERVERS)], balancer_port, gateway_port)
    try:
        yield running
    finally:
        up.stop(30, before_kill=running.kill_apiservers)


async def all_backends_healthy(session: aiohttp.ClientSession, stack: Stack) -> bool:
    try:
        async with session.get(stack.balancer_url + "/lb/status") as response:
            if response.status != 200:
                return False
            body = await response.json()
    except aiohttp.ClientError:
        return False
    healthy = {item["id"] for item in body["backends"] if item["in_rotation"]}
    return healthy == {f"127.0.0.1:{port}" for port in stack.apiserver_ports}


@dataclass
class Load:
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    served_by: Counter[str] = field(default_factory=Counter)


async def run_load(session: aiohttp.ClientSession, url: str, load: Load, stop: asyncio.Event, *, post: bool) -> None:
    """One client looping until ``stop``: GETs of single resources and lists, or POSTs (never retried)."""
    headers = {IDENTITY_HEADER: sign_identity(USER, DEV_INTERNAL_SECRET)}
    for number in itertools.count():
        if stop.is_set():
            return
        try:
            if post:
                body = {"name": f"rolled-{number}", "type": "widget", "data": {"n": number}}
                request = session.post(url + "/api/v1/resources", json=body, headers=headers)
            else:
                path = f"/api/v1/resources/{number % 20 + 1}" if number % 3 else "/api/v1/resources?limit=5"
                request = session.get(url + path)
            async with request as response:
                await response.read()
                load.statuses[response.status] += 1
                load.served_by[response.headers.get("X-Served-By", "?")] += 1
                if not 200 <= response.status < 300:
                    load.failures.append(f"{response.method} {response.url.path}: {response.status}")
        except aiohttp.ClientError as exc:
            load.failures.append(repr(exc))
        await asyncio.sleep(0.01)  # pacing: bounded load on a shared 2-core machine, not waiting for a state


async def test_rolling_restart_of_every_apiserver_under_load_fails_no_request(stack: Stack) -> None:
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def stack_ready() -> bool:
            assert stack.up.running(), stack.up.output()
            return "ready." in stack.output() and await all_backends_healthy(session, stack)

        await wait_until(stack_ready, within=90, interval=0.2)
        before = stack.apiserver_pids()
        assert sorted(before) == stack.apiserver_ports, before

        load, stop = Load(), asyncio.Event()
        workers = [asyncio.create_task(run_load(session, stack.balancer_url, load, stop, post=False)) for _ in range(3)]
        workers.append(asyncio.create_task(run_load(session, stack.balancer_url, load, stop, post=True)))
        try:

            async def flowing() -> bool:
                return sum(load.statuses.values()) >= 30

            await wait_until(flowing, within=10)
            started = time.monotonic()
            command = [sys.executable, "-m", "stack.cli", "restart-apiservers", "--data-dir", str(stack.data_dir)]
            result = await asyncio.to_thread(subprocess.run, command, capture_output=True, timeout=30)
            assert result.returncode == 0, result.stderr.decode()

            async def rolled() -> bool:
                output = stack.output()
                assert "rolling restart stopped" not in output, output[-4000:]
                return "rolling restart finished" in output

            await wait_until(rolled, within=ROLL_DEADLINE, interval=0.2)
            elapsed = time.monotonic() - started
            during = sum(load.statuses.values())

            async def all_back() -> bool:
                return await all_backends_healthy(session, stack)

            await wait_until(all_back, within=10)
        finally:
            stop.set()
            await asyncio.gather(*workers)

    assert not load.failures, (load.failures[:10], load.statuses)
    assert elapsed < ROLL_DEADLINE
    assert during >= 100, load.statuses
    assert load.statuses[201] > 0, load.statuses
    after = stack.apiserver_pids()
    assert sorted(after) == stack.apiserver_ports, after
    assert all(after[port] != before[port] for port in stack.apiserver_ports), (before, after)
    assert stack.output().count(" restarted (pid ") == APISERVERS


async def test_ready_means_every_apiserver_serves_from_the_first_request(stack: Stack) -> None:
    """The moment ``up`` prints "ready.", the first request through the gateway is a 200, sequential requests through
    the balancer reach every apiserver, and start-up logged no backend as down."""

    async def said_ready() -> bool:
        assert stack.up.running(), stack.up.output()
        return "ready." in stack.output()

    await wait_until(said_ready, within=60, interval=0.02)
    samples: list[Sample] = []
    async with aiohttp.ClientSession() as session:
        began = time.monotonic()
        async with session.get(stack.gateway_url + "/api/v1/resources/1") as first:
            first_body = await first.text()
            samples.append(Sample("first GET after ready", first.status, time.monotonic() - began, began))
        served = []
        for _ in range(APISERVERS):
            began = time.monotonic()
            async with session.get(stack.balancer_url + "/api/v1/status") as response:
                served.append((await response.json())["instanceId"])
                samples.append(Sample("sequential status", response.status, time.monotonic() - began, began))
    expected = sorted(f"apiserver-{port}" for port in stack.apiserver_ports)
    logged_down = stack.output().count("backend_down")
    record(
        "resilience",
        "startup_ready",
        title="`scalable-api up` with 3 apiservers: the moment it prints ready",
        guarantee='first request after "ready." is 200; 3 more via the balancer reach 3 apiservers; no backend_down',
        samples=samples,
        failed=sum(sample.status != 200 for sample in samples) + len(set(expected) - set(served)) + logged_down,
        extra={"served_by": served, "backend_down_lines": logged_down},
    )
    assert samples[0].status == 200, first_body
    assert sorted(served) == expected
    assert logged_down == 0, stack.output()
