"""Small response and input helpers shared by the gateway's own handlers.

Every text field is checked by :func:`text_field` and every integer in a query by :func:`query_int`, so a value
PostgreSQL cannot take (NUL, a lone surrogate, an integer beyond bigint) is a 422 here, never a 500 there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from shared.bodies import invalid_field
from shared.errors import Problem
from shared.text import is_blank, text_problem

BIGINT_MAX = 2**63 - 1


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


def invalid(field: str, message: str) -> Problem:
    return invalid_field(field, message)


def only_fields(body: dict[str, Any], *names: str) -> dict[str, Any]:
    """``body`` if it holds no field but ``names``; else the 422 naming the first other one (a typo such as
    ``passwrd`` is an error the caller sees, not a field silently ignored)."""
    unknown = sorted(set(body) - set(names))
    if unknown:
        raise invalid(unknown[0], f"is not a field of this request (allowed: {', '.join(names)})")
    return body


def text_field(body: dict[str, Any], name: str, *, max_length: int) -> str:
    """A required, non-blank string of at most ``max_length`` characters that PostgreSQL can store."""
    value = body.get(name)
    if not isinstance(value, str) or is_blank(value):
        raise invalid(name, "is required and must be a non-empty string")
    if len(value) > max_length:
        raise invalid(name, f"must be at most {max_length} characters")
    problem = text_problem(value)
    if problem is not None:
        raise invalid(name, problem)
    return value


def query_int(query: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    """The query parameter ``name`` as an integer in [low, high], else a 422: ASCII digits only, as the document's
    ``integer`` says (``int()`` would also take ``" 1_0"`` or Arabic-Indic digits)."""
    raw = query.get(name)
    if raw is None:
        return default
    digits = raw.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19 or not low <= int(raw) <= high:
        raise invalid(name, f"must be an integer from {low} to {high}")
    return int(raw)


def path_id(request: web.Request, name: str = "id") -> int:
    raw = request.match_info[name]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise Problem(404, "Not Found", f"No such {name}.")
    return int(raw)
