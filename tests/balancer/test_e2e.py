"""End to end: real apiserver and balancer processes over real sockets.

The fault scenarios from the issue: kill -9 of one of three apiservers under continuous GET load fails no
request, the restarted one is back in rotation within two health intervals of being ready, sequential traffic
splits evenly; a 10 MB response streams through without the balancer's memory growing by its size; SIGTERM
lets an in-flight request finish.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from stack.services.ports import free_port
from tests.support.polling import wait_until
from tests.support.processes import SuiteProcess, start_process, start_test_backend, suite_env

HEALTH_INTERVAL = 0.5
pytestmark = pytest.mark.e2e


@pytest.fixture
def processes() -> Iterator[list[SuiteProcess]]:
    started: list[SuiteProcess] = []
    yield started
    for process in started:
        process.stop()


def start_balancer(tmp_path: Path, urls: list[str], processes: list[SuiteProcess], **env: str) -> SuiteProcess:
    balancer_env = suite_env(
        BALANCER_BACKENDS=",".join(urls),
        BALANCER_HEALTH_INTERVAL=str(HEALTH_INTERVAL),
        BALANCER_HEALTH_TIMEOUT="0.4",
        INSTANCE_ID="balancer-test",
        **env,
    )
    balancer = start_process("balancer", free_port(), tmp_path, balancer_env)
    processes.append(balancer)
    return balancer


async def served_by(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url + "/api/v1/status") as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["instanceId"])


async def test_kill_restart_and_spread_over_three_apiservers(
    tmp_path: Path, database_url: str, redis_url: str, processes: list[SuiteProcess]
) -> None:
    apiservers = []
    for index in range(3):
        env = suite_env(DATABASE_URL=database_url, REDIS_URL=redis_url, INSTANCE_ID=f"api-{index}")
        apiservers.append(start_process("apiserver", free_port(), tmp_path, env))
        processes.append(apiservers[-1])
    balancer = start_balancer(tmp_path, [server.url for server in apiservers], processes)
    async with aiohttp.ClientSession() as session:
        seen = Counter([await served_by(session, balancer.url) for _ in range(300)])
        assert all(90 <= seen[f"api-{index}"] <= 110 for index in range(3)), seen

        failures: list[str] = []
        served: list[tuple[float, str]] = []
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                try:
                    served.append((time.monotonic(), await served_by(session, balancer.url)))
                except (AssertionError, aiohttp.ClientError) as exc:
                    failures.append(repr(exc))

        workers = [asyncio.create_task(load()) for _ in range(4)]

        async def flowing() -> bool:
            return len({name for _, name in served}) == 3

        await wait_until(flowing, within=5)
        victim = apiservers[0]
        await asyncio.to_thread(victim.kill)
        killed_at = time.monotonic()
        await asyncio.sleep(HEALTH_INTERVAL * 4)  # keep the load on while the balancer notices
        assert not failures, failures[:5]
        late = [name for at, name in served if at > killed_at + HEALTH_INTERVAL * 4 - 0.5 and name == "api-0"]
        assert not late

        await asyncio.to_thread(victim.start, wait=False)
        await asyncio.to_thread(victim.wait_healthy, 30.0, "/ready")
        ready_at = time.monotonic()
        deadline = ready_at + 2 * HEALTH_INTERVAL * 1.1 + 0.3
        back_at = None
        while time.monotonic() < deadline and back_at is None:
            back_at = next((at for at, name in served if at >= ready_at and name == "api-0"), None)
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.gather(*workers)
    assert back_at is not None, "the restarted apiserver got no traffic within two health intervals"
    assert not failures, failures[:5]


def rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_big_response_streams_without_memory_growth_and_sigterm_finishes_in_flight(
    tmp_path: Path, processes: list[SuiteProcess]
) -> None:
    backend = start_test_backend(tmp_path)
    processes.append(backend)
    balancer = start_balancer(tmp_path, [backend.url], processes)
    assert balancer.process is not None
    pid = balancer.process.pid
    async with aiohttp.ClientSession() as session:
        await served_ok(session, balancer.url + "/warm-up")
        before = rss_peak_kib(pid)
        for _ in range(2):
            async with session.get(balancer.url + "/big?mb=10") as response:
                assert response.status == 200
                received = 0
                async for chunk in response.content.iter_chunked(256 * 1024):
                    received += len(chunk)
                    await asyncio.sleep(0.001)  # a slower reader than the backend: back-pressure must hold
            assert received == 10 * 1024 * 1024
        growth = rss_peak_kib(pid) - before
        assert growth < 4 * 1024, f"balancer peak RSS grew by {growth} KiB for a 10 MB body"

        async with session.post(backend.url + "/_control?delay=1.0") as response:
            assert response.status == 200
        in_flight = asyncio.ensure_future(session.get(balancer.url + "/slow"))

        async def at_backend() -> bool:
            async with session.get(backend.url + "/_stats") as stats:
                return int((await stats.json())["requests"]) == 2

        await wait_until(at_backend, within=5)
        balancer.process.send_signal(signal.SIGTERM)
        response = await in_flight
        assert response.status == 200
        response.release()
        assert await asyncio.to_thread(balancer.process.wait, 10) == 0


async def served_ok(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url) as response:
        assert response.status == 200
