"""Reading JSON request bodies strictly: the right content type, a bounded size, valid UTF-8 JSON, an object.

Every failure is a precise 4xx :class:`~shared.errors.Problem`; nothing a client sends can become a 500.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from shared.errors import Problem

DEFAULT_MAX_BODY = 1024 * 1024
MAX_JSON_DEPTH = 32


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value, stopping once past ``limit``."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


async def read_json_object(request: web.Request, *, max_body: int = DEFAULT_MAX_BODY) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise Problem(415, "Unsupported Media Type", "Send the body as Content-Type: application/json.")
    if request.content_length is not None and request.content_length > max_body:
        raise Problem(413, "Payload Too Large", f"The body must be at most {max_body} bytes.")
    body = await request.content.read(max_body + 1)
    if len(body) > max_body:
        raise Problem(413, "Payload Too Large", f"The body must be at most {max_body} bytes.")
    if not body:
        raise Problem(
            400,
            "Bad Request",
            "The request body is empty; a JSON object is required.",
            type_="malformed-json",
        )
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "Bad Request", f"The body is not valid JSON: {exc.msg}.", type_="malformed-json") from None
    if not isinstance(value, dict):
        raise Problem(422, "Unprocessable Content", "The body must be a JSON object.", type_="validation-error")
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise Problem(
            422,
            "Unprocessable Content",
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels.",
            type_="validation-error",
        )
    return value
