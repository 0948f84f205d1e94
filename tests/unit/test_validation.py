"""Resource validation and list-query parsing: every bad input is a precise 4xx, never an exception leak."""

from __future__ import annotations

import pytest

from apiserver.validation import decode_cursor, encode_cursor, parse_id, parse_list_query, validate_resource
from shared.errors import Problem


def problem(call: object, *args: object, **kwargs: object) -> Problem:
    assert callable(call)
    with pytest.raises(Problem) as raised:
        call(*args, **kwargs)
    return raised.value


def test_valid_create_is_trimmed() -> None:
    assert validate_resource({"name": "  Hi ", "type": "note"}, partial=False) == {"name": "Hi", "type": "note"}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": "x", "type": "note", "owner_id": 3}, "owner_id", "unknown field"),
        ({"type": "note"}, "name", "is required"),
        ({"name": 5, "type": "note"}, "name", "must be a string"),
        ({"name": "", "type": "note"}, "name", "must be 1 to 200 characters"),
        ({"name": "x" * 201, "type": "note"}, "name", "must be 1 to 200 characters"),
        ({"name": "a\x00b", "type": "note"}, "name", "must not contain NUL characters"),
        ({"name": "x", "type": "Bad Type"}, "type", "must be 1 to 50"),
        ({"name": "x", "type": "note", "data": []}, "data", "must be a JSON object"),
        ({"name": "x", "type": "note", "data": {"k": "v\x00"}}, "data", "must not contain NUL characters"),
        ({"name": "x", "type": "note", "data": {"k": "v" * 70_000}}, "data", "at most 65536 bytes"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(body: dict[str, object], field: str, message: str) -> None:
    raised = problem(validate_resource, body, partial=False)
    assert raised.status == 422
    errors = raised.extra["errors"]
    assert isinstance(errors, list)
    assert any(error["field"] == field and message in error["message"] for error in errors)


def test_empty_patch_is_422() -> None:
    assert problem(validate_resource, {}, partial=True).status == 422


def test_cursor_round_trip_and_forgery() -> None:
    assert decode_cursor(encode_cursor(12345)) == 12345
    for forged in ["!!!", "aWQ6LTE", "eDox", "aWQ6YWJj"]:  # garbage, id:-1, x:1, id:abc
        assert problem(decode_cursor, forged).status == 400


def test_list_query_limits() -> None:
    query = parse_list_query({"type": "note", "owner": "2", "limit": "100"})
    assert (query.type, query.owner, query.limit, query.after_id) == ("note", 2, 100, 0)
    for bad in [{"limit": "101"}, {"limit": "0"}, {"limit": "x"}, {"owner": "-1"}, {"sort": "name"}]:
        assert problem(parse_list_query, bad).status == 400


def test_ids_outside_range_are_404() -> None:
    assert parse_id("42") == 42
    for bad in ["0", "-1", "abc", "9" * 30, "١٢"]:
        assert problem(parse_id, bad).status == 404
