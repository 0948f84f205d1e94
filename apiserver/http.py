"""Small HTTP helpers for the API server's handlers: identity, conditional requests, JSON responses.

Who may call what is decided by :mod:`shared.authz` on the identity :func:`identity_of` reads here.
"""

from __future__ import annotations

import math

from aiohttp import web

from apiserver.keys import SETTINGS
from shared.errors import Problem
from shared.identity import IDENTITY_HEADER, Identity, verify_identity

JSON = "application/json"
GZIP_MIN_BYTES = 1024


def identity_of(request: web.Request) -> Identity:
    """Only a correctly signed, fresh identity header counts; anything else is anonymous."""
    secret = request.app[SETTINGS].common.internal_secret
    return verify_identity(request.headers.get(IDENTITY_HEADER), secret)


def etag_for(version: int) -> str:
    return f'"{version}"'


def _tags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


def none_match(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match")
    return header is not None and (header.strip() == "*" or etag in _tags(header))


def expected_version(request: web.Request) -> int | None:
    """The version ``If-Match`` requires, None when absent or ``*``; a tag we never issued can never match."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    for tag in _tags(header):
        inner = tag.strip('"')
        if tag.startswith('"') and inner.isascii() and inner.isdigit() and len(inner) < 10:
            return int(inner)
    return -1


def json_response(
    request: web.Request, payload: bytes, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    response = web.Response(body=payload, status=status, content_type=JSON, headers=headers)
    if len(payload) >= GZIP_MIN_BYTES and "gzip" in request.headers.get("Accept-Encoding", ""):
        response.enable_compression(web.ContentCoding.gzip)
    return response


def unavailable(detail: str, retry_after: float = 2.0) -> Problem:
    return Problem(
        503,
        "Service Unavailable",
        detail,
        type_="dependency-unavailable",
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )
