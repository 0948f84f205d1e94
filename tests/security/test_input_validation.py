"""Inputs that reached a 500, or a status the document did not name, through the real gateway → balancer →
apiserver chain: each is now the documented 4xx problem naming what is wrong."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from database.accounts import DEV_ADMIN, DEV_USER
from tests.security.rawhttp import exchange, statuses
from tests.support.stack import Stack, backend_id, operator_headers

pytestmark = pytest.mark.e2e
SURROGATE = "must not contain lone surrogates (U+D800-U+DFFF)"


def _get(path: str, header: bytes) -> bytes:
    return b"GET %b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%b\r\n\r\n" % (path.encode(), header)


@pytest.mark.parametrize(
    "header",
    [b"X-API-Key: sak_\xff\xfe0123456789abcdef", b"X-API-Key: sak_\xed\xa0\x80", b"Authorization: Bearer \xff.a.b"],
)
async def test_a_credential_that_is_not_utf8_is_a_401(stack: Stack, header: bytes) -> None:
    answer = await exchange(stack.gateways[0].port, _get("/api/v1/me", header))
    assert statuses(answer) == [401]
    assert b"application/problem+json" in answer


async def _post(http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with http.post(url, data=body, headers={**headers, "Content-Type": "application/json"}) as response:
        return response.status, await response.json(content_type=None)


async def test_lone_surrogates_are_a_422_naming_the_field_on_every_hop(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    user = await stack.bearer(http, DEV_USER.login)
    cases = [
        ("/api/v1/auth/login", b'{"email": "a\\ud800@example.com", "password": "x"}', {}, "email"),
        ("/api/v1/keys", b'{"name": "ci \\udc00"}', user, "name"),
        ("/api/v1/resources", b'{"name": "r \\ud83d", "type": "note"}', user, "name"),
        ("/api/v1/resources", b'{"name": "r", "type": "note", "data": {"k": "\\u0000"}}', user, "data.k"),
    ]
    for path, body, headers, field in cases:
        status, problem = await _post(http, stack.gateway + path, body, headers)
        assert status == 422, (path, problem)
        assert problem["errors"][0]["field"] == field
        assert problem["errors"][0]["message"] in (SURROGATE, "must not contain NUL characters")


async def test_unknown_fields_in_sign_in_and_key_bodies_are_422(stack: Stack, http: aiohttp.ClientSession) -> None:
    user = await stack.bearer(http, DEV_USER.login)
    login = json.dumps({**DEV_USER.login, "remember": True}).encode()
    for path, body, headers in [("/api/v1/auth/login", login, {}), ("/api/v1/keys", b'{"name": "k", "x": 1}', user)]:
        status, problem = await _post(http, stack.gateway + path, body, headers)
        assert status == 422
        assert problem["errors"][0]["field"] in ("remember", "x")


@pytest.mark.parametrize(
    "query",
    ["after=99999999999999999999", "after=-1", "after=%C2%B2", "limit=0", "limit=101", "limit=1_0"],
)
async def test_account_paging_out_of_range_is_422(stack: Stack, http: aiohttp.ClientSession, query: str) -> None:
    admin = await stack.bearer(http, DEV_ADMIN.login)
    async with http.get(f"{stack.gateway}/api/v1/admin/users?{query}", headers=admin) as response:
        assert response.status == 422
        assert (await response.json())["errors"][0]["field"] == query.split("=")[0]


async def test_a_stream_bound_that_is_not_a_number_is_422(stack: Stack, http: aiohttp.ClientSession) -> None:
    admin = await stack.bearer(http, DEV_ADMIN.login)
    async with http.get(f"{stack.gateway}/api/v1/admin/stream?max_events=%C2%B2", headers=admin) as response:
        assert response.status == 422
    async with http.get(f"{stack.gateway}/api/v1/admin/stream?max_events=1", headers=admin) as response:
        assert response.status == 200
        assert b"event: snapshot" in await response.read()


async def test_an_admin_cannot_lock_themselves_out(stack: Stack, http: aiohttp.ClientSession) -> None:
    admin = await stack.bearer(http, DEV_ADMIN.login)
    url = f"{stack.gateway}/api/v1/admin/users/1"
    for body in ({"role": "user"}, {"disabled": True}, {"tier": "free", "disabled": True}):
        async with http.patch(url, json=body, headers=admin) as response:
            assert response.status == 403
            assert (await response.json())["type"].endswith("/self-lockout")
    async with http.patch(url, json={"role": "admin", "disabled": False}, headers=admin) as response:
        assert response.status == 200  # saying what already holds is not a lock-out
    async with http.get(f"{stack.gateway}/api/v1/me", headers=admin) as response:
        me = await response.json()
        assert (me["role"], me["disabled"]) == ("admin", False)


async def test_an_address_that_is_not_one_names_no_rate_limit(stack: Stack, http: aiohttp.ClientSession) -> None:
    admin = await stack.bearer(http, DEV_ADMIN.login)
    async with http.get(f"{stack.gateway}/api/v1/admin/rate-limits/ip:not-an-address", headers=admin) as response:
        assert response.status == 404


async def test_an_empty_or_forged_cursor_is_400(stack: Stack, http: aiohttp.ClientSession) -> None:
    for cursor in ["", "aWQ6MB", "eDox"]:
        async with http.get(f"{stack.gateway}/api/v1/resources", params={"cursor": cursor}) as response:
            assert response.status == 400, cursor


@pytest.mark.parametrize("wait", ["nan", "inf", "-1", "%D9%A1"])
async def test_a_drain_wait_that_is_not_seconds_is_400(stack: Stack, http: aiohttp.ClientSession, wait: str) -> None:
    url = f"{stack.balancer.url}/lb/backends/{backend_id(stack.apiservers[0])}/drain?wait={wait}"
    async with http.post(url, headers=operator_headers()) as response:
        assert response.status == 400
    status = await stack.lb_status(http)
    assert all(not backend["draining"] for backend in status["backends"])


@pytest.mark.parametrize("identity", [b"\xff\xfe.a", b"v1.1.admin.enterprise.jwt.0.\xc3\xa9"])
async def test_an_identity_header_that_is_not_ascii_is_no_identity_at_the_balancer(
    stack: Stack, identity: bytes
) -> None:
    path = f"/lb/backends/{backend_id(stack.apiservers[0])}/drain"
    request = b"POST %b HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Internal-Identity: %b\r\n\r\n" % (
        path.encode(),
        identity,
    )
    assert statuses(await exchange(stack.balancer.port, request)) == [401]
