"""Inputs that reached a 500 (found by schemathesis) are clear 422 problems now, against real PostgreSQL and Redis."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from database.accounts import DEV_ADMIN, DEV_USER
from tests.gateway.conftest import bearer, login

pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]


@pytest.mark.parametrize("field", ["email", "password"])
async def test_a_nul_in_the_login_is_a_422_for_anyone(gateway: Client, field: str) -> None:
    body = {**DEV_USER.login, field: "user\x00@example.com"}
    response = await gateway.post("/api/v1/auth/login", json=body)
    assert response.status == 422
    problem = await response.json()
    assert response.headers["Content-Type"] == "application/problem+json"
    assert problem["errors"] == [{"field": field, "message": "must not contain NUL characters"}]


async def test_a_nul_in_a_key_name_is_a_422(gateway: Client) -> None:
    session = await login(gateway, DEV_USER)
    response = await gateway.post("/api/v1/keys", json={"name": "ci\x00"}, headers=bearer(session))
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "name"


@pytest.mark.parametrize("field", ["role", "tier", "disabled"])
async def test_null_is_not_a_value_for_an_account_field(gateway: Client, field: str) -> None:
    admin = await login(gateway, DEV_ADMIN)
    response = await gateway.patch("/api/v1/admin/users/2", json={field: None}, headers=bearer(admin))
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == field
    unchanged = await gateway.get("/api/v1/admin/users", headers=bearer(admin))
    user = next(item for item in (await unchanged.json())["data"] if item["id"] == 2)
    assert (user["role"], user["tier"], user["disabled"]) == ("user", "free", False)
