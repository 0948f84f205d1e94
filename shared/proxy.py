"""The streaming HTTP/1.1 reverse-proxy core both hops use (gateway → balancer, balancer → apiserver).

One :class:`Upstream` per origin keeps a pool of keep-alive :class:`~shared.http1.Http1Connection` s (LIFO, so the
warmest socket is reused; idle ones older than ``idle_timeout`` are dropped before the upstream's own keep-alive
timer can race us). A proxied request goes::

    outgoing_headers()            client headers without hop-by-hop, Connection-named and ``drop`` ones;
                                  X-Forwarded-*, X-Request-ID and traceparent set
    Upstream.send()               acquire → write head (+ body, streamed from the client when not given)
        │                             → wait for the response head
        ├─ fails before the head ──► UpstreamFailure (nothing written to the client: retry, or map to 502/503/504)
        │                             a reused keep-alive socket the upstream had just closed is retried once on a
        │                             fresh connection, for idempotent requests without a streamed body
        ▼
    relay_response()              head minus hop-by-hop (+ response_headers) to the client, then the body:
        ├─ body already complete ─► one write (the common case for API responses)
        └─ streamed ──────────────► chunk by chunk with back-pressure both ways (never the whole body in memory);
                                      an upstream failure now aborts the client connection and raises
                                      UpstreamFailure(response_started=True) carrying the aborted ``response``,
                                      which the handler returns as is (a second response is impossible).

Callers that must inspect the status before committing (the balancer retries 502/503 elsewhere) use
``Upstream.send`` and ``relay_response`` directly; ``proxy_request`` is the two in one.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import suppress

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from shared.http1 import IDLE, Http1Connection, ResponseHead, UpstreamFailure
from shared.keys import REQUEST_ID, TRACEPARENT

__all__ = [
    "HOP_BY_HOP",
    "IDEMPOTENT_METHODS",
    "Upstream",
    "UpstreamFailure",
    "UpstreamResponse",
    "outgoing_headers",
    "proxy_request",
    "relay_response",
]

HOP_BY_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Host is rewritten to the upstream's; Expect was already answered by our own server (100-continue).
_NOT_FORWARDED = HOP_BY_HOP | {"host", "expect"}
STREAM_CHUNK = 64 * 1024


def _excluded(connection: str | None, drop: Iterable[str]) -> frozenset[str]:
    extra = {name.lower() for name in drop}
    if connection:
        extra.update(token.strip().lower() for token in connection.split(","))
    return _NOT_FORWARDED | extra if extra else _NOT_FORWARDED


def outgoing_headers(request: web.Request, *, forwarded_for: str, drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """The headers to send upstream for ``request`` (see the module docstring)."""
    incoming = request.headers
    excluded = _excluded(incoming.get("Connection"), drop)
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        if name.lower() not in excluded:
            headers.add(name, value)
    headers["X-Forwarded-For"] = forwarded_for
    if "X-Forwarded-Proto" not in headers:
        headers["X-Forwarded-Proto"] = request.scheme
    if "X-Forwarded-Host" not in headers and request.host:
        headers["X-Forwarded-Host"] = request.host
    request_id = request.get(REQUEST_ID)
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    traceparent = request.get(TRACEPARENT)
    if traceparent is not None:
        headers["traceparent"] = traceparent
    return headers


class UpstreamResponse:
    """A response whose head arrived; its body is read with :meth:`read` (or is already :attr:`complete`)."""

    __slots__ = ("_connection", "_timeout", "_upstream", "head")

    def __init__(self, upstream: Upstream, connection: Http1Connection, head: ResponseHead, timeout: float) -> None:
        self._upstream = upstream
        self._connection: Http1Connection | None = connection
        self._timeout = timeout
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

    def close(self) -> None:
        """Abandon the response and its connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            self._upstream._discard(connection)


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
    ) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.idle_timeout = idle_timeout
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
        head = self._request_head(method, target, headers, body, chunked)
        retry_stale = stream is None and method in IDEMPOTENT_METHODS
        while True:
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
                    continue
                raise
            except BaseException:
                self._discard(connection)
                raise
            return UpstreamResponse(self, connection, response_head, wait)

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
            idle = self._idle
            if idle:
                now = time.monotonic()
                while idle:
                    connection = idle.pop()
                    if connection.state == IDLE and now - connection.last_used < self.idle_timeout:
                        return connection, True
                    self._discard(connection)
            if self._open < self.max_connections:
                return await self._connect(), False
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + within
            await self._wait_for_slot(deadline)

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
        return connection

    def _release(self, connection: Http1Connection) -> None:
        connection.last_used = time.monotonic()
        if connection.finish() and not self._closed:
            self._idle.append(connection)
            self._wake_one()
        else:
            self._slot_freed()

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


async def client_body(request: web.Request) -> AsyncIterator[bytes]:
    """The client's request body as it arrives."""
    content = request.content
    while True:
        chunk = await content.readany()
        if not chunk:
            return
        yield chunk


def request_target(request: web.Request) -> str:
    """The request target exactly as the client sent it (no re-encoding of ``%2F`` and friends)."""
    target = request.raw_path
    return target if target.startswith("/") else request.rel_url.raw_path_qs


def _client_headers(response: UpstreamResponse, extra: Mapping[str, str] | None) -> CIMultiDict[str]:
    raw = response.head.headers
    excluded = HOP_BY_HOP
    for name, value in raw:
        if name.lower() == "connection":
            excluded = excluded | {token.strip().lower() for token in value.split(",")}
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in raw:
        if name.lower() not in excluded:
            headers.add(name, value)
    if extra:
        headers.update(extra)
    return headers


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


async def relay_response(
    request: web.Request, response: UpstreamResponse, *, response_headers: Mapping[str, str] | None = None
) -> web.StreamResponse:
    """Send ``response`` to the client (see the module docstring for the failure rules)."""
    headers = _client_headers(response, response_headers)
    if response.complete:
        # Unprepared, so aiohttp sends head and body in one write (and middlewares may still add headers).
        body = response.take_body()
        response.release()
        return web.Response(body=body, status=response.status, reason=response.reason or None, headers=headers)
    out = web.StreamResponse(status=response.status, reason=response.reason or None, headers=headers)
    try:
        await out.prepare(request)
        while chunk := await response.read():
            await out.write(chunk)
        response.release()
        await out.write_eof()
    except UpstreamFailure as failure:
        response.close()
        _abort(request)
        failure.response_started = True
        failure.response = out
        raise
    except ConnectionError:  # the client went away; nobody is left to answer
        response.close()
    except BaseException:
        response.close()
        raise
    return out


async def proxy_request(
    request: web.Request,
    upstream: Upstream,
    *,
    headers: CIMultiDict[str],
    body: bytes | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - the agreed interface; Upstream.send arms its own timers
    response_headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Forward ``request`` to ``upstream`` and stream the answer back.

    Raises :class:`UpstreamFailure` with ``response_started=False`` when nothing was written to the client yet;
    with ``response_started=True`` the client connection was already aborted and the handler should return
    ``failure.response``.
    """
    stream = client_body(request) if body is None and request.body_exists else None
    response = await upstream.send(
        request.method, request_target(request), headers, body=body, stream=stream, timeout=timeout
    )
    return await relay_response(request, response, response_headers=response_headers)
