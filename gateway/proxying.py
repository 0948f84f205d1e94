"""Forwarding the public API to the balancer, with the caller's identity signed and the edge's headers set.

Only the routes listed in :data:`PROXIED_ROUTES` are forwarded (an allow-list: ``/internal/*``, ``/lb/*`` and
anything else unknown is a 404 here, never a question for the upstream). For each forwarded request:

* ``X-Forwarded-For`` is replaced by the client address the gateway computed (client-sent values from
  untrusted peers never travel on), and ``X-Internal-Identity`` by a freshly signed one;
* credentials (``Authorization``, ``X-API-Key``, cookies) stay at the edge: the upstream trusts the signature;
* the body is read here, bounded by size and by ``CLIENT_TIMEOUT`` (a slow client ties up nothing upstream);
* the response carries the rate-limit headers and the request id, whatever the upstream sent;
* upstream failures before the response started become 503 (unreachable), 504 (timed out) or 502 problems.
"""

from __future__ import annotations

import asyncio
import math

from aiohttp import web

from gateway.keys import PRINCIPAL, RATE_HEADERS, SETTINGS, UPSTREAM
from shared.context import REQUEST_ID_HEADER
from shared.errors import Problem
from shared.identity import IDENTITY_HEADER, sign_identity
from shared.keys import REQUEST_ID
from shared.upstream import UpstreamFailure, outgoing_headers, proxy_request

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


async def forward(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    principal = request[PRINCIPAL]
    body = await read_body(request, settings.client_timeout)
    headers = outgoing_headers(request, forwarded_for=principal.client_address, drop=EDGE_ONLY_HEADERS)
    headers[IDENTITY_HEADER] = sign_identity(principal.identity, settings.common.internal_secret)
    try:
        return await proxy_request(
            request,
            request.app[UPSTREAM],
            headers=headers,
            body=body,
            timeout=settings.upstream_timeout,
            response_headers={**request.get(RATE_HEADERS, {}), REQUEST_ID_HEADER: request[REQUEST_ID]},
        )
    except UpstreamFailure as failure:
        if failure.response_started and isinstance(failure.response, web.StreamResponse):
            return failure.response
        raise failure_problem(failure) from None


def add_proxy_routes(app: web.Application) -> None:
    """Every proxied GET route answers HEAD too (forwarded as HEAD: the upstream sends GET's headers, no body)."""
    for method, path in PROXIED_ROUTES:
        if method == "GET":
            app.router.add_get(path, forward, allow_head=True)
        else:
            app.router.add_route(method, path, forward)
