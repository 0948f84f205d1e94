"""One :class:`Upstream` per origin: a pool of keep-alive :class:`~shared.upstream.connection.Http1Connection` s.

LIFO, so the warmest socket is reused; idle ones older than ``idle_timeout`` are dropped before the upstream's
own keep-alive timer can race us. With ``max_age`` a connection is closed at the end of the first exchange after
it has lived that long (each one's lifetime drawn from 75-100 % of it, so they do not all reconnect at once):
behind a load-balanced address (a Kubernetes Service, kube-proxy choosing a pod per connection) the pool's
connections are re-spread over the pods every ``max_age``, and a pod added by a scale-out gets its share instead
of only the connections opened after it came.

``Upstream.send`` acquires a connection, writes the head (and the body, streamed from the client when not given)
and waits for the response head; a reused keep-alive socket the upstream had just closed is retried once on a
fresh connection, for idempotent requests without a streamed body.

In a sampled request (:mod:`shared.spans`) each ``send`` is a CLIENT span, from the request written to the
response released or closed, and the ``traceparent`` sent names it, so the next hop's server span is its child.
Unsampled, the only cost is the check.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import suppress

from multidict import CIMultiDict
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_RESEND_COUNT,
)
from opentelemetry.trace import Span
from yarl import URL

from shared import spans
from shared.upstream.connection import IDLE, Http1Connection, UpstreamFailure
from shared.upstream.parser import ResponseHead

__all__ = ["IDEMPOTENT_METHODS", "Upstream", "UpstreamResponse"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class UpstreamResponse:
    """A response whose head arrived; its body is read with :meth:`read` (or is already :attr:`complete`)."""

    __slots__ = ("_connection", "_span", "_timeout", "_upstream", "head")

    def __init__(
        self,
        upstream: Upstream,
        connection: Http1Connection,
        head: ResponseHead,
        timeout: float,
        span: Span | None = None,
    ) -> None:
        self._upstream = upstream
        self._connection: Http1Connection | None = connection
        self._timeout = timeout
        self._span = span  # a sampled request's CLIENT span, ended with the response
        self.head = head

    @property
    def status(self) -> int:
        return self.head.status

    @property
    def reason(self) -> str:
        return self.head.reason

    @property
    def headers(self) -> CIMultiDict[str]:
        return CIMultiDict(self.head.headers)

    @property
    def complete(self) -> bool:
        """The whole body is already buffered (it arrived with the head)."""
        return self._connection is None or self._connection.body_done

    def take_body(self) -> bytes:
        """The buffered body; call when :attr:`complete`."""
        return b"" if self._connection is None else self._connection.take_all()

    async def read(self) -> bytes:
        """The next piece of the body, ``b""`` at its end."""
        if self._connection is None:
            return b""
        return await self._connection.read(self._timeout)

    def release(self) -> None:
        """Give the connection back to the pool (it is closed instead unless the body was read cleanly)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._upstream._release(connection)
        self._end_span()

    def close(self) -> None:
        """Abandon the response and its connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._upstream._discard(connection)
        self._end_span()

    def _end_span(self) -> None:
        span, self._span = self._span, None
        if span is not None:
            span.end()


class Upstream:
    """One origin (``http://host:port`` or ``https://…``, optionally with a path prefix) and its connection pool."""

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 100,
        connect_timeout: float = 1.0,
        timeout: float = 10.0,
        idle_timeout: float = 15.0,
        max_age: float = 0.0,
    ) -> None:
        """``max_age`` 0: a connection is reused for as long as it stays fit."""
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self._host = url.host
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if url.scheme == "https" else None
        self._host_header = url.host if url.is_default_port() else f"{url.host}:{self._port}"
        self._prefix = url.raw_path.rstrip("/")
        self._idle: list[Http1Connection] = []
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._open = 0
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            self._discard(connection)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def send(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        *,
        body: bytes | None = None,
        stream: AsyncIterator[bytes] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - one timer per wait is cheaper than a timeout context
    ) -> UpstreamResponse:
        """Send one request and wait for the response head; raises :class:`UpstreamFailure`."""
        wait = self.timeout if timeout is None else timeout
        chunked = stream is not None and "Content-Length" not in headers
        # Unsampled (the common case): one ContextVar read, not even the URL is built.
        span = (
            None
            if spans.active() is None
            else spans.start_http_call(method, self.base_url + target, self._host, self._port)
        )
        if span is not None:
            headers = CIMultiDict(headers)
            headers["traceparent"] = spans.traceparent_of(span)
        head = self._request_head(method, target, headers, body, chunked)
        retry_stale = stream is None and method in IDEMPOTENT_METHODS
        try:
            while True:
                # An idle connection is taken without entering the _acquire coroutine (the common case).
                connection = None if self._closed else self._take_idle()
                if connection is not None:
                    reused = True
                else:
                    connection, reused = await self._acquire(wait)
                try:
                    connection.start(head, body, expect_body=method != "HEAD")
                    if stream is not None:
                        await _send_stream(connection, stream, chunked=chunked, within=wait)
                    response_head = await connection.wait_head(wait)
                except UpstreamFailure as failure:
                    self._discard(connection)
                    if retry_stale and reused and failure.kind == "reset" and not failure.bytes_received:
                        retry_stale = False
                        if span is not None:
                            span.set_attribute(HTTP_REQUEST_RESEND_COUNT, 1)
                        continue
                    raise
                except BaseException:
                    self._discard(connection)
                    raise
                if span is not None:
                    spans.client_answered(span, response_head.status)
                return UpstreamResponse(self, connection, response_head, wait, span)
        except BaseException as exc:
            if span is not None:
                spans.client_failed(span, exc.kind if isinstance(exc, UpstreamFailure) else type(exc).__qualname__)
            raise

    def _request_head(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None, chunked: bool
    ) -> bytes:
        reframe = body is not None or chunked
        lines = [f"{method} {self._prefix}{target} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        for name, value in headers.items():
            if "\n" in value or "\r" in value:
                raise ValueError(f"header {name!r} contains a line break")
            if reframe and name.lower() == "content-length":
                continue
            lines.append(f"{name}: {value}\r\n")
        if chunked:
            lines.append("Transfer-Encoding: chunked\r\n")
        elif body is not None and (body or method not in ("GET", "HEAD")):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("utf-8", "surrogateescape")

    async def _acquire(self, within: float) -> tuple[Http1Connection, bool]:
        deadline: float | None = None
        while True:
            if self._closed:
                raise UpstreamFailure("connect", f"upstream {self.base_url} is closed", request_sent=False)
            connection = self._take_idle()
            if connection is not None:
                return connection, True
            if self._open < self.max_connections:
                return await self._connect(), False
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + within
            await self._wait_for_slot(deadline)

    def _take_idle(self) -> Http1Connection | None:
        """The warmest idle connection still fit for reuse; the unfit ones met on the way are closed."""
        idle = self._idle
        if idle:
            now = time.monotonic()
            while idle:
                connection = idle.pop()
                fresh = now - connection.last_used < self.idle_timeout and now < connection.retire_at
                if connection.state == IDLE and fresh:
                    return connection
                self._discard(connection)
        return None

    async def _wait_for_slot(self, deadline: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            raise UpstreamFailure("timeout", "no free upstream connection", request_sent=False) from None
        finally:
            if not waiter.done():
                waiter.cancel()
            with suppress(ValueError):
                self._waiters.remove(waiter)

    async def _connect(self) -> Http1Connection:
        self._open += 1
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: Http1Connection(loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None,
                )
        except OSError as exc:  # includes TimeoutError and ssl.SSLError
            self._slot_freed()
            detail = str(exc) or type(exc).__name__
            raise UpstreamFailure("connect", detail, request_sent=False) from None
        except BaseException:
            self._slot_freed()
            raise
        if self.max_age > 0:
            connection.retire_at = time.monotonic() + self.max_age * (1.0 - random.random() / 4)
        return connection

    def _release(self, connection: Http1Connection) -> None:
        now = connection.last_used = time.monotonic()
        if not connection.finish():  # closed it
            self._slot_freed()
        elif self._closed or now >= connection.retire_at:
            self._discard(connection)
        else:
            self._idle.append(connection)
            self._wake_one()

    def _discard(self, connection: Http1Connection) -> None:
        connection.close()
        self._slot_freed()

    def _slot_freed(self) -> None:
        self._open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


async def _send_stream(
    connection: Http1Connection, stream: AsyncIterator[bytes], *, chunked: bool, within: float
) -> None:
    """Stream the request body; stop early (leaving the connection unusable) if the upstream already answered."""
    async for chunk in stream:
        if connection.responded():
            connection.reusable = False
            return
        if chunk:
            await connection.write_body(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk, within)
    if chunked and not connection.responded():
        await connection.write_body(b"0\r\n\r\n", within)
