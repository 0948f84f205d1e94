"""Strict validation of resource bodies and list queries: unknown fields, wrong types and bad lengths are 4xx."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from shared.errors import Problem
from shared.text import is_blank, text_problem

NAME_MAX = 200
TYPE_MAX = 50
DATA_MAX_BYTES = 64 * 1024
LIST_LIMIT_MAX = 100
LIST_LIMIT_DEFAULT = 20
_TYPE_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
_FIELDS = frozenset({"name", "type", "data"})
_QUERY_FIELDS = frozenset({"type", "owner", "limit", "cursor"})
_ID_MAX = 2**63 - 1
# Exactly the cursors encode_cursor writes: unpadded base64url of "id:" and 1 to 18 decimal digits (an id past
# 10**18 - 1 is far beyond any table here). Written out so the OpenAPI document can state it (gateway.openapi
# holds a copy; tests/unit/test_text.py checks that they agree) and so a forged or altered cursor is a 400.
_DIGIT = "(?:[MN][DTjz]|O[DT])"  # the first two characters of a 3-byte group starting with a digit
_DIGITS3 = _DIGIT + "[AEIMQUYcgk][w-z0-5]"
CURSOR_PATTERN = f"^aWQ6(?:{_DIGITS3}){{0,5}}(?:{_DIGITS3}|{_DIGIT}[AEIMQUYcgk]|(?:[MN][AQgw]|O[AQ]))$"
_CURSOR = re.compile(CURSOR_PATTERN)


def _invalid(detail: str, errors: list[dict[str, str]]) -> Problem:
    return Problem(422, "Unprocessable Content", detail, type_="validation-error", extra={"errors": errors})


def _check_name(value: Any, errors: list[dict[str, str]]) -> None:
    if not isinstance(value, str):
        errors.append({"field": "name", "message": "must be a string"})
    elif is_blank(value) or len(value) > NAME_MAX:
        errors.append({"field": "name", "message": f"must be 1 to {NAME_MAX} characters, not all whitespace"})
    elif (problem := text_problem(value)) is not None:
        errors.append({"field": "name", "message": problem})


def _check_type(value: Any, errors: list[dict[str, str]]) -> None:
    if not isinstance(value, str):
        errors.append({"field": "type", "message": "must be a string"})
    elif len(value) > TYPE_MAX or not _TYPE_PATTERN.fullmatch(value):
        errors.append({"field": "type", "message": f"must be 1 to {TYPE_MAX} of a-z, 0-9, '_' or '-'"})


def _check_data(value: Any, errors: list[dict[str, str]]) -> None:
    if not isinstance(value, dict):
        errors.append({"field": "data", "message": "must be a JSON object"})
        return
    try:
        encoded = orjson.dumps(value)
    except TypeError:
        # orjson refuses integers beyond 64 bits; PostgreSQL jsonb would keep them but clients could not.
        errors.append({"field": "data", "message": "contains a number too large to represent"})
        return
    if b"\\u0000" in encoded:
        # PostgreSQL text and jsonb cannot store NUL; refuse it here rather than fail in the database.
        errors.append({"field": "data", "message": "must not contain NUL characters"})
    elif len(encoded) > DATA_MAX_BYTES:
        errors.append({"field": "data", "message": f"must serialize to at most {DATA_MAX_BYTES} bytes"})


_CHECKS = {"name": _check_name, "type": _check_type, "data": _check_data}


def validate_resource(body: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """The accepted fields of a create (``partial=False``: name and type required) or a patch."""
    errors: list[dict[str, str]] = []
    unknown = sorted(set(body) - _FIELDS)
    errors.extend({"field": name, "message": "unknown field"} for name in unknown)
    if not partial:
        errors.extend({"field": name, "message": "is required"} for name in ("name", "type") if name not in body)
    elif not set(body) & _FIELDS:
        errors.append({"field": "", "message": "at least one of name, type, data is required"})
    for name, check in _CHECKS.items():
        if name in body:
            check(body[name], errors)
    if errors:
        raise _invalid("The resource is invalid: " + "; ".join(f"{e['field']} {e['message']}" for e in errors), errors)
    fields = {name: body[name] for name in _FIELDS if name in body}
    if "name" in fields:
        fields["name"] = fields["name"].strip()
    return fields


@dataclass(frozen=True, slots=True)
class ListQuery:
    type: str | None
    owner: int | None
    limit: int
    after_id: int

    def cache_key(self) -> str:
        return f"t={self.type or ''}&o={'' if self.owner is None else self.owner}&l={self.limit}&a={self.after_id}"


def _bad_query(detail: str) -> Problem:
    return Problem(400, "Bad Request", detail, type_="invalid-query")


def parse_id(raw: str) -> int:
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not 0 < int(raw) <= _ID_MAX:
        raise Problem(404, "Not Found", f"No resource with id {raw[:40]!r}.")
    return int(raw)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    if not _CURSOR.fullmatch(cursor):
        raise _bad_query("cursor is not a cursor this API returned")
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().removeprefix("id:"))
    except (binascii.Error, UnicodeDecodeError, ValueError):  # pragma: no cover - the pattern admits none
        raise _bad_query("cursor is not a cursor this API returned") from None


def parse_list_query(query: Mapping[str, str]) -> ListQuery:
    unknown = sorted(set(query) - _QUERY_FIELDS)
    if unknown:
        raise _bad_query(f"Unknown query parameter(s): {', '.join(unknown)}; allowed: type, owner, limit, cursor.")
    type_ = query.get("type")
    if type_ is not None and (len(type_) > TYPE_MAX or not _TYPE_PATTERN.fullmatch(type_)):
        raise _bad_query(f"type must be 1 to {TYPE_MAX} of a-z, 0-9, '_' or '-'")
    owner = _parse_int(query, "owner", None, 1, _ID_MAX)
    limit = _parse_int(query, "limit", LIST_LIMIT_DEFAULT, 1, LIST_LIMIT_MAX)
    cursor = query.get("cursor")
    after_id = 0 if cursor is None else decode_cursor(cursor)
    return ListQuery(type=type_, owner=owner, limit=limit or LIST_LIMIT_DEFAULT, after_id=after_id)


def _parse_int(query: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not low <= int(raw) <= high:
        raise _bad_query(f"{name} must be an integer from {low} to {high}")
    return int(raw)
