"""Reading JSON request bodies strictly: the right content type, a bounded size, valid UTF-8 I-JSON, an object.

Every failure is a precise 4xx :class:`~shared.errors.Problem`; nothing a client sends can become a 500::

    wrong Content-Type ─► 415          over max_body ─► 413          empty ─► 400
    not JSON (syntax, not UTF-8, a number beyond a double) ─► 400 malformed-json
    JSON, but a string or key holds a lone surrogate escape (\\uD800) ─► 422, naming the field
    not an object, nested deeper than MAX_JSON_DEPTH, NUL in any string or key ─► 422, naming the field

What text is storable is :mod:`shared.text`'s to say; this module applies it to every body of every route, so no
handler can forget it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from shared.errors import Problem
from shared.text import text_problem

DEFAULT_MAX_BODY = 1024 * 1024
MAX_JSON_DEPTH = 32


def invalid_field(field: str, message: str) -> Problem:
    """The 422 for one bad field: ``detail`` says it in words, ``errors`` names the field for programs."""
    return Problem(
        422,
        "Unprocessable Content",
        f"{field} {message}".strip(),
        type_="validation-error",
        extra={"errors": [{"field": field, "message": message}]},
    )


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


def _printable(name: str) -> str:
    """A key as it can be shown in a problem (which is JSON itself): NUL and surrogates as escapes."""
    return name.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\u0000")


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every key and string value in ``value`` with the field path that reaches it (``data.tags[0]``)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            field = f"{path}.{_printable(key)}" if path else _printable(key)
            yield field, key
            yield from _strings(child, field)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(child, f"{path}[{index}]")


def unstorable_field(value: Any) -> Problem | None:
    """The 422 for the first string or key in ``value`` that cannot be stored (:func:`shared.text.text_problem`)."""
    for field, text in _strings(value):
        message = text_problem(text)
        if message is not None:
            return invalid_field(field, message)
    return None


def _refuse_constant(name: str) -> None:
    raise ValueError(name)  # NaN and Infinity are not JSON


def _surrogate_problem(body: bytes) -> Problem | None:
    """For a body orjson refused: the 422 naming a lone surrogate escape when that was the only fault, else None.

    Only on this error path does the standard library parse the body again (it accepts such escapes), so a
    request that is well-formed JSON but not I-JSON is told which field is wrong rather than "not JSON"."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return None
    return unstorable_field(value) if _depth(value, MAX_JSON_DEPTH) <= MAX_JSON_DEPTH else None


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        problem = _surrogate_problem(body) if "surrogate" in exc.msg else None
        if problem is not None:
            raise problem from None
        raise Problem(400, "Bad Request", f"The body is not valid JSON: {exc.msg}.", type_="malformed-json") from None


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
    value = _parse(body)
    if not isinstance(value, dict):
        raise Problem(422, "Unprocessable Content", "The body must be a JSON object.", type_="validation-error")
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise Problem(
            422,
            "Unprocessable Content",
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels.",
            type_="validation-error",
        )
    # A NUL can only arrive escaped (a raw control character is not JSON): look for it only when the escape is there.
    problem = unstorable_field(value) if b"\\u0000" in body else None
    if problem is not None:
        raise problem
    return value
