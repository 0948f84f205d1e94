"""Every tier with two workers on one port (``WORKERS=2``), observed as a client and an operator would.

The real gateway → balancer → apiserver chain runs with each process a worker parent. What is proved:

- requests through the chain succeed, and both workers of every tier answer on the tier's one port;
- ``/metrics`` from whichever worker answers shows the tier's summed ``http_requests_total``;
- a balancer drain through the control API applies to both balancer workers, and so does the enable;
- a worker killed with SIGKILL is started again by its parent while the port keeps serving;
- SIGTERM to a parent lets a slow request in flight finish, then every worker and the parent exit;
- a configuration error the workers find at start stops the parent (status 2) instead of restarting forever.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from stack.services.ports import free_port
from tests.support.polling import wait_until
from tests.support.processes import SuiteProcess, suite_env
from tests.support.stack import UNLIMITED, Stack, backend_id, operator_headers, running_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads worker pids from /proc (Linux)"),
]

TWO = {"WORKERS": "2"}
SLOW_MS = 1500


def worker_pids(parent: SuiteProcess) -> set[int]:
    """The live children of a worker parent (its workers), from /proc."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its closing parenthesis.
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if int(ppid) == parent.pid and state != "Z":
            pids.add(int(entry.name))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def fresh_get(url: str) -> tuple[int, Any]:
    """One GET on a connection of its own, so the kernel may hand it to either worker."""
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        http.get(url) as response,
    ):
        body = await response.json(content_type=None) if response.content_type.endswith("json") else None
        return response.status, body


async def instances_answering(url: str, pick: Callable[[Any], str], *, tries: int = 16) -> set[str]:
    replies = await asyncio.gather(*(fresh_get(url) for _ in range(tries)))
    assert all(status == 200 for status, _ in replies), replies
    return {pick(body) for _, body in replies}


def answered_by_all(url: str, pick: Callable[[Any], str], expected: set[str]) -> Callable[[], Awaitable[bool]]:
    seen: set[str] = set()

    async def condition() -> bool:
        seen.update(await instances_answering(url, pick))
        return expected <= seen

    return condition


async def metric_total(url: str, route: str) -> float:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
        http.get(url + "/metrics") as response,
    ):
        text = await response.text()
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith("http_requests_total{") and f'route="{route}"' in line
    )


async def test_every_tier_serves_with_two_workers_and_drains_reach_both(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    with running_stack(
        tmp_path,
        database_url,
        redis_url,
        apiservers=1,
        apiserver_env=TWO,
        balancer_env=TWO,
        rate_limits=UNLIMITED,
        **TWO,
    ) as stack:
        apiserver = stack.apiservers[0]
        assert len(worker_pids(apiserver)) == len(worker_pids(stack.balancer)) == 2

        # Through the chain: every request succeeds, and both apiserver workers serve.
        expected = {f"apiserver-{apiserver.port}-w0", f"apiserver-{apiserver.port}-w1"}
        await wait_until(answered_by_all(stack.gateway + "/api/v1/status", lambda b: b["instanceId"], expected))
        # Both workers of the gateway and of the balancer answer on their one port.
        for url, name in ((stack.gateway, "gateway-1"), (stack.balancer.url, "balancer-1")):
            await wait_until(answered_by_all(url + "/health", lambda b: b["instance"], {f"{name}-w0", f"{name}-w1"}))

        # The status route counted on both balancer workers: any worker's /metrics shows the sum.
        workers = await instances_answering(stack.balancer.url + "/lb/status", lambda b: str(b["worker"]), tries=20)
        assert workers == {"0", "1"}
        for _ in range(4):
            assert await metric_total(stack.balancer.url, "/lb/status") == 20

        await drain_reaches_both_balancer_workers(stack, apiserver)
        await killed_worker_is_restarted(stack)


async def drain_reaches_both_balancer_workers(stack: Stack, apiserver: SuiteProcess) -> None:
    async def every_worker_reports(draining: bool) -> bool:
        replies = await asyncio.gather(*(fresh_get(stack.balancer.url + "/lb/status") for _ in range(12)))
        seen = {}
        for _, body in replies:
            entry = next(item for item in body["backends"] if item["id"] == backend_id(apiserver))
            seen[body["worker"]] = entry["draining"]
        return seen == {0: draining, 1: draining}

    url = f"{stack.balancer.url}/lb/backends/{backend_id(apiserver)}"
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/drain?wait=5", headers=operator_headers()) as response:
            assert response.status == 200, await response.text()
            drained = await response.json()
        assert drained["drained"] is True
        assert drained["in_flight"] == 0
        assert drained["workers"] == {"count": 2, "answered": 2}
        await wait_until(lambda: every_worker_reports(True))
        async with http.post(url + "/enable", headers=operator_headers()) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["workers"] == {"count": 2, "answered": 2}
        await wait_until(lambda: every_worker_reports(False))


async def killed_worker_is_restarted(stack: Stack) -> None:
    before = worker_pids(stack.balancer)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    async def replaced() -> bool:
        now = worker_pids(stack.balancer)
        return len(now) == 2 and victim not in now

    await wait_until(replaced, within=15)
    # The port kept serving: the chain answers, and both balancer workers (the new one too) are in service.
    status, _ = await fresh_get(stack.gateway + "/api/v1/status")
    assert status == 200
    await wait_until(
        answered_by_all(stack.balancer.url + "/ready", lambda b: b["instance"], {"balancer-1-w0", "balancer-1-w1"})
    )
    assert "worker_exited" in stack.balancer.output(tail=None)


async def test_sigterm_lets_the_request_in_flight_finish_then_every_worker_exits(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    slow = {"EXTERNAL_LATENCY_MS": str(SLOW_MS), "EXTERNAL_FAILURE_RATE": "0"}
    with running_stack(
        tmp_path, database_url, redis_url, apiservers=1, apiserver_env=slow, rate_limits=UNLIMITED, **TWO
    ) as stack:
        gateway = stack.gateways[0]
        workers = worker_pids(gateway)
        assert len(workers) == 2
        in_flight = asyncio.create_task(fresh_get(stack.gateway + "/api/v1/external"))

        async def request_in_flight() -> bool:
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http,
                http.get(stack.gateway + "/metrics") as response,
            ):
                text = await response.text()
            return "gateway_in_flight_requests 1.0" in text

        await wait_until(request_in_flight)
        assert gateway.process is not None
        gateway.process.send_signal(signal.SIGTERM)
        status, body = await in_flight
        assert status == 200, body
        assert "quote" in body["data"]

        async def parent_exited() -> bool:
            return gateway.process is not None and gateway.process.poll() is not None

        await wait_until(parent_exited, within=20)
        assert gateway.process.returncode == 0, gateway.output()
        assert not any(alive(pid) for pid in workers)


async def test_a_configuration_error_found_by_the_workers_stops_the_parent(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """Production refuses the seeded development logins when the workers start: restarting cannot help, so the
    parent stops with status 2 and the one line naming the problem, as a single process would."""
    production = {"ENVIRONMENT": "production", "INTERNAL_SECRET": "i" * 40, "JWT_SECRET": "j" * 64}
    env = suite_env(DATABASE_URL=database_url, REDIS_URL=redis_url, **production, **TWO)
    gateway = SuiteProcess("gateway", free_port(), env, tmp_path / "gateway.log")
    gateway.spawn()
    try:

        async def exited() -> bool:
            return gateway.process is not None and gateway.process.poll() is not None

        await wait_until(exited, within=30)
        assert gateway.process is not None
        assert gateway.process.returncode == 2, gateway.output()
        assert "still has its development password" in gateway.output()
    finally:
        gateway.stop()
