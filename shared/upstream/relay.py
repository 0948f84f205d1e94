"""The streaming HTTP/1.1 reverse-proxy core both hops use (gateway → balancer, balancer → apiserver).

A proxied request goes::

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

from collections.abc import AsyncIterator, Iterable, Mapping

from aiohttp import web
from multidict import CIMultiDict

from shared.keys import REQUEST_ID, TRACEPARENT
from shared.upstream.connection import UpstreamFailure
from shared.upstream.pool import Upstream, UpstreamResponse

__all__ = ["HOP_BY_HOP", "client_body", "outgoing_headers", "proxy_request", "relay_response", "request_target"]

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
# Host is rewritten to the upstream's; Expect was already answered by our own server (100-continue).
_NOT_FORWARDED = HOP_BY_HOP | {"host", "expect"}


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
