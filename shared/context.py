"""Request context: the request id and the W3C trace context that follow a request across every hop.

A client's ``X-Request-ID`` is kept only when it is a sane token (at most 128 characters of
``[A-Za-z0-9._-]``); otherwise one is generated. It is echoed on every response and bound into every log line.
A valid ``traceparent`` is passed through; an absent or malformed one starts a new trace here. Whether the
request is sampled, and so gets a server span whose id the traceparent passed on carries, is decided here once
(:meth:`shared.tracing.Tracing.begin`; the edge policy for a client's sampled flag is described there).

:func:`request_middleware` is the one layer every process puts first: the request context, the HTTP metrics
and the problem rendering of errors (:func:`shared.errors.render_exception`) in one coroutine. They were three
middlewares; each is one more coroutine every request enters, suspends through and returns from (measured: about
3 us of CPU per layer per request in the balancer)::

    bind request id + traceparent ─► handler ─┬─ response ─────────────┐
      (sampled: start the server span)        └─ exception ─► problem ─┴─► observe(method, route, status)
                                                                           ─► (sampled: end the server span)
                                                                           ─► X-Request-ID on the response
"""

from __future__ import annotations

import random
import re
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from structlog.contextvars import bind_contextvars

from shared.errors import render_exception
from shared.keys import REQUEST_ID, TRACEPARENT
from shared.metrics import Metrics, route_template
from shared.tracing import Tracing

REQUEST_ID_HEADER = "X-Request-ID"
TRACEPARENT_HEADER = "traceparent"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


# Request and trace ids correlate logs; they guard nothing, so they come from a fast PRNG rather than the
# OS's cryptographic source (one getrandom syscall per id, on every hop, showed up in the balancer's profile).
_ids = random.Random()


def new_request_id() -> str:
    return f"{_ids.getrandbits(128):032x}"


def accept_request_id(value: str | None) -> str:
    if value is not None and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()


def request_middleware(*, metrics: Metrics, tracing: Tracing | None = None) -> Middleware:
    """The request context, the HTTP metrics and problem+json rendering of errors, as one layer.

    ``tracing``: the process's (see :mod:`shared.tracing`); without it nothing is recorded and every caller's
    traceparent is passed on as it came.
    """
    observe = metrics.observe_request
    clock = time.perf_counter
    begin_trace = (tracing or Tracing("untraced", "")).begin

    @web.middleware
    async def serve_request(request: web.Request, handler: Handler) -> web.StreamResponse:
        headers = request.headers
        request_id = accept_request_id(headers.get(REQUEST_ID_HEADER))
        request[REQUEST_ID] = request_id
        request[TRACEPARENT], server_span = begin_trace(request, headers.get(TRACEPARENT_HEADER))
        bind_contextvars(request_id=request_id)
        started = clock()
        status = 500  # what a cancelled request counts as
        try:
            try:
                response = await handler(request)
            except Exception as exc:
                response = render_exception(request, exc)
            status = response.status
        finally:
            observe(request.method, route_template(request), status, clock() - started)
            if server_span is not None:
                server_span.finish(status)
        if not response.prepared:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    return serve_request
