"""What text the API accepts, and the OpenAPI document saying the same thing to every regex engine.

The checks in :mod:`shared.text` and :mod:`shared.bodies` refuse NUL and lone surrogates with a 422 naming the
field; the document's patterns must accept exactly the strings the checks accept, read by Python's ``re`` (the
handlers, hypothesis) and by Rust's regex (jsonschema-rs, which schemathesis validates with), and the copies of
a pattern in the gateway's document must equal the originals.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import jsonschema_rs
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from apiserver.validation import CURSOR_PATTERN, decode_cursor, encode_cursor, parse_list_query
from balancer.control import drain_wait
from gateway.http import only_fields, query_int
from gateway.openapi import CURSOR_PATTERN as DOCUMENTED_CURSOR
from gateway.openapi import DOCUMENT, EDGE_STATUSES
from shared.bodies import read_json_object
from shared.errors import Problem, from_problem
from shared.identity import ANONYMOUS, verify_identity
from shared.text import NON_BLANK_TEXT_PATTERN, TEXT_PATTERN, WHITESPACE_CLASS, is_blank, text_problem

SAMPLES = ["a", " a ", "\u3000x\u3000", "\x1c", "\x85", "\ufeff", " ", "\t\n", "", "a\x00", "\x00", "😀", "é ü"]


def test_the_whitespace_class_is_what_strip_removes() -> None:
    pattern = re.compile(f"[{WHITESPACE_CLASS}]")
    spaces = [chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()]
    matched = [chr(code) for code in range(sys.maxunicode + 1) if pattern.fullmatch(chr(code))]
    assert matched == spaces


@pytest.mark.parametrize("value", SAMPLES)
def test_the_patterns_accept_what_the_checks_accept_in_python_and_rust(value: str) -> None:
    storable = text_problem(value) is None
    non_blank = jsonschema_rs.Draft202012Validator({"type": "string", "pattern": NON_BLANK_TEXT_PATTERN})
    text = jsonschema_rs.Draft202012Validator({"type": "string", "pattern": TEXT_PATTERN})
    assert bool(re.search(TEXT_PATTERN, value)) is storable
    assert text.is_valid(value) is storable
    assert bool(re.search(NON_BLANK_TEXT_PATTERN, value)) is (storable and not is_blank(value))
    assert non_blank.is_valid(value) is (storable and not is_blank(value))


def test_an_identity_header_that_is_not_ascii_is_anonymous() -> None:
    # aiohttp hands header bytes that are not UTF-8 over as lone surrogates; hmac.compare_digest refuses them
    assert verify_identity("v1.1.admin.enterprise.jwt.0.\udcff", "s" * 32) == ANONYMOUS
    assert verify_identity("v1.1.admin.enterprise.jwt.0.é", "s" * 32) == ANONYMOUS


def test_nul_and_lone_surrogates_are_named() -> None:
    assert text_problem("fine 😀") is None
    assert text_problem("a\x00b") == "must not contain NUL characters"
    assert text_problem("a\ud800") == "must not contain lone surrogates (U+D800-U+DFFF)"
    assert text_problem("\udcff") is not None  # what aiohttp makes of a header byte that is not UTF-8


def test_the_documented_cursor_is_the_apiservers_and_accepts_exactly_its_cursors() -> None:
    assert DOCUMENTED_CURSOR == CURSOR_PATTERN
    validator = jsonschema_rs.Draft202012Validator({"type": "string", "pattern": CURSOR_PATTERN})
    for last_id in [0, 1, 9, 10, 99, 100, 12_345, 999_999, 10**17, 10**18 - 1]:
        cursor = encode_cursor(last_id)
        assert validator.is_valid(cursor)
        assert decode_cursor(cursor) == last_id
    for forged in ["", "aWQ6", "aWQ6MB", "aWQ6LTE", "eDox", "aWQ6YWJj", encode_cursor(10**18) + "x"]:
        assert not validator.is_valid(forged)
        with pytest.raises(Problem) as raised:
            decode_cursor(forged)
        assert raised.value.status == 400


def test_an_empty_cursor_is_refused_not_taken_as_the_first_page() -> None:
    with pytest.raises(Problem) as raised:
        parse_list_query({"cursor": ""})
    assert raised.value.status == 400
    assert parse_list_query({}).after_id == 0


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, 7), ("0", 0), ("42", 42), ("100", 100), ("-0", 0)]
)  # fmt: skip
def test_query_integers_in_range(raw: str | None, expected: int) -> None:
    query = {} if raw is None else {"n": raw}
    assert query_int(query, "n", default=7, low=0, high=100) == expected


@pytest.mark.parametrize("raw", ["", "101", "-1", "1.5", " 5", "1_0", "²", "\u0661", "9" * 40, "0x10"])
def test_query_integers_out_of_range_or_not_ascii_digits_are_422(raw: str) -> None:
    with pytest.raises(Problem) as raised:
        query_int({"n": raw}, "n", default=0, low=0, high=100)
    assert raised.value.status == 422
    assert raised.value.extra["errors"] == [{"field": "n", "message": "must be an integer from 0 to 100"}]


def test_unknown_fields_are_named() -> None:
    assert only_fields({"email": "a"}, "email", "password") == {"email": "a"}
    with pytest.raises(Problem) as raised:
        only_fields({"email": "a", "passwrd": "b"}, "email", "password")
    assert raised.value.extra["errors"][0]["field"] == "passwrd"  # type: ignore[index]


@pytest.mark.parametrize(("raw", "seconds"), [(None, 30.0), ("0", 0.0), ("2.5", 2.5), ("1e+06", 300.0)])
def test_a_drain_wait_is_plain_seconds_capped(raw: str | None, seconds: float) -> None:
    assert drain_wait(raw) == seconds


@pytest.mark.parametrize("raw", ["nan", "inf", "-1", "1e999", "\u0661", " 5", "", "5s"])
def test_a_drain_wait_that_is_not_a_number_of_seconds_is_400(raw: str) -> None:
    with pytest.raises(Problem) as raised:
        drain_wait(raw)
    assert raised.value.status == 400


async def _echo(request: web.Request) -> web.Response:
    try:
        body = await read_json_object(request)
    except Problem as problem:
        return from_problem(request, problem)
    return web.json_response(body)


@pytest.fixture
async def echo(aiohttp_client: Any) -> TestClient[web.Request, web.Application]:
    app = web.Application()
    app.router.add_post("/", _echo)
    client: TestClient[web.Request, web.Application] = await aiohttp_client(app)
    return client


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        (b'{"email": "a\\ud800"}', 422, "email", "must not contain lone surrogates (U+D800-U+DFFF)"),
        (b'{"email": "\\udc00x"}', 422, "email", "must not contain lone surrogates (U+D800-U+DFFF)"),
        (b'{"data": {"k": ["ok", "\\ud83d"]}}', 422, "data.k[1]", "must not contain lone surrogates (U+D800-U+DFFF)"),
        (b'{"data": {"\\ud800": 1}}', 422, "data.\\ud800", "must not contain lone surrogates (U+D800-U+DFFF)"),
        (b'{"name": "a\\u0000"}', 422, "name", "must not contain NUL characters"),
        (b'{"data": {"k": {"deep": "\\u0000"}}}', 422, "data.k.deep", "must not contain NUL characters"),
        (b'{"data": {"\\u0000": 1}}', 422, "data.\\u0000", "must not contain NUL characters"),
        (b'{"a": "\\ud800", "b": NaN}', 400, None, None),  # not JSON at all: the surrogate is not the only fault
        (b'{"a": "\\ud800",}', 400, None, None),
        (b'{"a": "\xff"}', 400, None, None),  # not UTF-8
        (b'{"a": "\xed\xa0\x80"}', 400, None, None),  # a surrogate encoded in UTF-8 is not UTF-8 either
    ],
)
async def test_unstorable_text_is_a_422_naming_the_field(
    echo: TestClient[web.Request, web.Application], body: bytes, status: int, field: str | None, message: str | None
) -> None:
    response = await echo.post("/", data=body, headers={"Content-Type": "application/json"})
    assert response.status == status
    problem = await response.json()
    if status == 422:
        assert problem["errors"] == [{"field": field, "message": message}]
        assert problem["detail"] == f"{field} {message}"
    else:
        assert problem["type"].endswith("/malformed-json")


@pytest.mark.parametrize(
    "body",
    [b'{"a": "\\ud83d\\ude00 pair"}', b'{"a": "\\\\u0000 is text"}', b'{"a": "\\\\ud800 too"}', b'{"a": [1, 2.5]}'],
)
async def test_surrogate_pairs_and_escaped_backslashes_are_fine(
    echo: TestClient[web.Request, web.Application], body: bytes
) -> None:
    response = await echo.post("/", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 200, await response.text()
    assert await response.json() == orjson.loads(body)


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, operation) for path, item in DOCUMENT["paths"].items() for method, operation in item.items()]


@pytest.mark.parametrize(("path", "method", "operation"), _operations(), ids=lambda value: str(value)[:40])
def test_every_operation_documents_what_every_layer_can_answer(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    statuses = set(operation["responses"])
    if path in ("/health", "/ready", "/metrics"):  # probes skip authentication, rate limits and shedding
        return
    assert set(EDGE_STATUSES) <= statuses
    if method in ("post", "put", "patch"):
        assert {"413", "415"} <= statuses
    if "requestBody" in operation:
        assert "422" in statuses
    for status, response in operation["responses"].items():
        if int(status) >= 400:
            assert "application/problem+json" in response["content"], (path, method, status)


def test_bodies_that_refuse_unknown_fields_say_so() -> None:
    for path, method, operation in _operations():
        if "requestBody" in operation:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            assert schema["additionalProperties"] is False, (path, method)
