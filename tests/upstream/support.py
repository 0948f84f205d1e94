"""Drive one :class:`Http1Connection` by hand: a fake transport, responses fed whole or one byte at a time.

No socket: ``data_received`` / ``connection_lost`` are called as the event loop would, and the outcome is read
back through the connection's public interface (the waits return at once, since everything has arrived).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pytest

from shared.upstream.connection import CLOSED, Http1Connection, UpstreamFailure

Feed = Callable[[bytes], Iterator[bytes]]


def whole(raw: bytes) -> Iterator[bytes]:
    yield raw


def byte_by_byte(raw: bytes) -> Iterator[bytes]:
    for index in range(len(raw)):
        yield raw[index : index + 1]


def in_pieces(size: int) -> Feed:
    def feed(raw: bytes) -> Iterator[bytes]:
        for index in range(0, len(raw), size):
            yield raw[index : index + size]

    return feed


FEEDS = pytest.mark.parametrize("feed", [whole, byte_by_byte], ids=["whole", "byte-by-byte"])


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.written.extend(bytes(data) for data in list_of_data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


@dataclass
class Outcome:
    """What a caller of the connection sees of one exchange."""

    status: int | None
    headers: list[tuple[str, str]]
    body: bytes
    failure: str | None  # UpstreamFailure.kind
    reused: bool  # finish() kept the connection for another exchange
    closed: bool  # the transport was closed


def connect() -> tuple[Http1Connection, FakeTransport]:
    connection = Http1Connection(asyncio.get_running_loop())
    transport = FakeTransport()
    connection.connection_made(transport)
    return connection, transport


def deliver(connection: Http1Connection, raw: bytes, feed: Feed) -> None:
    """Hand ``raw`` to the connection as ``feed`` splits it; a closed transport delivers nothing more."""
    for piece in feed(raw):
        if connection.state == CLOSED:
            return
        connection.data_received(piece)


async def collect(connection: Http1Connection, transport: FakeTransport) -> Outcome:
    """The response as the pool would take it, once everything has arrived (nothing here waits)."""
    if not connection.responded():
        raise AssertionError("the response head has not arrived")
    status = None
    headers: list[tuple[str, str]] = []
    body = bytearray()
    failure = None
    try:
        head = await connection.wait_head(1.0)
        status, headers = head.status, head.headers
        body += connection.take_all()
        if not connection.body_done and connection.state != CLOSED:
            raise AssertionError("the body has not ended")
        body += await connection.read(1.0)
    except UpstreamFailure as exc:
        failure = exc.kind
    reused = failure is None and connection.finish()
    return Outcome(status, headers, bytes(body), failure, reused, transport.closed)


async def exchange(raw: bytes, feed: Feed, *, method: str = "GET", eof: bool = False) -> Outcome:
    """One request on a fresh connection answered with ``raw`` (then the upstream closes, when ``eof``)."""
    connection, transport = connect()
    connection.start(f"{method} / HTTP/1.1\r\nHost: upstream\r\n\r\n".encode(), None, expect_body=method != "HEAD")
    deliver(connection, raw, feed)
    if eof:
        connection.connection_lost(None)
    return await collect(connection, transport)
