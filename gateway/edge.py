"""Edge hygiene: what the gateway refuses before any work is done on a request.

* Paths must be canonical: no ``.``/``..`` segments, no empty segments (``//``), no backslashes, and no
  percent-encoded ``/``, ``\\``, ``.`` or NUL. Routers and upstreams disagree about how to decode those, which
  is how ``/api/v1/..%2Finternal`` style tricks reach what the edge meant to hide; refusing them (400) is
  simpler and safer than normalising them.
* Bodies are JSON (415 otherwise) and bounded (413 from ``Content-Length`` before reading; the app's
  ``client_max_size`` bounds chunked bodies while reading).
* Too many requests in flight in this process: 503 with ``Retry-After`` (load shedding), so an overload
  queues nowhere and recovers at once.

Header sizes and counts are bounded by the HTTP parser (``handler_args`` in ``create_app``).

The same layer applies the API's cross-origin and caching rules, so no extra middleware runs per request:

* a CORS preflight to the API is answered here (``gateway.cors``), before authentication, the API's rate limits
  and the balancer;
* every error (problems, aiohttp's own 404/405/413, a handler's unexpected exception, the shedding 503) is
  rendered here with ``Cache-Control: no-store`` and, for an allowed origin, the CORS headers: a browser shows
  a page the status and problem only with them;
* an API answer a handler sent without a ``Cache-Control`` gets ``no-store`` (the gateway's own routes: tokens,
  keys, the admin API); proxied answers already carry their policy (``gateway.caching``).
"""

from __future__ import annotations

import re
from collections.abc import Collection

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.caching import CACHE_CONTROL, NO_STORE
from gateway.cors import ALLOW_ORIGIN, CORS_PATHS, Cors
from gateway.stats import GatewayStats
from shared.errors import Problem, render_exception

_ENCODED_TRICKS = re.compile(r"%(2f|5c|2e|00)", re.IGNORECASE)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
JSON_TYPES = ("application/json", "application/merge-patch+json")
API_PREFIX = "/api/"


def check_path(raw_path: str) -> None:
    path = raw_path.partition("?")[0]
    segments = path.split("/")[1:]
    bad = (
        not path.startswith("/")
        or "\\" in path
        or _ENCODED_TRICKS.search(path) is not None
        or any(segment in (".", "..") for segment in segments)
        or any(segment == "" for segment in segments[:-1])
        or any(ord(char) < 0x20 or ord(char) == 0x7F for char in path)
    )
    if bad:
        raise Problem(400, "Bad Request", "The request path is not in canonical form.", type_="non-canonical-path")


def check_body(request: web.Request, max_body: int) -> None:
    if request.method not in _BODY_METHODS or not request.body_exists:
        return
    if request.content_type not in JSON_TYPES:
        raise Problem(415, "Unsupported Media Type", "Send the body as Content-Type: application/json.")
    if request.content_length is not None and request.content_length > max_body:
        raise Problem(413, "Payload Too Large", f"The body must be at most {max_body} bytes.")


def overloaded() -> Problem:
    return Problem(
        503,
        "Service Unavailable",
        "The gateway is overloaded; try again shortly.",
        type_="overloaded",
        headers={"Retry-After": "1"},
    )


def edge_middleware(
    *,
    max_body: int,
    max_in_flight: int,
    stats: GatewayStats,
    exempt: Collection[str] = (),
    cors: Cors | None = None,
) -> Middleware:
    in_flight = 0
    policy = cors if cors is not None and cors.enabled else None

    @web.middleware
    async def guard_edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal in_flight
        check_path(request.raw_path)
        path = request.path
        if path in exempt:
            return await handler(request)
        cross = policy if policy is not None and path.startswith(CORS_PATHS) else None
        if cross is not None and cross.is_preflight(request):
            return await cross.preflight(request)
        admitted = False
        try:
            check_body(request, max_body)
            if in_flight >= max_in_flight:
                stats.shed()
                raise overloaded()
            in_flight += 1
            admitted = True
            stats.in_flight.inc()
            response = await handler(request)
        except Exception as exc:  # rendered as request_middleware would, plus the headers below
            response = render_exception(request, exc)
            if response.status >= 400:
                response.headers[CACHE_CONTROL] = NO_STORE
        finally:
            if admitted:
                in_flight -= 1
                stats.in_flight.dec()
        if admitted:
            stats.response(response.status)
        if not response.prepared:
            headers = response.headers
            if cross is not None and ALLOW_ORIGIN not in headers:
                allowed = cross.response_headers(request)
                if allowed is not None:
                    headers.update(allowed)
            if CACHE_CONTROL not in headers and path.startswith(API_PREFIX):
                headers[CACHE_CONTROL] = NO_STORE
        return response

    return guard_edge
