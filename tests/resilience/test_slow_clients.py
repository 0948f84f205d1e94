"""Slow clients must not starve the others: a slowloris (headers trickled a byte at a time) and clients that read
big responses very slowly, each while normal clients measure their latency through the same gateway."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from database.accounts import DEV_USER
from tests.resilience.load import Call, LoadRun
from tests.resilience.report import Sample, percentile, record
from tests.support.servers import Server, reset_state, run_sync, server_root
from tests.support.stack import UNLIMITED, Stack, start_stack

pytestmark = pytest.mark.e2e
SUITE = "resilience"
SLOW_CLIENTS = 200
SLOW_READERS = 20
P99_LIMIT = 0.5  # seconds, for the normal clients while the slow ones are connected


@pytest.fixture(scope="module")
def cluster(postgres_server: Server, redis_server: Server) -> Iterator[Stack]:
    run_sync(reset_state(postgres_server.url, redis_server.url))
    with server_root("scalable-api-slow-") as tmp:
        running = start_stack(tmp, postgres_server.url, redis_server.url, apiservers=2, rate_limits=UNLIMITED)
        try:
            yield running
        finally:
            running.stop()


async def _normal_traffic(http: aiohttp.ClientSession, cluster: Stack, requests: int) -> list[Sample]:
    url = cluster.gateway + "/api/v1/status"
    load = LoadRun(http, lambda _: Call("status", "GET", url), concurrency=4, budget=requests, deadline=20)
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


def _figures(baseline: list[Sample], during: list[Sample]) -> dict[str, object]:
    return {
        "baseline_p99_ms": round((percentile((s.latency for s in baseline), 0.99) or 0) * 1000, 1),
        "during_p99_ms": round((percentile((s.latency for s in during), 0.99) or 0) * 1000, 1),
    }


async def test_slowloris_does_not_starve_other_clients(cluster: Stack, http: aiohttp.ClientSession) -> None:
    port = cluster.gateways[0].port
    baseline = await _normal_traffic(http, cluster, 200)
    closed_by_gateway = 0

    async def trickle() -> None:
        nonlocal closed_by_gateway
        _, writer = await _connect(port)
        writer.write(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            for index in range(10_000):
                writer.write(b"X-Slow-%d: a\r\n" % index)
                await writer.drain()
                await asyncio.sleep(0.5)  # the attack's pace
        except (ConnectionError, OSError):
            closed_by_gateway += 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(trickle()) for _ in range(SLOW_CLIENTS)]
    async with _background(tasks):
        await asyncio.sleep(1.0)  # let every slow connection open and start trickling
        during = await _normal_traffic(http, cluster, 400)
    failures = [s for s in during if s.status != 200]
    p99 = percentile((s.latency for s in during), 0.99)
    record(
        SUITE,
        "slowloris",
        title=f"Slowloris: {SLOW_CLIENTS} connections trickling headers",
        guarantee=f"normal clients: 0 failed, p99 < {P99_LIMIT * 1000:g} ms",
        samples=during,
        failed=len(failures),
        extra={**_figures(baseline, during), "slow_connections_closed_by_gateway": closed_by_gateway},
    )
    assert failures == [], failures[:3]
    assert p99 is not None
    assert p99 < P99_LIMIT, f"p99 {p99:.3f} s while the slowloris ran"


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
