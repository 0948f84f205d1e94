"""Cross-origin calls (CORS) answered at the edge, configured by ``CORS_*`` (``gateway.settings.CorsSettings``).

Only the public API (``/api/...``) and ``/openapi.json`` take part; probes, metrics and the dashboard never carry
an ``Access-Control-*`` header (a page must not read ``/metrics`` through a visitor's browser on a private
network). The edge middleware calls this module; no extra middleware layer runs per request::

    OPTIONS + Origin + Access-Control-Request-Method         (a preflight; it never reaches auth, the API's rate
      │                                                      limits or the balancer)
      ├─ per-address guard: PREFLIGHT_LIMIT per GUARD_WINDOW in this process (no I/O) ── over it ─► 429
      ├─ origin, method and every requested header allowed ─► 204 + Allow-Origin/-Methods/-Headers/-Max-Age
      └─ anything else ─► 403 problem without any Access-Control-* header (the browser blocks the call)

    any other request with an allowed origin, errors and 429s included (a browser hides a response without
    Allow-Origin from the page, so code could not even see a 401 or a 429):
      ─► Access-Control-Allow-Origin, Access-Control-Expose-Headers (rate-limit headers, ETag, X-Request-ID,
         Location, Retry-After, ...), Access-Control-Allow-Credentials when configured

Modes. ``CORS_ALLOW_ORIGINS=*``: every API response says ``Access-Control-Allow-Origin: *`` whatever the request's
Origin (so one cached copy serves every page) and credentials are off (settings refuse ``*`` with credentials).
A list: only a listed origin gets headers, and the value sent is the configured string, looked up by exact match,
never the request's copy; cacheable responses then carry ``Vary: Origin`` (``gateway.caching``). Empty: off.
A disallowed origin gets nothing at all, not even an explanation header, as the Fetch standard expects.

Why by hand: aiohttp-cors attaches CORS to routes it wraps (our catch-all proxy and the router's own 404/405 and
middleware errors are not routes it sees), answers through an ``on_response_prepare`` signal (one more coroutine
per response on the hot path), reflects the request's Origin when ``*`` meets credentials, and has no notion of a
per-address preflight guard. What remains is a dictionary lookup per request and a few precomputed header maps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aiohttp import web

from gateway.ratelimit.base import WindowConfig
from gateway.ratelimit.local import LocalRateLimiter
from gateway.settings import CorsSettings
from shared.errors import Problem
from shared.netaddr import IPNetwork, client_address

ORIGIN = "Origin"
REQUEST_METHOD = "Access-Control-Request-Method"
REQUEST_HEADERS = "Access-Control-Request-Headers"
ALLOW_ORIGIN = "Access-Control-Allow-Origin"
# What browser code may read besides the CORS-safelisted headers (Cache-Control, Content-Type, ...).
EXPOSED_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    "ETag",
    "X-Request-ID",
    "Location",
    "Idempotent-Replayed",
    "WWW-Authenticate",
)
# Paths that take part in CORS: the API and its description.
CORS_PATHS = ("/api/", "/openapi.json")
# A browser caches a preflight per URL for CORS_MAX_AGE, so a page reading many resources with a token sends one
# preflight per resource: 600 per 10 s (60/s sustained) per client address per worker leaves every real page
# alone and stops only a script flooding OPTIONS, at the cost of an in-process counter (no Redis).
PREFLIGHT_LIMIT = 600
GUARD_WINDOW = WindowConfig(window=10.0, buckets=10)
GUARD_MAX_ADDRESSES = 10_000
NO_STORE = "no-store"
PREFLIGHT_VARY = f"{ORIGIN}, {REQUEST_METHOD}, {REQUEST_HEADERS}"


class CorsPolicy:
    """The headers a request's origin earns, all built once from :class:`CorsSettings`."""

    def __init__(self, settings: CorsSettings) -> None:
        self.settings = settings
        self.enabled = bool(settings.allow_origins)
        self.varies_by_origin = self.enabled and not settings.any_origin
        self._methods = frozenset(settings.allow_methods)
        self._headers = frozenset(name.lower() for name in settings.allow_headers)
        expose = {"Access-Control-Expose-Headers": ", ".join(EXPOSED_HEADERS)}
        credentials = {"Access-Control-Allow-Credentials": "true"} if settings.allow_credentials else {}
        preflight = {
            "Access-Control-Allow-Methods": ", ".join(settings.allow_methods),
            "Access-Control-Allow-Headers": ", ".join(settings.allow_headers),
            "Access-Control-Max-Age": str(settings.max_age),
            "Vary": PREFLIGHT_VARY,
        }
        self._actual = {origin: {ALLOW_ORIGIN: origin, **expose, **credentials} for origin in settings.allow_origins}
        self._preflight = {
            origin: {ALLOW_ORIGIN: origin, **credentials, **preflight} for origin in settings.allow_origins
        }
        self._any = self._actual.get("*")

    def response_headers(self, origin: str | None) -> Mapping[str, str] | None:
        """What an API response to a request from ``origin`` carries; None for no CORS headers at all."""
        if self._any is not None:
            return self._any
        return None if origin is None else self._actual.get(origin)

    def preflight_headers(self, origin: str, method: str, requested: str | None) -> Mapping[str, str] | None:
        """The answer to a preflight, or None when the origin, the method or a requested header is not allowed."""
        answer = self._preflight.get("*" if self._any is not None else origin)
        if answer is None or method not in self._methods:
            return None
        if requested:
            names = (name.strip().lower() for name in requested.split(","))
            if any(name and name not in self._headers for name in names):
                return None
        return answer


class Cors:
    """The policy plus the preflight answer the edge gives (see the module docstring)."""

    def __init__(
        self,
        settings: CorsSettings,
        *,
        trusted_proxies: Sequence[IPNetwork] = (),
        guard: LocalRateLimiter | None = None,
    ) -> None:
        self.policy = CorsPolicy(settings)
        self.enabled = self.policy.enabled
        self._trusted = trusted_proxies
        self._guard = guard or LocalRateLimiter(GUARD_WINDOW, max_keys=GUARD_MAX_ADDRESSES)

    def response_headers(self, request: web.Request) -> Mapping[str, str] | None:
        return self.policy.response_headers(request.headers.get(ORIGIN))

    @staticmethod
    def is_preflight(request: web.Request) -> bool:
        headers = request.headers
        return request.method == "OPTIONS" and ORIGIN in headers and REQUEST_METHOD in headers

    async def preflight(self, request: web.Request) -> web.Response:
        address = client_address(request.remote, request.headers.get("X-Forwarded-For"), self._trusted)
        decision = await self._guard.hit(address, PREFLIGHT_LIMIT)
        if not decision.allowed:
            raise Problem(
                429,
                "Too Many Requests",
                f"At most {PREFLIGHT_LIMIT} CORS preflights per {GUARD_WINDOW.window:g} s from one address.",
                type_="preflight-rate-limited",
                headers={"Retry-After": str(decision.retry_after_seconds), "Cache-Control": NO_STORE},
            )
        headers = request.headers
        answer = self.policy.preflight_headers(headers[ORIGIN], headers[REQUEST_METHOD], headers.get(REQUEST_HEADERS))
        if answer is None:
            raise Problem(
                403,
                "Forbidden",
                "This cross-origin request is not allowed: the origin, the method or a header is not in the "
                "gateway's CORS_ALLOW_ORIGINS, CORS_ALLOW_METHODS or CORS_ALLOW_HEADERS.",
                type_="cors-refused",
                headers={"Vary": PREFLIGHT_VARY, "Cache-Control": NO_STORE},
            )
        return web.Response(status=204, headers=answer)
