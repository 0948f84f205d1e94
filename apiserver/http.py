"""Small HTTP helpers for the API server's handlers: identity, conditional requests, JSON responses.

Who may call what is decided by :mod:`shared.authz` on the identity :func:`identity_of` reads here.
"""

from __future__ import annotations

import math

from aiohttp import hdrs, web

from apiserver.cache.entry import etag_for
from apiserver.keys import SETTINGS
from shared.errors import Problem
from shared.identity import IDENTITY_HEADER, Identity, verify_identity

__all__ = ["etag_for", "expected_version", "identity_of", "json_response", "none_match", "unavailable"]

JSON = "application/json"
GZIP_MIN_BYTES = 1024


def identity_of(request: web.Request) -> Identity:
    """Only a correctly signed, fresh identity header counts; anything else is anonymous."""
    secret = request.app[SETTINGS].common.internal_secret
    return verify_identity(request.headers.get(IDENTITY_HEADER), secret)


def _tags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


def none_match(request: web.Request, etag: str) -> bool:
    header = request.headers.get(hdrs.IF_NONE_MATCH)
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
    request: web.Request,
    payload: bytes,
    *,
    status: int = 200,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
) -> web.StreamResponse:
    # Content-Type is passed as a header, not as content_type=: aiohttp then takes the headers as they are.
    fields: list[tuple[str, str]] = [(hdrs.CONTENT_TYPE, JSON)]
    if headers:
        fields.extend(headers.items() if isinstance(headers, dict) else headers)
    response = web.Response(body=payload, status=status, headers=fields)
    if len(payload) >= GZIP_MIN_BYTES and "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, ""):
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
