"""Every way a response body is framed, fed whole and one byte at a time: the bytes delivered and reuse."""

from __future__ import annotations

import asyncio
from contextlib import suppress

import pytest

from shared.upstream import Upstream
from shared.upstream.connection import HIGH_WATER, LOW_WATER, UpstreamFailure
from tests.upstream.support import FEEDS, Feed, collect, connect, deliver, exchange

JSON = b'{"items":[1,2,3],"next":null}'
API_RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n"
    b"X-Request-ID: 0f8c2d1e\r\n"
    b"Cache-Control: max-age=5\r\n"
    b'ETag: "v7"\r\n'
    b"Vary: Accept-Encoding\r\n"
    b"X-Cache: HIT\r\n"
    b"\r\n%b"
) % (len(JSON), JSON)


@FEEDS
async def test_content_length(feed: Feed) -> None:
    outcome = await exchange(API_RESPONSE, feed)
    assert (outcome.status, outcome.body, outcome.reused) == (200, JSON, True)
    assert ("Content-Type", "application/json") in outcome.headers
    assert ("ETag", '"v7"') in outcome.headers
    assert len(outcome.headers) == 8


@FEEDS
async def test_header_values_lose_surrounding_whitespace_only(feed: Feed) -> None:
    raw = b"HTTP/1.1 200 OK\r\nX-A:  padded value \t\r\nX-B:\r\nContent-Length: 0\r\n\r\n"
    outcome = await exchange(raw, feed)
    assert outcome.headers == [("X-A", "padded value"), ("X-B", ""), ("Content-Length", "0")]
    assert outcome.reused


@FEEDS
async def test_status_line_without_reason(feed: Feed) -> None:
    connection, _ = connect()
    connection.start(b"GET / HTTP/1.1\r\n\r\n", None, expect_body=True)
    deliver(connection, b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", feed)
    head = await connection.wait_head(1.0)
    assert (head.status, head.reason, head.content_length) == (404, "", 0)


@FEEDS
async def test_chunked_with_extensions_and_trailers(feed: Feed) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b'6;q="a b"\r\n world\r\n'
        b"000\r\nX-Trailer: t\r\n\r\n"
    )
    outcome = await exchange(raw, feed)
    assert (outcome.status, outcome.body, outcome.reused) == (200, b"hello world", True)
    assert outcome.headers == [("Transfer-Encoding", "chunked")]  # the trailer is not a header


@FEEDS
async def test_transfer_encoding_name_is_case_insensitive(feed: Feed) -> None:
    outcome = await exchange(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", feed)
    assert (outcome.body, outcome.reused) == (b"ok", True)


@FEEDS
async def test_body_until_close(feed: Feed) -> None:
    outcome = await exchange(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nstreamed until close", feed, eof=True)
    assert (outcome.status, outcome.body, outcome.failure) == (200, b"streamed until close", None)
    assert not outcome.reused


@FEEDS
async def test_head_response_has_no_body_whatever_its_content_length(feed: Feed) -> None:
    outcome = await exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", feed, method="HEAD")
    assert (outcome.status, outcome.body, outcome.reused) == (200, b"", True)
    assert ("Content-Length", "42") in outcome.headers


@pytest.mark.parametrize(
    "framing", [b"Transfer-Encoding: chunked\r\n", b"Content-Type: text/plain\r\n"], ids=["chunked", "none"]
)
@FEEDS
async def test_head_response_with_other_framings(feed: Feed, framing: bytes) -> None:
    outcome = await exchange(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n", feed, method="HEAD")
    assert (outcome.status, outcome.body, outcome.reused) == (200, b"", True)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        b'HTTP/1.1 304 Not Modified\r\nETag: "v7"\r\nContent-Length: 120\r\n\r\n',
    ],
    ids=["204", "304"],
)
@FEEDS
async def test_no_body_statuses(feed: Feed, raw: bytes) -> None:
    outcome = await exchange(raw, feed)
    assert (outcome.body, outcome.reused) == (b"", True)


@FEEDS
async def test_interim_responses_are_skipped(feed: Feed) -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
    )
    outcome = await exchange(raw, feed)
    assert (outcome.status, outcome.body, outcome.reused) == (201, b"ok", True)
    assert outcome.headers == [("Content-Length", "2")]


@FEEDS
async def test_interim_responses_before_a_head_response(feed: Feed) -> None:
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
    outcome = await exchange(raw, feed, method="HEAD")
    assert (outcome.status, outcome.body, outcome.reused) == (200, b"", True)


@pytest.mark.parametrize(
    ("raw", "reused"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
    ],
    ids=["close", "close-token", "http/1.0", "http/1.0-keep-alive"],
)
@FEEDS
async def test_connection_reuse_follows_keep_alive(feed: Feed, raw: bytes, reused: bool) -> None:
    outcome = await exchange(raw, feed)
    assert (outcome.body, outcome.failure, outcome.reused, outcome.closed) == (b"ok", None, reused, not reused)


@FEEDS
async def test_head_response_with_connection_close_is_not_reused(feed: Feed) -> None:
    outcome = await exchange(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n", feed, method="HEAD")
    assert (outcome.status, outcome.reused) == (200, False)


@FEEDS
async def test_one_connection_carries_exchanges_one_after_another(feed: Feed) -> None:
    connection, transport = connect()
    answers = [
        (b"GET", API_RESPONSE, JSON),
        (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b""),  # llhttp must not wait for 5 bytes
        (b"GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", b"abc"),
        (b"GET", b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope", b"nope"),
    ]
    for method, raw, body in answers:
        connection.start(method + b" / HTTP/1.1\r\n\r\n", None, expect_body=method != b"HEAD")
        deliver(connection, raw, feed)
        outcome = await collect(connection, transport)
        assert (outcome.body, outcome.reused) == (body, True)
    assert len(transport.written) == len(answers)
    assert not transport.closed


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    "after", [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlater", b"X"], ids=["response", "byte"]
)
async def test_bytes_after_the_response_in_the_same_read_stop_reuse(method: str, after: bytes) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" + after
    outcome = await exchange(raw, lambda raw: iter([raw]), method=method)
    assert (outcome.status, outcome.body, outcome.failure) == (200, b"", None)
    assert (outcome.reused, outcome.closed) == (False, True)


async def test_empty_lines_after_a_response_in_the_same_read_are_skipped_as_llhttp_does() -> None:
    """RFC 9112 §2.2: CRLFs before a message are skipped, so they cannot shift where the next response starts."""
    outcome = await exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\r\n\r\n", lambda raw: iter([raw]))
    assert (outcome.body, outcome.failure, outcome.reused) == (b"ok", None, True)


async def test_bytes_after_the_response_in_a_later_read_stop_reuse() -> None:
    outcome = await exchange(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokX", lambda raw: iter([raw[:-1], b"X"]))
    assert (outcome.body, outcome.failure, outcome.reused) == (b"ok", None, False)


async def test_bytes_nobody_asked_for_close_an_idle_connection() -> None:
    connection, transport = connect()
    connection.start(b"GET / HTTP/1.1\r\n\r\n", None, expect_body=True)
    connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert (await collect(connection, transport)).reused
    connection.data_received(b"HTTP/1.1 200 OK\r\n")
    assert transport.closed
    assert not connection.finish()


async def test_back_pressure_pauses_reading_until_the_body_is_taken() -> None:
    connection, transport = connect()
    connection.start(b"GET / HTTP/1.1\r\n\r\n", None, expect_body=True)
    size = HIGH_WATER * 2
    connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
    assert (await connection.wait_head(1.0)).content_length == size
    piece = b"x" * (LOW_WATER // 2)
    sent = taken = 0
    while taken < size:
        while transport.reading and sent < size:  # the upstream writes while we read
            connection.data_received(piece)
            sent += len(piece)
        assert transport.reading is (sent == size)  # paused above HIGH_WATER, unless the body is all in
        assert sent - taken > HIGH_WATER or sent == size
        taken += len(await connection.read(1.0))
        assert transport.reading  # taking everything buffered resumes reading
    assert (sent, taken) == (size, size)
    assert await connection.read(1.0) == b""
    assert connection.finish()


async def test_a_body_cut_short_fails_as_a_reset() -> None:
    connection, _ = connect()
    connection.start(b"GET / HTTP/1.1\r\n\r\n", None, expect_body=True)
    connection.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
    assert (await connection.wait_head(1.0)).status == 200
    assert await connection.read(1.0) == b"half"
    connection.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(UpstreamFailure) as failure:
        await connection.read(1.0)
    assert failure.value.kind == "reset"
    assert not connection.finish()


async def test_upstream_pool_reuses_one_loopback_connection() -> None:
    """The same through a real socket: two requests, one TCP connection, the response sent in small writes."""
    connections = 0
    served = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            with suppress(asyncio.IncompleteReadError):
                while await reader.readuntil(b"\r\n\r\n"):
                    for index in range(0, len(API_RESPONSE), 7):
                        writer.write(API_RESPONSE[index : index + 7])
                        await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()
            served.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstream = Upstream(f"http://127.0.0.1:{port}")
    try:
        for _ in range(2):
            response = await upstream.send("GET", "/items", {})
            body = response.take_body() if response.complete else b""
            while chunk := await response.read():
                body += chunk
            response.release()
            assert (response.status, body) == (200, JSON)
        assert (connections, upstream.open_connections) == (1, 1)
    finally:
        await upstream.close()
        async with asyncio.timeout(5):
            await served.wait()  # the server saw the pool close its connection
        server.close()
        await server.wait_closed()
