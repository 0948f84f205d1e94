"""The streaming HTTP/1.1 reverse-proxy core both hops use (gateway → balancer, balancer → apiserver).

A proxied request goes::

    outgoing_headers()            client headers without hop-by-hop, Connection-named and ``drop`` ones;
                                  X-Forwarded-*, X-Request-ID and traceparent (this hop's, shared.tracing) set
    Upstream.send()               acquire → write head (+ body, streamed from the client when not given);
                                  in a sampled request a CLIENT span, which the traceparent sent names
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
``Upstream.send`` and ``relay_response`` directly (or, for a response already ``complete``, the plain function
``buffered_response``: no coroutine on the common path); ``proxy_request`` is the two in one.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable, Mapping

from aiohttp import web
from multidict import CIMultiDict

from shared.keys import REQUEST_ID, TRACEPARENT
from shared.upstream.connection import UpstreamFailure
from shared.upstream.pool import Upstream, UpstreamResponse

__all__ = [
    "HOP_BY_HOP",
    "buffered_response",
    "client_body",
    "outgoing_headers",
    "proxy_request",
    "relay_response",
    "request_target",
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
# Host is rewritten to the upstream's; Expect was already answered by our own server (100-continue).
_NOT_FORWARDED = HOP_BY_HOP | {"host", "expect"}


@functools.lru_cache(maxsize=256)
def _skipped(connection: str | None, drop: tuple[str, ...], has_id: bool, has_trace: bool) -> frozenset[str]:
    """The lower-case names not copied upstream: hop-by-hop, Connection-named, ``drop``, and the ones
    :func:`outgoing_headers` sets itself. Cached: a process passes the same ``drop`` on every request and clients
    rarely send Connection at all."""
    skipped = set(_NOT_FORWARDED) | {"x-forwarded-for"} | {name.lower() for name in drop}
    if connection:
        skipped.update(token.strip().lower() for token in connection.split(","))
    if has_id:
        skipped.add("x-request-id")
    if has_trace:
        skipped.add("traceparent")
    return frozenset(skipped)


_PLAIN_SKIPPED = {
    (has_id, has_trace): _skipped(None, (), has_id, has_trace)
    for has_id in (False, True)
    for has_trace in (False, True)
}


def outgoing_headers(request: web.Request, *, forwarded_for: str, drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """The headers to send upstream for ``request`` (see the module docstring)."""
    incoming = request.headers
    request_id = request.get(REQUEST_ID)
    traceparent = request.get(TRACEPARENT)
    connection = incoming.get("Connection")
    if connection is None and not drop:  # the balancer's every request: no cache key to hash
        skipped = _PLAIN_SKIPPED[request_id is not None, traceparent is not None]
    else:
        drop = drop if isinstance(drop, tuple) else tuple(drop)
        skipped = _skipped(connection, drop, request_id is not None, traceparent is not None)
    # Copy everything, then delete the few names present: cheaper than lower-casing every name in Python.
    headers: CIMultiDict[str] = CIMultiDict(incoming)
    for name in skipped:
        if name in headers:
            del headers[name]
    headers.add("X-Forwarded-For", forwarded_for)
    if "X-Forwarded-Proto" not in headers:
        headers.add("X-Forwarded-Proto", request.scheme)
    if "X-Forwarded-Host" not in headers and request.host:
        headers.add("X-Forwarded-Host", request.host)
    if request_id is not None:
        headers.add("X-Request-ID", request_id)
    if traceparent is not None:
        headers.add("traceparent", traceparent)
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


@functools.lru_cache(maxsize=64)
def _not_relayed(extra: tuple[str, ...]) -> frozenset[str]:
    """Hop-by-hop names and the ones ``response_headers`` replaces, lower-case."""
    return HOP_BY_HOP | {name.lower() for name in extra}


def _client_headers(response: UpstreamResponse, extra: Mapping[str, str] | None) -> CIMultiDict[str]:
    head = response.head
    headers: CIMultiDict[str] = CIMultiDict(head.headers)
    # Delete the few names present rather than lower-case every name in Python.
    for name in _not_relayed(tuple(extra)) if extra else HOP_BY_HOP:
        if name in headers:
            del headers[name]
    for name in head.connection_tokens:  # names listed in Connection are hop-by-hop too (RFC 9110 §7.6.1)
        headers.popall(name, None)
    if extra:
        headers.extend(extra)
    return headers


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


def buffered_response(response: UpstreamResponse, *, response_headers: Mapping[str, str] | None = None) -> web.Response:
    """The client response for an upstream response that is :attr:`~UpstreamResponse.complete` (the common case:
    no coroutine needed); its connection goes back to the pool."""
    headers = _client_headers(response, response_headers)
    # Unprepared, so aiohttp sends head and body in one write (and middlewares may still add headers).
    body = response.take_body()
    response.release()
    return web.Response(body=body, status=response.status, reason=response.reason or None, headers=headers)


async def relay_response(
    request: web.Request, response: UpstreamResponse, *, response_headers: Mapping[str, str] | None = None
) -> web.StreamResponse:
    """Send ``response`` to the client (see the module docstring for the failure rules)."""
    if response.complete:
        return buffered_response(response, response_headers=response_headers)
    headers = _client_headers(response, response_headers)
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
