"""Slow clients must not hold the gateway nor starve the others, each scenario while normal clients (127.0.0.1)
measure their latency through the same gateway:

    slowloris       one address (127.0.0.2) opens 20,000 connections in 8 s, each sending half a request head
                    and a header line every 0.5 s: the gateway holds at most MAX_CONNECTIONS_PER_ADDRESS (256) of
                    them and closes the rest on arrival, closes each held one at HEADER_TIMEOUT (2 s here), the
                    normal clients' p99 stays within 2x of their baseline, and its open files go back to baseline
    internal tiers  half a head sent straight to the balancer and to an apiserver is closed at their HEADER_TIMEOUT
    total cap       a gateway with MAX_CONNECTIONS=20 closes the 21st connection at once, whatever its address
    slow readers    clients reading big responses at ~10 KB/s

The attacker runs in a process of its own (:mod:`tests.resilience.slowloris`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest

from database.accounts import DEV_USER
from stack.services.ports import free_port
from tests.resilience.load import Call, LoadRun
from tests.resilience.report import Sample, percentile, record
from tests.resilience.slowloris import HALF_HEAD, Attack, Attacker
from tests.support.metrics import metric_sum
from tests.support.processes import SuiteProcess, start_process, suite_env
from tests.support.servers import Server, reset_state, run_sync, server_root
from tests.support.stack import UNLIMITED, Stack, start_stack

pytestmark = pytest.mark.e2e
SUITE = "resilience"
SLOW_READERS = 20
P99_LIMIT = 0.5  # seconds, for the normal clients while the slow ones are connected
HEADER_TIMEOUT = 2.0  # every tier's, here; short to keep the suite quick (the default is 10 s)
TIMEOUTS = {"HEADER_TIMEOUT": f"{HEADER_TIMEOUT:g}"}
PER_ADDRESS = 256  # MAX_CONNECTIONS_PER_ADDRESS's default, left as it is
SLOW_CONNECTIONS = 20_000
ATTACK_SECONDS = 8.0
CLOSE_SLACK = 1.0  # a slow connection is closed within HEADER_TIMEOUT + this
NORMAL_PACE = 0.01  # each normal client's pause between requests: a steady load, not a saturating one
TOTAL_CAP = 20


@pytest.fixture(scope="module")
def cluster(postgres_server: Server, redis_server: Server) -> Iterator[Stack]:
    run_sync(reset_state(postgres_server.url, redis_server.url))
    with server_root("scalable-api-slow-") as tmp:
        running = start_stack(
            tmp,
            postgres_server.url,
            redis_server.url,
            apiservers=2,
            rate_limits=UNLIMITED,
            balancer_env=TIMEOUTS,
            apiserver_env=TIMEOUTS,
            HEADER_TIMEOUT=TIMEOUTS["HEADER_TIMEOUT"],
        )
        try:
            yield running
        finally:
            running.stop()


def _normal_load(
    http: aiohttp.ClientSession, cluster: Stack, requests: int, *, pace: float = 0.0, seconds: float = 20.0
) -> LoadRun:
    url = cluster.gateway + "/api/v1/status"
    call = Call("status", "GET", url)
    return LoadRun(http, lambda _: call, concurrency=4, budget=requests, deadline=seconds, pace=pace)


async def _normal_traffic(
    http: aiohttp.ClientSession, cluster: Stack, requests: int, *, pace: float = 0.0, seconds: float = 20.0
) -> list[Sample]:
    load = _normal_load(http, cluster, requests, pace=pace, seconds=seconds)
    await load.run()
    return load.samples


async def _connect(
    port: int, *, receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock, limit=1024)


@asynccontextmanager
async def _background(coroutines: list[asyncio.Task[None]]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for task in coroutines:
            task.cancel()
        for task in coroutines:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task


def _p99_ms(samples: list[Sample]) -> float:
    return round((percentile((s.latency for s in samples), 0.99) or 0) * 1000, 1)


def _figures(baseline: list[Sample], during: list[Sample]) -> dict[str, object]:
    return {"baseline_p99_ms": _p99_ms(baseline), "during_p99_ms": _p99_ms(during)}


# -- the gateway as its operator sees it ----------------------------------------------------------------------------


def _open_files(process: SuiteProcess) -> int:
    return len(os.listdir(f"/proc/{process.pid}/fd"))


def _operator() -> aiohttp.ClientSession:
    """For /metrics: a connection per request, so that reading a figure leaves no connection behind."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


async def _watch(http: aiohttp.ClientSession, process: SuiteProcess, name: str, seen: list[float]) -> None:
    """Read a gauge every 0.25 s into ``seen`` until cancelled."""
    while True:
        seen.append(await metric_sum(http, process.url, name))
        await asyncio.sleep(0.25)


@asynccontextmanager
async def _open_connections(operator: aiohttp.ClientSession, gateway: SuiteProcess) -> AsyncIterator[list[float]]:
    """The gateway's open connections, read every 0.25 s while the block runs (in the baseline as under attack:
    rendering /metrics takes the gateway's loop for a moment, so both windows pay it alike)."""
    seen: list[float] = []
    async with _background([asyncio.create_task(_watch(operator, gateway, "http_connections_open", seen))]):
        yield seen


async def _files_back_to(process: SuiteProcess, baseline: int, within: float) -> tuple[int, float]:
    """Poll the process's open files until they are back to ``baseline``; (the count, seconds it took)."""
    started = time.monotonic()
    count = _open_files(process)
    while count > baseline and time.monotonic() - started < within:
        await asyncio.sleep(0.1)
        count = _open_files(process)
    return count, time.monotonic() - started


@dataclass
class Counted:
    """The gateway's connection counters over the attack."""

    refused: float = 0.0
    timed_out: float = 0.0

    @classmethod
    async def read(cls, http: aiohttp.ClientSession, gateway: SuiteProcess) -> Counted:
        refused = await metric_sum(http, gateway.url, "http_connections_refused_total", reason="per_address")
        return cls(refused, await metric_sum(http, gateway.url, "http_header_timeouts_total"))

    def __sub__(self, other: Counted) -> Counted:
        return Counted(self.refused - other.refused, self.timed_out - other.timed_out)


async def _under_attack(
    http: aiohttp.ClientSession, operator: aiohttp.ClientSession, cluster: Stack
) -> tuple[Attack, list[Sample], list[float]]:
    """The attack, while the normal clients go on as in their baseline; the gateway's open connections meanwhile."""
    gateway = cluster.gateways[0]
    attacker = await Attacker.start(
        gateway.port, connections=SLOW_CONNECTIONS, seconds=ATTACK_SECONDS, header_timeout=HEADER_TIMEOUT
    )
    load = _normal_load(http, cluster, 1_000_000, pace=NORMAL_PACE).start()
    async with _open_connections(operator, gateway) as seen:
        attack = await attacker.result(within=ATTACK_SECONDS + HEADER_TIMEOUT + 30)
    return attack, await load.stop(), seen


async def test_slowloris_from_one_address_is_capped_and_timed_out(cluster: Stack, http: aiohttp.ClientSession) -> None:
    gateway = cluster.gateways[0]
    await _normal_traffic(http, cluster, 50, pace=NORMAL_PACE)  # the pools are open before anything is measured
    async with _operator() as operator:
        # As long as the attack lasts: a shorter baseline would meet less of this machine's other work.
        async with _open_connections(operator, gateway) as seen_before:
            baseline = await _normal_traffic(http, cluster, 10**6, pace=NORMAL_PACE, seconds=ATTACK_SECONDS + 2)
        open_before = max(seen_before)  # the normal clients' connections, and the reading's own
        files_before = _open_files(gateway)
        before = await Counted.read(operator, gateway)
        attack, during, seen = await _under_attack(http, operator, cluster)
        files_after, settled_in = await _files_back_to(gateway, files_before, within=HEADER_TIMEOUT + CLOSE_SLACK)
        counted = await Counted.read(operator, gateway) - before
    failures = [s for s in during if s.status != 200]
    baseline_p99, during_p99 = _p99_ms(baseline), _p99_ms(during)
    record(
        SUITE,
        "slowloris",
        title=f"Slowloris: {SLOW_CONNECTIONS:,} connections in {ATTACK_SECONDS:g} s from one address, each trickling "
        f"half a head (HEADER_TIMEOUT {HEADER_TIMEOUT:g} s here): {attack.held:,} held in turn, the longest "
        f"{attack.longest:.2f} s; normal clients' baseline p99 {baseline_p99:g} ms",
        guarantee=f"≤ {PER_ADDRESS} held, the rest closed on arrival; each closed ≤ timeout + {CLOSE_SLACK:g} s; "
        "normal clients: 0 failed, p99 ≤ 2x baseline; gateway's open files back to baseline",
        samples=during,
        failed=len(failures),
        extra={
            "baseline_p99_ms": baseline_p99,
            "during_p99_ms": during_p99,
            "connections": len(attack.lifetimes),
            "opened_in_s": round(attack.seconds, 2),
            "connect_errors": len(attack.errors),
            "held": attack.held,
            "refused_on_arrival": int(counted.refused),
            "header_timeouts": int(counted.timed_out),
            "open_connections": {"before": open_before, "peak": max(seen, default=None)},
            "longest_connection_s": round(attack.longest, 3),
            "unclosed": attack.unclosed,
            "attacker_open_file_limit": attack.open_files,
            "gateway_open_files": {"before": files_before, "after": files_after, "settled_in_s": round(settled_in, 2)},
        },
    )
    assert failures == [], failures[:3]
    assert during_p99 <= 2 * baseline_p99, f"p99 {during_p99} ms under attack, {baseline_p99} ms before"
    assert (attack.errors, len(attack.lifetimes), attack.unclosed) == ([], SLOW_CONNECTIONS, 0)
    assert attack.longest <= HEADER_TIMEOUT + CLOSE_SLACK, f"a slow connection lived {attack.longest:.2f} s"
    # The gauge counts every client: the attacker's, and the normal clients' as before (one more if their pool grew).
    assert max(seen) <= PER_ADDRESS + open_before + 1, (max(seen), open_before)
    assert (counted.refused, counted.timed_out) == (SLOW_CONNECTIONS - attack.held, attack.held)
    assert files_after <= files_before, f"{files_after} open files after the attack, {files_before} before"


async def _closed_after(port: int, within: float) -> float:
    """Half a head to ``port``: seconds until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HALF_HEAD)
    started = time.monotonic()
    try:
        await asyncio.wait_for(reader.read(), within)
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    return time.monotonic() - started


async def test_balancer_and_apiserver_close_a_half_sent_head_at_their_timeout(
    cluster: Stack, http: aiohttp.ClientSession
) -> None:
    targets = {"balancer": cluster.balancer, "apiserver": cluster.apiservers[0]}
    before = [await metric_sum(http, process.url, "http_header_timeouts_total") for process in targets.values()]
    closes = await asyncio.gather(*(_closed_after(process.port, HEADER_TIMEOUT + 10) for process in targets.values()))
    after = [await metric_sum(http, process.url, "http_header_timeouts_total") for process in targets.values()]
    late = [seconds for seconds in closes if not HEADER_TIMEOUT * 0.9 <= seconds <= HEADER_TIMEOUT + CLOSE_SLACK]
    record(
        SUITE,
        "header_timeout_internal",
        title=f"Half a head sent straight to the balancer and an apiserver (HEADER_TIMEOUT {HEADER_TIMEOUT:g} s here): "
        f"closed after {closes[0]:.2f} s and {closes[1]:.2f} s",
        guarantee=f"each closed at its HEADER_TIMEOUT, ≤ {CLOSE_SLACK:g} s late, and counted",
        samples=[],
        failed=len(late),
        extra={f"{name}_closed_after_s": round(seconds, 2) for name, seconds in zip(targets, closes, strict=True)},
    )
    assert late == [], dict(zip(targets, closes, strict=True))
    assert [now - was for now, was in zip(after, before, strict=True)] == [1.0, 1.0]


def _capped_gateway(cluster: Stack) -> SuiteProcess:
    env = {
        "DATABASE_URL": cluster.database_url,
        "REDIS_URL": cluster.redis_url,
        "INSTANCE_ID": "gateway-capped",
        "BALANCER_URL": cluster.balancer.url,
        "APISERVER_URLS": "",
        "MAX_CONNECTIONS": str(TOTAL_CAP),
        **UNLIMITED,
    }
    return start_process("gateway", free_port(), cluster.tmp, suite_env(**env))


async def _probe(port: int) -> Sample:
    """A GET on a new connection from 127.0.0.1: its status, or 0 when the connection is closed unanswered."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        answer = b""
    finally:
        writer.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return Sample("probe", status, time.monotonic() - started, started)


async def _hold(port: int, source: str) -> asyncio.StreamWriter:
    """A keep-alive connection from ``source`` that has been answered once (so the gateway holds it), left idle."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 200")
    return writer


async def test_past_the_total_cap_a_new_connection_is_closed_at_once(
    cluster: Stack, http: aiohttp.ClientSession
) -> None:
    gateway = await asyncio.to_thread(_capped_gateway, cluster)
    try:
        held = [await _hold(gateway.port, f"127.0.0.{3 + index % 10}") for index in range(TOTAL_CAP)]
        full = [await _probe(gateway.port) for _ in range(3)]
        held.pop().close()
        freed = await _probe(gateway.port)
        for _ in range(20):  # the gateway sees the close a moment after the client
            if freed.status == 200:
                break
            await asyncio.sleep(0.05)
            freed = await _probe(gateway.port)
        for writer in held:
            writer.close()
        refused = await metric_sum(http, gateway.url, "http_connections_refused_total", reason="total")
    finally:
        await asyncio.to_thread(gateway.stop)
    failed = sum(sample.status != 0 for sample in full) + (freed.status != 200)
    record(
        SUITE,
        "connection_cap_total",
        title=f"A gateway holding MAX_CONNECTIONS ({TOTAL_CAP} here) connections from 10 addresses: one more arrives",
        guarantee="closed at once, unanswered; answered again as soon as one of the others closes",
        samples=[*full, freed],
        failed=failed,
        extra={"refused_counted": int(refused), "closed_within_ms": round(max(s.latency for s in full) * 1000, 1)},
    )
    assert [sample.status for sample in full] == [0, 0, 0]
    assert max(sample.latency for sample in full) < 0.5
    assert freed.status == 200
    assert refused >= len(full)


async def test_slow_readers_do_not_starve_other_clients(cluster: Stack, http: aiohttp.ClientSession) -> None:
    port = cluster.gateways[0].port
    auth = await cluster.bearer(http, DEV_USER.login)
    big = {"blob": "x" * 60_000}
    for index in range(40):
        body = {"name": f"big {index}", "type": "big", "data": big}
        async with http.post(cluster.gateway + "/api/v1/resources", json=body, headers=auth) as response:
            assert response.status == 201
    baseline = await _normal_traffic(http, cluster, 200)
    read_bytes = [0] * SLOW_READERS

    async def read_slowly(index: int) -> None:
        reader, writer = await _connect(port, receive_buffer=4096)
        writer.write(b"GET /api/v1/resources?type=big&limit=100 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            while chunk := await reader.read(512):
                read_bytes[index] += len(chunk)
                await asyncio.sleep(0.05)  # the attack's pace: ~10 KB/s
        finally:
            writer.close()

    tasks = [asyncio.create_task(read_slowly(index)) for index in range(SLOW_READERS)]
    started = time.monotonic()
    async with _background(tasks):
        await asyncio.sleep(1.0)  # every slow reader has its response in flight
        during = await _normal_traffic(http, cluster, 400)
    failures = [s for s in during if s.status != 200]
    p99 = percentile((s.latency for s in during), 0.99)
    record(
        SUITE,
        "slow_reader",
        title=f"{SLOW_READERS} clients reading a 2.4 MB response at ~10 KB/s",
        guarantee=f"normal clients: 0 failed, p99 < {P99_LIMIT * 1000:g} ms",
        samples=during,
        failed=len(failures),
        extra={
            **_figures(baseline, during),
            "slow_bytes_read": sum(read_bytes),
            "seconds": round(time.monotonic() - started, 2),
        },
    )
    assert failures == [], failures[:3]
    assert p99 is not None
    assert p99 < P99_LIMIT, f"p99 {p99:.3f} s while slow readers held responses"
