"""Holding every caller to their tier: one limiter call per request, and the headers that explain the verdict.

The verdict is sent as ``X-RateLimit-Limit/Remaining/Reset`` (reset in seconds from now) and as the IETF
draft's structured fields ``RateLimit-Policy: "<tier>";q=<limit>;w=<window>`` and
``RateLimit: "<tier>";r=<remaining>;t=<reset>``. A refused request is a 429 problem with ``Retry-After``.
The same call tells whether the caller's access token or key was revoked (401), at no extra round trip.
Proxied responses are already sent when the handler returns, so the headers travel in ``RATE_HEADERS``
for the proxy to add.

What is not the API skips the limiter entirely: ``exempt`` names exact paths (the probes), ``exempt_prefixes``
whole subtrees (the dashboard's static files, which guard themselves). Both are built once; the hot path pays
one set lookup and one ``str.startswith`` over a short tuple.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.auth.middleware import unauthorized
from gateway.keys import PRINCIPAL, RATE_HEADERS
from gateway.ratelimit.base import Decision, LimiterUnavailable, RateLimiter
from gateway.stats import GatewayStats
from shared.errors import Problem
from shared.identity import Tier


def rate_limit_headers(decision: Decision, tier: Tier, window: float) -> dict[str, str]:
    reset = math.ceil(decision.reset) if decision.reset > 0 else 0
    return {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(reset),
        "RateLimit-Policy": f'"{tier}";q={decision.limit};w={math.ceil(window)}',
        "RateLimit": f'"{tier}";r={decision.remaining};t={reset}',
    }


def limiter_down() -> Problem:
    return Problem(
        503,
        "Service Unavailable",
        "Rate limiting is unavailable; try again shortly.",
        type_="rate-limiter-unavailable",
        headers={"Retry-After": "1"},
    )


def rate_limit_middleware(
    *,
    limiter: RateLimiter,
    tiers: Mapping[Tier, int],
    stats: GatewayStats,
    exempt: Collection[str] = (),
    exempt_prefixes: tuple[str, ...] = (),
) -> Middleware:
    window = limiter.config.window

    @web.middleware
    async def enforce_rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in exempt or path.startswith(exempt_prefixes):
            return await handler(request)
        principal = request[PRINCIPAL]
        tier = principal.identity.tier
        try:
            decision = await limiter.hit(principal.limit_key, tiers[tier], revocation_keys=principal.revocation_keys)
        except LimiterUnavailable:
            stats.decision(tier, "unavailable")
            raise limiter_down() from None
        if decision.revoked:
            stats.decision(tier, "revoked")
            raise unauthorized("The credential was revoked.")
        headers = rate_limit_headers(decision, tier, window)
        if not decision.allowed:
            stats.decision(tier, "limited")
            raise Problem(
                429,
                "Too Many Requests",
                f"The {tier} tier allows {decision.limit} requests per {window:g} s.",
                type_="rate-limited",
                headers={**headers, "Retry-After": str(decision.retry_after_seconds)},
            )
        stats.decision(tier, "allowed")
        request[RATE_HEADERS] = headers
        response = await handler(request)
        if not response.prepared:
            response.headers.update(headers)
        return response

    return enforce_rate_limit
