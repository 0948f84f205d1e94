"""HTTP caching headers of the public API (RFC 9111, RFC 5861): who may keep a copy of a response, for how long.

The gateway is the one place that knows both the route and the caller, so it sets the policy on every proxied
response (``gateway.proxying``; the apiserver sends ETags and answers ``If-None-Match``, never a policy)::

    GET/HEAD /api/v1/resources, /api/v1/resources/{id}
      ├─ 200 or 304, anonymous ─► Cache-Control: public, max-age=M, s-maxage=S, stale-while-revalidate=W,
      │                                          stale-if-error=E
      ├─ 200 or 304, signed in ─► Cache-Control: private, max-age=M      (the browser's own cache only)
      └─ any other status     ─► Cache-Control: no-store                 (errors, 429s, 503s)
    everything else: writes, /status (names the instance), /external, the gateway's own routes
                              ─► no-store (``gateway.edge`` adds it where a handler set nothing)

``Vary`` on the cacheable answers names every request header that changes the response: ``Accept-Encoding``
(the apiserver gzips), ``Authorization`` and ``X-API-Key`` (public vs private, the rate-limit headers), and
``Origin`` when CORS lists origins (the Allow-Origin header depends on it). A shared cache therefore stores one
anonymous copy per encoding and never hands it to a request that carries credentials. RFC 9111 §3.5 alone would
not cover ``X-API-Key``: it only keeps responses to ``Authorization`` requests out of shared caches.

The rate-limit headers (``X-RateLimit-*``, ``RateLimit``) are per caller, so a cached copy replays those of the
caller who filled the cache. They stay on public responses anyway: a field-qualified ``no-cache="X-RateLimit-..."``
or ``private="..."`` is not honoured by common caches (nginx treats it as uncacheable, most CDNs as unqualified),
and dropping them would hide every anonymous caller's budget whether or not a cache is in front. The IETF
RateLimit draft says clients ignore the fields on a response served from cache (``Age`` > 0), a hit spends no
budget, and a 429 (``no-store``) always comes from the gateway. A CDN that should not replay them can hide them
(nginx ``proxy_hide_header``, Varnish ``unset resp.http.…``).

Writes purge nothing: the gateway cannot reach a CDN's store. A copy lives at most ``s-maxage`` (plus
``stale-while-revalidate`` while the cache refetches); browsers invalidate their own copy of a URL they wrote to.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.settings import HttpCacheSettings

CACHE_CONTROL = "Cache-Control"
NO_STORE = "no-store"
# The proxied routes whose GET/HEAD answers may be cached.
CACHEABLE_PATHS = frozenset({"/api/v1/resources", "/api/v1/resources/{id}"})
_CACHEABLE_STATUSES = frozenset({200, 304})
VARY = ("Accept-Encoding", "Authorization", "X-API-Key")


def public_cache_control(settings: HttpCacheSettings) -> str:
    return (
        f"public, max-age={settings.max_age}, s-maxage={settings.s_maxage}, "
        f"stale-while-revalidate={settings.stale_while_revalidate}, stale-if-error={settings.stale_if_error}"
    )


class CachePolicy:
    """The caching headers of one proxied answer, chosen from three maps built at start-up."""

    def __init__(self, settings: HttpCacheSettings, *, vary_origin: bool = False) -> None:
        vary = ", ".join((*VARY, "Origin") if vary_origin else VARY)
        # Plain dicts (merged into each response's header dict; nothing mutates them after this).
        self.public: Mapping[str, str] = {CACHE_CONTROL: public_cache_control(settings), "Vary": vary}
        self.private: Mapping[str, str] = {CACHE_CONTROL: f"private, max-age={settings.max_age}", "Vary": vary}
        self.no_store: Mapping[str, str] = {CACHE_CONTROL: NO_STORE}

    def headers(self, cacheable: bool, status: int, anonymous: bool) -> Mapping[str, str]:
        if cacheable and status in _CACHEABLE_STATUSES:
            return self.public if anonymous else self.private
        return self.no_store
