"""The admin dashboard: the built single-page app (``frontend/dist``) served at ``/dashboard/``.

How a path under ``/dashboard/`` is answered::

    /dashboard                      ─► 308 to /dashboard/
    /dashboard/assets/<hash>.<ext>  ─► the file, cached for a year (the name changes whenever the content does)
    /dashboard/<file that exists>   ─► the file, revalidated on every use (no-cache)
    /dashboard/<client route>       ─► index.html, no-cache (the app routes on the client)
    /dashboard/<missing file.ext>   ─► 404 problem (a missing asset is never answered with HTML)
    no built dashboard              ─► 503 problem saying how to build it; the API is unaffected

Every answer carries a strict Content-Security-Policy: the bundle loads only its own scripts and styles and
talks only to this origin (the admin API), so an injected string cannot run or send anything anywhere.
The dashboard itself is public static code; every piece of data it shows comes from the admin API, which
checks the admin's bearer token on each call.

Rate limits: the files are not the API, so the API's tiered limits skip them (``RATE_LIMIT_EXEMPT_PATHS`` and
``RATE_LIMIT_EXEMPT_PREFIXES``, wired in ``gateway.app``): no Redis call, and an address that spent its
anonymous API budget (often an incident's traffic behind one NAT) still gets the console. The dashboard's own
API calls (``/api/v1/admin/*``, sign-in) stay limited as before. What guards the files instead::

    GET /dashboard/...  ─► the address guard: an in-process LocalRateLimiter (the API's sliding window, no
                           I/O), GUARD_LIMIT requests per GUARD_WINDOW per client address
                           ─► over it: 429 problem with Retry-After; otherwise the file

Why a guard at all: each answer opens and sends a file, so a flood from one address could still cost the
workers real CPU and file-system work. Why this much: a cold load is index.html plus a few hashed assets
(cached for a year after), a reload is one revalidation; 300 per 10 s (30/s sustained) is hundreds of reloads
for everyone behind one address, so only a script hammering the files hits it. The count is per worker process
(N workers admit up to N times as much) and forgets idle addresses (``LocalRateLimiter``'s bounded memory).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from gateway.keys import PRINCIPAL, SETTINGS
from gateway.ratelimit.base import WindowConfig
from gateway.ratelimit.local import LocalRateLimiter
from shared.errors import Problem

PREFIX = "/dashboard"
# What the API's rate limits skip: the redirect and every path under the prefix (the edge already refused any
# non-canonical path, so nothing reaches another route through these).
RATE_LIMIT_EXEMPT_PATHS = frozenset({PREFIX})
RATE_LIMIT_EXEMPT_PREFIXES = (PREFIX + "/",)
GUARD_LIMIT = 300
GUARD_WINDOW = WindowConfig(window=10.0, buckets=10)
GUARD_MAX_ADDRESSES = 10_000
INDEX = "index.html"
ASSETS = "assets/"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
BUILD_HINT = (
    "The admin dashboard is not built. Run `make frontend` (needs Node.js 20.19+ and npm), or "
    "`npm --prefix frontend install --no-save && npm --prefix frontend run build`, or point DASHBOARD_DIR at a "
    "built copy."
)


def resolve_file(root: Path, tail: str) -> Path | None:
    """The file ``tail`` names inside ``root``, or None when it is missing or would escape ``root``."""
    if "\x00" in tail:
        return None
    try:
        candidate = (root / tail).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
    except (OSError, ValueError):  # a segment longer than the file system allows, and the like: no such file
        return None
    return candidate


def looks_like_file(tail: str) -> bool:
    """A path whose last segment has an extension (``app.js``) or that is under ``assets/`` names a file, not a
    client route: when it is missing the answer is 404, never index.html."""
    last = tail.rsplit("/", 1)[-1]
    return tail.startswith(ASSETS) or "." in last


def _file(path: Path, cache_control: str) -> web.FileResponse:
    return web.FileResponse(path, headers={**SECURITY_HEADERS, "Cache-Control": cache_control})


async def serve_dashboard(request: web.Request) -> web.StreamResponse:
    root = request.app[SETTINGS].dashboard_dir.resolve()
    index = root / INDEX
    if not index.is_file():
        raise Problem(
            503, "Service Unavailable", BUILD_HINT, type_="dashboard-not-built", headers={"Cache-Control": "no-store"}
        )
    tail = request.match_info["tail"]
    found = resolve_file(root, tail) if tail else None
    if found is not None:
        immutable = tail.startswith(ASSETS) and found.name != INDEX
        return _file(found, IMMUTABLE if immutable else REVALIDATE)
    if tail and looks_like_file(tail):
        raise Problem(404, "Not Found", "No such dashboard file.")
    return _file(index, REVALIDATE)


async def redirect_to_dashboard(request: web.Request) -> web.Response:
    return web.Response(status=308, headers={"Location": PREFIX + "/"})


DashboardHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(handler: DashboardHandler, guard: LocalRateLimiter) -> DashboardHandler:
    """``handler`` behind the per-address guard (see the module docstring)."""

    async def guard_then_serve(request: web.Request) -> web.StreamResponse:
        decision = await guard.hit(request[PRINCIPAL].client_address, GUARD_LIMIT)
        if not decision.allowed:
            raise Problem(
                429,
                "Too Many Requests",
                f"At most {GUARD_LIMIT} dashboard requests per {GUARD_WINDOW.window:g} s from one address.",
                type_="dashboard-rate-limited",
                headers={"Retry-After": str(decision.retry_after_seconds), "Cache-Control": "no-store"},
            )
        return await handler(request)

    return guard_then_serve


def add_dashboard_routes(app: web.Application, *, guard: LocalRateLimiter | None = None) -> None:
    """``guard`` defaults to a fresh in-process limiter; tests pass one with a driven clock."""
    address_guard = guard or LocalRateLimiter(GUARD_WINDOW, max_keys=GUARD_MAX_ADDRESSES)
    app.router.add_get(PREFIX, guarded(redirect_to_dashboard, address_guard))
    app.router.add_get(PREFIX + "/{tail:.*}", guarded(serve_dashboard, address_guard))
