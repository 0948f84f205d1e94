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
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.keys import SETTINGS
from shared.errors import Problem

PREFIX = "/dashboard"
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


def add_dashboard_routes(app: web.Application) -> None:
    app.router.add_get(PREFIX, redirect_to_dashboard)
    app.router.add_get(PREFIX + "/{tail:.*}", serve_dashboard)
