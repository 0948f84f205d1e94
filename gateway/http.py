"""Small response and body helpers shared by the gateway's own handlers."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from shared.errors import Problem


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def invalid(field: str, message: str) -> Problem:
    return Problem(
        422,
        "Unprocessable Content",
        f"{field} {message}",
        type_="validation-error",
        extra={"errors": [{"field": field, "message": message}]},
    )


def text_field(body: dict[str, Any], name: str, *, max_length: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise invalid(name, "is required and must be a non-empty string")
    if len(value) > max_length:
        raise invalid(name, f"must be at most {max_length} characters")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL: refuse it here, never as a 500 from the database
        raise invalid(name, "must not contain NUL characters")
    return value


def path_id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise Problem(404, "Not Found", f"No such {name}.")
    return int(raw)
