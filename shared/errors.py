"""RFC 9457 problem details: the one error shape every process returns.

Handlers raise :class:`Problem` (or let aiohttp raise its own ``HTTPException``); the error middleware turns
both into ``application/problem+json`` with the request id. Anything else is a bug: it is logged with its
traceback and answered with a bare 500 problem that leaks no internals.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
import structlog
from aiohttp import web

from shared.keys import REQUEST_ID

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TYPE_BASE = "https://scalable-api.dev/problems/"
_log = structlog.get_logger("shared.errors")


class Problem(Exception):
    """An error with an HTTP status, a stable type slug and a human detail."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type_: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type_ = type_ or title.lower().replace(" ", "-")
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def problem_response(
    request: web.Request,
    status: int,
    title: str,
    detail: str | None = None,
    *,
    type_: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, object] | None = None,
) -> web.Response:
    body: dict[str, object] = {
        "type": _TYPE_BASE + (type_ or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail or title,
        "instance": request.path,
        "request_id": request.get(REQUEST_ID, ""),
    }
    if extra:
        body.update(extra)
    response = web.Response(body=orjson.dumps(body), status=status, content_type=PROBLEM_CONTENT_TYPE)
    if headers:
        response.headers.update(headers)
    return response


def from_problem(request: web.Request, problem: Problem) -> web.Response:
    return problem_response(
        request,
        problem.status,
        problem.title,
        problem.detail,
        type_=problem.type_,
        headers=problem.headers,
        extra=problem.extra,
    )


# aiohttp raises these itself (routing, body limits); give them precise titles.
_HTTP_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Payload Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_PASSTHROUGH_HEADERS = ("Allow", "Retry-After", "Location", "WWW-Authenticate")


def from_http_exception(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    if exc.status < 400:
        # Redirects and 304s are not errors; aiohttp's response is already correct.
        return exc
    title = _HTTP_TITLES.get(exc.status, exc.reason)
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else title
    headers = {name: exc.headers[name] for name in _PASSTHROUGH_HEADERS if name in exc.headers}
    return problem_response(request, exc.status, title, detail, headers=headers)


def render_exception(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The problem response for ``exc``; call it inside the ``except`` block (an unexpected error is logged
    with its traceback)."""
    if isinstance(exc, Problem):
        return from_problem(request, exc)
    if isinstance(exc, web.HTTPException):
        return from_http_exception(request, exc)
    _log.exception("unhandled_error", path=request.path, method=request.method)
    return problem_response(request, 500, "Internal Server Error", "The server could not complete the request.")
