"""Forwarding the public API to the balancer, with the caller's identity signed and the edge's headers set.

Only the routes listed in :data:`PROXIED_ROUTES` are forwarded (an allow-list: ``/internal/*``, ``/lb/*`` and
anything else unknown is a 404 here, never a question for the upstream). For each forwarded request:

* ``X-Forwarded-For`` is replaced by the client address the gateway computed (client-sent values from
  untrusted peers never travel on), and ``X-Internal-Identity`` by a freshly signed one;
* credentials (``Authorization``, ``X-API-Key``, cookies) stay at the edge: the upstream trusts the signature;
* the body is read here, bounded by size and by ``CLIENT_TIMEOUT`` (a slow client ties up nothing upstream);
* the response carries the rate-limit headers, the request id, the caching policy (``gateway.caching``: chosen
  from the route, the caller and the upstream's status, hence sent only once the head is in) and the CORS headers
  (``gateway.cors``), whatever the upstream sent; all of them are prebuilt maps merged into one dict;
* upstream failures before the response started become 503 (unreachable), 504 (timed out) or 502 problems.
"""

from __future__ import annotations

import asyncio
import math

from aiohttp import web
from aiohttp.typedefs import Handler

from gateway.caching import CACHEABLE_PATHS, CachePolicy
from gateway.cors import ORIGIN, CorsPolicy
from gateway.keys import PRINCIPAL, RATE_HEADERS, SETTINGS, UPSTREAM
from shared.context import REQUEST_ID_HEADER
from shared.errors import Problem
from shared.identity import IDENTITY_HEADER, sign_identity
from shared.keys import REQUEST_ID
from shared.upstream import UpstreamFailure, buffered_response, outgoing_headers, relay_response, request_target

PROXIED_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/api/v1/resources"),
    ("POST", "/api/v1/resources"),
    ("GET", "/api/v1/resources/{id}"),
    ("PUT", "/api/v1/resources/{id}"),
    ("PATCH", "/api/v1/resources/{id}"),
    ("DELETE", "/api/v1/resources/{id}"),
    ("GET", "/api/v1/status"),
    ("GET", "/api/v1/external"),
)
_NONE: dict[str, str] = {}
EDGE_ONLY_HEADERS = (IDENTITY_HEADER, "Authorization", "X-API-Key", "Cookie", "Forwarded", "X-Real-IP")


async def read_body(request: web.Request, timeout: float) -> bytes | None:  # noqa: ASYNC109 - the client's budget
    if not request.body_exists:
        return None
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise Problem(408, "Request Timeout", "The request body arrived too slowly.") from None


def failure_problem(failure: UpstreamFailure, retry_after: float = 1.0) -> Problem:
    if failure.kind == "timeout":
        return Problem(504, "Gateway Timeout", "The upstream did not answer in time.", type_="upstream-timeout")
    if failure.kind == "connect":
        return Problem(
            503,
            "Service Unavailable",
            "The upstream is unreachable.",
            type_="upstream-unavailable",
            headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
        )
    return Problem(502, "Bad Gateway", "The upstream failed to answer.", type_="upstream-failed")


def forwarder(*, cacheable: bool, caching: CachePolicy, cors: CorsPolicy) -> Handler:
    """The handler forwarding one route; ``cacheable`` routes get the public/private policy on 200 and 304."""
    cross_origin = cors.response_headers if cors.enabled else None

    async def forward(request: web.Request) -> web.StreamResponse:
        settings = request.app[SETTINGS]
        principal = request[PRINCIPAL]
        body = await read_body(request, settings.client_timeout)
        headers = outgoing_headers(request, forwarded_for=principal.client_address, drop=EDGE_ONLY_HEADERS)
        headers[IDENTITY_HEADER] = sign_identity(principal.identity, settings.common.internal_secret)
        try:
            upstream = await request.app[UPSTREAM].send(
                request.method, request_target(request), headers, body=body, timeout=settings.upstream_timeout
            )
        except UpstreamFailure as failure:
            raise failure_problem(failure) from None
        policy = caching.headers(cacheable, upstream.status, principal.identity.user_id is None)
        extra = {**request.get(RATE_HEADERS, _NONE), **policy, REQUEST_ID_HEADER: request[REQUEST_ID]}
        if cross_origin is not None and (allowed := cross_origin(request.headers.get(ORIGIN))) is not None:
            extra.update(allowed)
        if upstream.complete:  # the common case: no coroutine to relay it
            return buffered_response(upstream, response_headers=extra)
        try:
            return await relay_response(request, upstream, response_headers=extra)
        except UpstreamFailure as failure:
            if failure.response_started and isinstance(failure.response, web.StreamResponse):
                return failure.response
            raise failure_problem(failure) from None

    return forward


def add_proxy_routes(app: web.Application) -> None:
    """Every proxied GET route answers HEAD too (forwarded as HEAD: the upstream sends GET's headers, no body)."""
    settings = app[SETTINGS]
    cors = CorsPolicy(settings.cors)  # the same maps the edge's copy builds from the same settings
    caching = CachePolicy(settings.http_cache, vary_origin=cors.varies_by_origin)
    for method, path in PROXIED_ROUTES:
        if method == "GET":
            handler = forwarder(cacheable=path in CACHEABLE_PATHS, caching=caching, cors=cors)
            app.router.add_get(path, handler, allow_head=True)
        else:
            app.router.add_route(method, path, forwarder(cacheable=False, caching=caching, cors=cors))
