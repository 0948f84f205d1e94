"""Header and body abuse through gateway → balancer → apiserver: CRLF injection, oversize headers and bodies,
deep JSON, huge numbers, invalid UTF-8, path tricks, forged X-Forwarded-For and identity headers, and request
smuggling (conflicting Content-Length / Transfer-Encoding, raw bytes over a socket) at every hop."""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from database.accounts import DEV_ADMIN, DEV_USER
from shared.identity import IDENTITY_HEADER, Identity, sign_identity
from shared.settings import DEV_INTERNAL_SECRET
from tests.resilience.report import Sample, record
from tests.security.rawhttp import exchange, statuses
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
ADMIN_IDENTITY = Identity(user_id=1, role="admin", tier="enterprise", method="jwt")


def _raw(method: str, path: str, headers: list[str], body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        + "".join(f"{h}\r\n" for h in headers)
        + "\r\n"
    )
    return head.encode("latin-1") + body


def _post(path: str, token: str, body: bytes, *extra: str) -> bytes:
    headers = [f"Authorization: Bearer {token}", "Content-Type: application/json", *extra]
    return _raw("POST", path, headers, body)


async def _cases(stack: Stack, http: aiohttp.ClientSession) -> dict[str, tuple[bytes, set[int]]]:
    token = (await stack.login(http, DEV_USER.login))["token"]
    create = "/api/v1/resources"

    def body(data: bytes) -> tuple[bytes, str]:
        return data, f"Content-Length: {len(data)}"

    deep, deep_cl = body(b'{"name":"d","type":"t","data":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}")
    huge_int, huge_int_cl = body(b'{"name":"n","type":"t","data":{"n":' + b"9" * 400 + b"}}")
    huge_float, huge_float_cl = body(b'{"name":"n","type":"t","data":{"n":1e400}}')
    bad_utf8, bad_utf8_cl = body(b'{"name":"\xff\xfe","type":"t"}')
    big, big_cl = body(b'{"name":"b","type":"t","data":{"x":"' + b"x" * 300_000 + b'"}}')
    cases: dict[str, tuple[bytes, set[int]]] = {
        "CRLF in X-Request-ID (encoded)": (
            _raw("GET", "/api/v1/status", ["X-Request-ID: a%0d%0aSet-Cookie:%20x=1"]),
            {200},
        ),
        "bare CR inside a header value": (_raw("GET", "/api/v1/status", ["X-A: a\rSet-Cookie: x=1"]), {400}),
        "obs-fold continuation line": (_raw("GET", "/api/v1/status", ["X-A: a", " Set-Cookie: x=1"]), {400}),
        "CRLF encoded in the path": (_raw("GET", "/api/v1/status%0d%0aSet-Cookie:x", []), {400, 404}),
        "16 KB header": (_raw("GET", "/api/v1/status", ["X-Big: " + "a" * 16_000]), {400, 431}),
        "200 headers": (_raw("GET", "/api/v1/status", [f"X-H{n}: v" for n in range(200)]), {400, 431}),
        "300 KB body": (_post(create, token, big, big_cl), {413}),
        "300 KB chunked body": (
            _post(create, token, b"%x\r\n%b\r\n0\r\n\r\n" % (len(big), big), "Transfer-Encoding: chunked"),
            {413},
        ),
        "JSON nested 5000 deep": (_post(create, token, deep, deep_cl), {400, 422}),
        "400-digit integer": (_post(create, token, huge_int, huge_int_cl), {400, 422}),
        "1e400": (_post(create, token, huge_float, huge_float_cl), {400, 422}),
        "invalid UTF-8 in the body": (_post(create, token, bad_utf8, bad_utf8_cl), {400}),
        "invalid UTF-8 in a header": (
            b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-A: \xff\xfe\r\n\r\n",
            {200, 400},
        ),
        "invalid UTF-8 in the path": (
            b"GET /api/v1/resources/\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            {400, 404},
        ),
        "huge id": (_raw("GET", "/api/v1/resources/" + "9" * 40, []), {404}),
        "huge limit": (_raw("GET", "/api/v1/resources?limit=" + "9" * 40, []), {400}),
    }
    for path in (
        "/api/v1/resources/../../internal/breakers",
        "/api/v1/%2e%2e/%2e%2e/internal/breakers",
        "/api/v1/resources/..%2f..%2finternal%2fcache",
        "/api/v1/resources/%2E%2E%5C%2E%2E%5Cinternal",
        "//internal/breakers",
        "/api/v1/resources/1/..;/../../internal/breakers",
        "/internal/breakers",
        "/lb/status",
        "/api/v1/admin/../../lb/status",
        "/api/v1\\..\\..\\internal\\breakers",
    ):
        cases[f"path {path}"] = (_raw("GET", path, []), {400, 404})
    return cases


async def test_header_and_body_abuse_is_refused_cleanly(stack: Stack, http: aiohttp.ClientSession) -> None:
    port = stack.gateways[0].port
    cases = await _cases(stack, http)
    answers = {name: await exchange(port, raw, wait=3.0) for name, (raw, _) in cases.items()}
    got = {name: (statuses(answer) or [0])[0] for name, answer in answers.items()}
    wrong = {name: got[name] for name, (_, allowed) in cases.items() if got[name] not in allowed}
    leaked = [
        name for name, answer in answers.items() if b"\r\nset-cookie" in answer.lower() or b'"fail_max"' in answer
    ]
    record(
        "security",
        "header_body_abuse",
        title=f"Header and body abuse: {len(cases)} malformed or hostile requests",
        guarantee="each refused with the expected 4xx; no 5xx; no injected header; nothing internal reached",
        samples=[Sample(name, status, 0.0, 0.0) for name, status in got.items()],
        failed=len(wrong) + len(leaked),
        extra={"unexpected": wrong, "leaked": leaked},
    )
    assert wrong == {}
    assert leaked == []


async def test_forged_forwarded_for_and_identity_headers_gain_nothing(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    admin = await stack.bearer(http, DEV_ADMIN.login)
    forged_for = f"203.0.113.{uuid.uuid4().int % 250 + 1}"

    async def used(identifier: str) -> int:
        async with http.get(f"{stack.gateway}/api/v1/admin/rate-limits/{identifier}", headers=admin) as response:
            assert response.status == 200
            return int((await response.json())["used"])

    before = await used("ip:127.0.0.1")
    for _ in range(10):
        headers = {"X-Forwarded-For": forged_for, "X-Real-IP": forged_for, "Forwarded": f"for={forged_for}"}
        async with http.get(stack.gateway + "/api/v1/status", headers=headers) as response:
            assert response.status == 200
    assert await used(f"ip:{forged_for}") == 0
    assert await used("ip:127.0.0.1") >= before + 10

    valid = sign_identity(ADMIN_IDENTITY, DEV_INTERNAL_SECRET)  # as if one leaked from inside
    forged = {
        "leaked genuine signature": valid,
        "wrong secret": sign_identity(ADMIN_IDENTITY, "not-the-secret-000000000000000000"),
        "unsigned": "v1.1.admin.enterprise.jwt.0.",
        "signature of another identity": valid.rsplit(".", 1)[0].replace(".1.", ".2.") + "." + valid.rsplit(".", 1)[1],
    }
    results: dict[str, int] = {}
    body = {"name": "forged", "type": "forged"}
    for name, value in forged.items():
        async with http.post(stack.gateway + "/api/v1/resources", json=body, headers={IDENTITY_HEADER: value}) as r:
            results[f"gateway: {name}"] = r.status
        if name != "leaked genuine signature":
            url = stack.apiservers[0].url + "/api/v1/resources"
            async with http.post(url, json=body, headers={IDENTITY_HEADER: value}) as r:
                results[f"apiserver: {name}"] = r.status
            async with http.post(stack.balancer.url + "/lb/backends/x/drain", headers={IDENTITY_HEADER: value}) as r:
                results[f"balancer drain: {name}"] = r.status
    record(
        "security",
        "forged_headers",
        title="Forged X-Forwarded-For / X-Real-IP / Forwarded and X-Internal-Identity",
        guarantee="limits stay on the real address; forged identities are anonymous (401)",
        samples=[Sample(name, status, 0.0, 0.0) for name, status in results.items()],
        failed=sum(1 for status in results.values() if status != 401),
        extra={"results": results},
    )
    assert results == dict.fromkeys(results, 401)


SMUGGLING = {
    "CL.TE": "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "TE.CL": "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
    "two Content-Lengths": "Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
    "TE obfuscated (xchunked)": "Transfer-Encoding: xchunked\r\nContent-Length: 2\r\n\r\n{}",
    "TE with a space before the colon": "Transfer-Encoding : chunked\r\nContent-Length: 2\r\n\r\n{}",
    "TE chunked, identity": "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "negative Content-Length": "Content-Length: -1\r\n\r\n{}",
    "Content-Length with a plus": "Content-Length: +2\r\n\r\n{}",
    "bad chunk size": "Transfer-Encoding: chunked\r\n\r\n-1\r\nxx\r\n0\r\n\r\n",
}
SMUGGLED = "GET /api/v1/admin/dashboard HTTP/1.1\r\nHost: x\r\nX-Request-ID: smuggled\r\n\r\n"


async def test_request_smuggling_is_refused_at_every_hop(stack: Stack, http: aiohttp.ClientSession) -> None:
    hops = {
        "gateway": stack.gateways[0].port,
        "balancer": stack.balancer.port,
        "apiserver": stack.apiservers[0].port,
    }
    results: dict[str, list[int]] = {}
    for hop, port in hops.items():
        for name, rest in SMUGGLING.items():
            raw = f"POST /api/v1/resources HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{rest}{SMUGGLED}"
            answer = await exchange(port, raw.encode(), wait=1.0)
            results[f"{hop}: {name}"] = statuses(answer)
    # Nobody else's response was poisoned: fresh requests each get their own answer.
    desynced = 0
    for _ in range(20):
        request_id = uuid.uuid4().hex
        async with http.get(stack.gateway + "/api/v1/status", headers={"X-Request-ID": request_id}) as response:
            await response.read()
            desynced += response.status != 200 or response.headers.get("X-Request-ID") != request_id
    accepted = {name: codes for name, codes in results.items() if not codes or codes[0] != 400 or len(codes) > 1}
    record(
        "security",
        "request_smuggling",
        title=f"Request smuggling: {len(SMUGGLING)} CL/TE conflicts x 3 hops, raw bytes",
        guarantee="each refused with one 400 and the connection closed; no desync for other clients",
        samples=[Sample(name, (codes or [0])[0], 0.0, 0.0) for name, codes in results.items()],
        failed=len(accepted) + desynced,
        extra={"not_refused": accepted, "desynced_followups": desynced},
    )
    assert accepted == {}
    assert desynced == 0
