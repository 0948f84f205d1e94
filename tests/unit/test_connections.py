"""The request-head deadline and the connection caps (shared.connections): the bookkeeping on its own, then an
in-process aiohttp server behind the guard, driven over real sockets from several loopback addresses."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from shared.connections import (
    AUTO_CEILING,
    AddressKeys,
    ConnectionCounts,
    ConnectionGuard,
    RateLimitedWarning,
    check_aiohttp,
    connection_cap,
)
from shared.metrics import Metrics
from shared.settings import CommonSettings, ConnectionLimits, SettingsError
from tests.support.clock import ManualClock
from tests.support.polling import wait_until

TIMEOUT = 0.3  # the head deadline of the in-process server; every bound below is a multiple of it
GET = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
HALF_HEAD = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n"


# -- bookkeeping ---------------------------------------------------------------------------------------------------


def test_counts_refuse_past_each_cap_and_free_a_slot_on_release() -> None:
    counts = ConnectionCounts(max_total=4, max_per_address=2)
    assert [counts.admit("198.51.100.1") for _ in range(3)] == [None, None, "per_address"]
    assert counts.admit("198.51.100.2") is None
    assert counts.admit(None) is None  # not counted per address (a trusted proxy), but in the total
    assert counts.admit("198.51.100.3") == "total"
    assert (counts.total, counts.held_by("198.51.100.1"), counts.addresses) == (4, 2, 2)
    counts.release("198.51.100.1")
    assert counts.admit("198.51.100.1") is None
    for key in ("198.51.100.1", "198.51.100.1", "198.51.100.2", None):
        counts.release(key)
    assert (counts.total, counts.addresses) == (0, 0)  # no entry outlives its last connection


def test_counts_without_caps_admit_everything() -> None:
    counts = ConnectionCounts()
    assert all(counts.admit("198.51.100.1") is None for _ in range(10_000))


def test_address_keys_group_ipv6_by_64_and_skip_trusted_proxies_and_unix_peers() -> None:
    keys = AddressKeys([ipaddress.ip_network("10.0.0.0/8")])
    assert keys(("203.0.113.7", 51000)) == "203.0.113.7"
    assert keys(("2001:db8:1:2::1", 443, 0, 0)) == keys(("2001:db8:1:2:ffff::9", 1, 0, 0)) == "2001:db8:1:2::/64"
    assert keys(("2001:db8:1:3::1", 443, 0, 0)) == "2001:db8:1:3::/64"
    assert keys(("::ffff:203.0.113.7", 1, 0, 0)) == "203.0.113.7"
    assert keys(("fe80::1%eth0", 1, 0, 2)) == "fe80::/64"
    assert keys(("10.1.2.3", 1)) is None  # a trusted proxy carries many clients
    assert keys("/run/balancer-w1.sock") is None
    assert keys(None) is None
    assert keys(("not an address", 1)) is None


def test_auto_total_cap_is_half_the_open_file_limit_up_to_the_ceiling() -> None:
    auto = ConnectionLimits(max_connections=None)
    assert connection_cap(auto, 1024) == 512
    assert connection_cap(auto, 20_000) == AUTO_CEILING == 10_000
    assert connection_cap(auto, 1_048_576) == AUTO_CEILING
    assert connection_cap(ConnectionLimits(max_connections=300), 1024) == 300
    assert connection_cap(ConnectionLimits(max_connections=0), 1024) == 0  # no cap


def test_refusal_warnings_are_one_line_a_second_with_a_count() -> None:
    clock = ManualClock()
    lines: list[tuple[str, dict[str, object]]] = []
    warn = RateLimitedWarning(
        "connection_refused", clock=clock, emit=lambda event, **fields: lines.append((event, fields))
    )
    assert warn(peer="198.51.100.1", reason="per_address")
    assert not any(warn(peer="198.51.100.1", reason="per_address") for _ in range(99))
    clock.advance(1.0)
    assert warn(peer="198.51.100.2", reason="total")
    assert lines == [
        ("connection_refused", {"peer": "198.51.100.1", "reason": "per_address", "suppressed_since_last": 0}),
        ("connection_refused", {"peer": "198.51.100.2", "reason": "total", "suppressed_since_last": 99}),
    ]


def test_this_aiohttp_has_what_the_head_deadline_reads() -> None:
    check_aiohttp()


# -- settings ------------------------------------------------------------------------------------------------------


def test_only_the_gateway_caps_connections_by_default() -> None:
    gateway = CommonSettings.from_env({}, service="gateway").connections
    assert gateway == ConnectionLimits(header_timeout=10.0, max_connections=None, max_connections_per_address=256)
    for service in ("balancer", "apiserver"):
        assert CommonSettings.from_env({}, service=service).connections == ConnectionLimits(10.0, 0, 0)


def test_connection_settings_are_read_from_the_environment() -> None:
    environ = {"HEADER_TIMEOUT": "2.5", "MAX_CONNECTIONS": "5000", "MAX_CONNECTIONS_PER_ADDRESS": "0"}
    assert CommonSettings.from_env(environ, service="gateway").connections == ConnectionLimits(2.5, 5000, 0)
    auto = CommonSettings.from_env({"MAX_CONNECTIONS": "AUTO"}, service="balancer").connections
    assert auto.max_connections is None


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("HEADER_TIMEOUT", "0", "HEADER_TIMEOUT=0.0: must be at least 0.1"),
        ("HEADER_TIMEOUT", "soon", "HEADER_TIMEOUT='soon': expected a number"),
        ("MAX_CONNECTIONS", "-1", "MAX_CONNECTIONS='-1': expected a number of connections \\(0: no cap\\) or auto"),
        ("MAX_CONNECTIONS", "many", "MAX_CONNECTIONS='many': expected a number of connections"),
        ("MAX_CONNECTIONS", "2000000", "MAX_CONNECTIONS=2000000: must be at most 1000000"),
        ("MAX_CONNECTIONS_PER_ADDRESS", "-5", "MAX_CONNECTIONS_PER_ADDRESS=-5: must be at least 0"),
        ("MAX_CONNECTIONS_PER_ADDRESS", "1.5", "MAX_CONNECTIONS_PER_ADDRESS='1.5': expected an integer"),
    ],
)
def test_bad_connection_settings_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        CommonSettings.from_env({name: value}, service="gateway")


# -- an in-process server behind the guard, over real sockets ------------------------------------------------------


@dataclass
class Guarded:
    guard: ConnectionGuard
    metrics: Metrics
    port: int

    def figure(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"service": "test", **labels})
        return value or 0.0


async def _status(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _upload(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


@contextlib.asynccontextmanager
async def guarded(limits: ConnectionLimits, *, max_total: int = 0, trusted: str = "") -> AsyncIterator[Guarded]:
    app = web.Application()
    app.router.add_get("/status", _status)
    app.router.add_post("/upload", _upload)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=75.0)
    await runner.setup()
    assert runner.server is not None
    metrics = Metrics("test")
    networks = [ipaddress.ip_network(trusted)] if trusted else []
    guard = ConnectionGuard(
        runner.server, limits, max_total=max_total, trusted=networks, metrics=metrics, service="test"
    )
    listener = await guard.listen("127.0.0.1", 0)
    try:
        yield Guarded(guard, metrics, listener.sockets[0].getsockname()[1])
    finally:
        listener.close()
        await runner.cleanup()


async def _connect(port: int, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _closed_after(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the server closes the connection (EOF or reset); fails the test past ``within``."""
    started = time.monotonic()
    try:
        while await asyncio.wait_for(reader.read(4096), within):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return time.monotonic() - started


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1]
    )
    return head.split(b" ", 2)[1] + b" " + await reader.readexactly(length)


async def test_a_half_sent_head_is_closed_at_the_deadline() -> None:
    async with guarded(ConnectionLimits(header_timeout=TIMEOUT)) as server:
        reader, writer = await _connect(server.port)
        writer.write(HALF_HEAD)
        assert TIMEOUT * 0.9 <= await _closed_after(reader, TIMEOUT * 5) <= TIMEOUT + 0.5
        assert server.figure("http_header_timeouts_total") == 1
        await wait_until(lambda: _is(server.guard.counts.total, 0), within=2)
        writer.close()


async def test_a_head_trickled_byte_by_byte_is_closed_though_bytes_keep_coming() -> None:
    async with guarded(ConnectionLimits(header_timeout=TIMEOUT)) as server:
        reader, writer = await _connect(server.port)
        writer.write(b"GET /status HTTP/1.1\r\n")

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in itertools.cycle(b"X-Slow: 1\r\n"):
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.02)  # the attack's pace: the deadline is for the whole head, not per byte

        task = asyncio.create_task(trickle())
        try:
            assert await _closed_after(reader, TIMEOUT * 5) <= TIMEOUT + 0.5
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert server.figure("http_header_timeouts_total") == 1
        writer.close()


async def test_a_connection_that_sends_nothing_is_closed_at_the_deadline() -> None:
    async with guarded(ConnectionLimits(header_timeout=TIMEOUT)) as server:
        reader, writer = await _connect(server.port)
        assert TIMEOUT * 0.9 <= await _closed_after(reader, TIMEOUT * 5) <= TIMEOUT + 0.5
        writer.close()


async def test_keep_alive_idles_past_the_deadline_but_its_next_head_is_timed() -> None:
    async with guarded(ConnectionLimits(header_timeout=TIMEOUT)) as server:
        reader, writer = await _connect(server.port)
        writer.write(GET)
        assert await _answer(reader) == b"200 ok"
        await asyncio.sleep(TIMEOUT * 2)  # idle between requests: a pool's connection, kept (keep-alive's job)
        writer.write(GET)
        assert await _answer(reader) == b"200 ok"
        writer.write(HALF_HEAD)  # the third request's head never completes
        assert TIMEOUT * 0.9 <= await _closed_after(reader, TIMEOUT * 5) <= TIMEOUT + 0.5
        writer.close()


async def test_a_slow_body_after_a_whole_head_is_not_the_head_deadlines_business() -> None:
    async with guarded(ConnectionLimits(header_timeout=TIMEOUT)) as server:
        reader, writer = await _connect(server.port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 8\r\n\r\n")
        for byte in b"12345678":
            writer.write(bytes([byte]))
            await asyncio.sleep(TIMEOUT / 4)  # 2 x the deadline in all
        assert await _answer(reader) == b"200 8"
        assert server.figure("http_header_timeouts_total") == 0
        writer.close()


async def test_connections_past_the_per_address_cap_are_closed_at_once() -> None:
    async with guarded(ConnectionLimits(header_timeout=30, max_connections_per_address=2)) as server:
        held = [await _connect(server.port, "127.0.0.2") for _ in range(2)]
        await wait_until(lambda: _is(server.guard.counts.held_by("127.0.0.2"), 2), within=2)
        reader, writer = await _connect(server.port, "127.0.0.2")
        assert await _closed_after(reader, 1.0) < 0.5
        assert server.figure("http_connections_refused_total", reason="per_address") == 1
        other, other_writer = await _connect(server.port, "127.0.0.3")  # another client is not affected
        other_writer.write(GET)
        assert await _answer(other) == b"200 ok"
        held[0][1].close()  # one of the first two goes: its slot is free again
        await wait_until(lambda: _is(server.guard.counts.held_by("127.0.0.2"), 1), within=2)
        again, again_writer = await _connect(server.port, "127.0.0.2")
        again_writer.write(GET)
        assert await _answer(again) == b"200 ok"
        for stream in (writer, other_writer, again_writer, held[1][1]):
            stream.close()
    assert server.guard.counts.total == 0


async def test_connections_past_the_total_cap_are_closed_at_once() -> None:
    async with guarded(ConnectionLimits(header_timeout=30), max_total=3) as server:
        held = [await _connect(server.port, f"127.0.0.{index}") for index in (2, 3, 4)]
        await wait_until(lambda: _is(server.guard.counts.total, 3), within=2)
        reader, writer = await _connect(server.port, "127.0.0.5")
        assert await _closed_after(reader, 1.0) < 0.5
        assert server.figure("http_connections_refused_total", reason="total") == 1
        assert server.figure("http_connections_open") == 3
        for _, stream in [*held, (reader, writer)]:
            stream.close()
        await wait_until(lambda: _is(server.guard.counts.total, 0), within=2)
        assert server.figure("http_connections_open") == 0


async def test_a_trusted_proxy_is_not_capped_per_address() -> None:
    limits = ConnectionLimits(header_timeout=30, max_connections_per_address=1)
    async with guarded(limits, trusted="127.0.0.2/32") as server:
        streams = [await _connect(server.port, "127.0.0.2") for _ in range(3)]
        for reader, writer in streams:
            writer.write(GET)
            assert await _answer(reader) == b"200 ok"
        assert server.figure("http_connections_refused_total", reason="per_address") == 0
        for _, writer in streams:
            writer.close()


async def _is(value: int, expected: int) -> bool:
    return value == expected
