"""Login, refresh rotation and reuse detection, logout, API keys and failed-login limits, against real
PostgreSQL and Redis."""

from __future__ import annotations

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient

from database.accounts import DEV_ADMIN, DEV_USER
from tests.gateway.conftest import GatewayFactory, bearer, login
from tests.support.polling import wait_until

# The gateway app here runs over the suite's real PostgreSQL and Redis.
pytestmark = pytest.mark.integration

Client = TestClient[web.Request, web.Application]


async def test_login_returns_a_session_and_me_names_the_user(gateway: Client) -> None:
    session = await login(gateway, DEV_ADMIN)
    assert set(session) >= {"token", "refresh_token", "expires_in", "user"}
    assert session["user"]["role"] == "admin"
    assert "password_hash" not in session["user"]
    assert 0 < session["expires_in"] <= 900
    me = await gateway.get("/api/v1/me", headers=bearer(session))
    assert me.status == 200
    body = await me.json()
    assert body["email"] == DEV_ADMIN.email
    assert body["tier"] == "enterprise"
    assert body["auth_method"] == "jwt"


async def test_wrong_password_and_unknown_email_look_the_same(gateway: Client) -> None:
    wrong = await gateway.post("/api/v1/auth/login", json={"email": DEV_USER.email, "password": "nope"})
    unknown = await gateway.post("/api/v1/auth/login", json={"email": "ghost@example.com", "password": "nope"})
    assert wrong.status == unknown.status == 401
    assert (await wrong.json())["detail"] == (await unknown.json())["detail"]


async def test_failed_logins_are_limited_per_account(make_gateway: GatewayFactory) -> None:
    client = await make_gateway(LOGIN_MAX_FAILURES_PER_ACCOUNT="3")
    for _ in range(3):
        response = await client.post("/api/v1/auth/login", json={"email": DEV_USER.email, "password": "x"})
        assert response.status == 401
    blocked = await client.post(
        "/api/v1/auth/login", json={"email": DEV_USER.email.upper(), "password": DEV_USER.password}
    )
    assert blocked.status == 429
    assert int(blocked.headers["Retry-After"]) > 0
    # Other accounts are unaffected.
    assert (await client.post("/api/v1/auth/login", json=DEV_ADMIN.login)).status == 200


async def test_login_validates_its_body(gateway: Client) -> None:
    assert (await gateway.post("/api/v1/auth/login", json={"email": "a@b.c"})).status == 422
    assert (
        await gateway.post("/api/v1/auth/login", data="email=x", headers={"Content-Type": "text/plain"})
    ).status == 415
    assert (
        await gateway.post("/api/v1/auth/login", data="{", headers={"Content-Type": "application/json"})
    ).status == 400


async def test_refresh_rotates_and_reuse_revokes_the_family(gateway: Client) -> None:
    session = await login(gateway, DEV_USER)
    first = session["refresh_token"]
    rotated = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert rotated.status == 200
    second = await rotated.json()
    assert second["refresh_token"] != first
    assert (await gateway.get("/api/v1/me", headers=bearer(second))).status == 200

    reuse = await gateway.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert reuse.status == 401
    # The whole family is gone: the newest refresh token and the access tokens issued from it.
    assert (await gateway.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})).status == 401
    assert (await gateway.get("/api/v1/me", headers=bearer(second))).status == 401
    assert (await gateway.get("/api/v1/me", headers=bearer(session))).status == 401
    # Another login of the same account is a different family and still works.
    other = await login(gateway, DEV_USER)
    assert (await gateway.get("/api/v1/me", headers=bearer(other))).status == 200


async def test_unknown_refresh_token_is_refused(gateway: Client) -> None:
    assert (await gateway.post("/api/v1/auth/refresh", json={"refresh_token": "made-up"})).status == 401


async def test_logout_revokes_access_and_refresh(gateway: Client) -> None:
    session = await login(gateway, DEV_USER)
    other = await login(gateway, DEV_USER)
    assert (await gateway.post("/api/v1/auth/logout", headers=bearer(session))).status == 204
    assert (await gateway.get("/api/v1/me", headers=bearer(session))).status == 401
    assert (await gateway.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})).status == 401
    assert (await gateway.get("/api/v1/me", headers=bearer(other))).status == 200
    assert (await gateway.post("/api/v1/auth/logout")).status == 401


async def test_refresh_tokens_are_stored_hashed(gateway: Client, database_url: str) -> None:
    session = await login(gateway, DEV_USER)
    connection = await asyncpg.connect(database_url)
    try:
        stored = await connection.fetch("SELECT token_hash FROM refresh_tokens")
    finally:
        await connection.close()
    assert stored
    assert all(session["refresh_token"].encode() not in bytes(row["token_hash"]) for row in stored)


async def test_api_key_lifecycle(gateway: Client, redis_url: str) -> None:
    session = await login(gateway, DEV_USER)
    created = await gateway.post("/api/v1/keys", json={"name": "ci"}, headers=bearer(session))
    assert created.status == 201
    body = await created.json()
    key = body["key"]
    assert key.startswith(body["prefix"])

    listed = await (await gateway.get("/api/v1/keys", headers=bearer(session))).json()
    assert [item["prefix"] for item in listed["data"]] == [body["prefix"]]
    assert "key" not in listed["data"][0]

    me = await gateway.get("/api/v1/me", headers={"X-API-Key": key})
    assert me.status == 200
    assert (await me.json())["auth_method"] == "api_key"
    assert me.headers["X-RateLimit-Limit"] == "1000"  # the owner's tier
    # A key cannot mint keys.
    assert (await gateway.post("/api/v1/keys", json={"name": "x"}, headers={"X-API-Key": key})).status == 403

    assert (await gateway.delete(f"/api/v1/keys/{body['id']}", headers=bearer(session))).status == 204
    assert (await gateway.get("/api/v1/me", headers={"X-API-Key": key})).status == 401
    assert (await gateway.delete(f"/api/v1/keys/{body['id']}", headers=bearer(session))).status == 404


async def test_revoked_key_stops_on_every_replica_within_a_second(make_gateway: GatewayFactory) -> None:
    first, second = await make_gateway(), await make_gateway()
    session = await login(first, DEV_USER)
    key = await (await first.post("/api/v1/keys", json={"name": "x"}, headers=bearer(session))).json()
    assert (await second.get("/api/v1/me", headers={"X-API-Key": key["key"]})).status == 200  # cached there now
    assert (await first.delete(f"/api/v1/keys/{key['id']}", headers=bearer(session))).status == 204

    async def refused_on_second() -> bool:
        return (await second.get("/api/v1/me", headers={"X-API-Key": key["key"]})).status == 401

    await wait_until(refused_on_second, within=1.0, interval=0.05)


async def test_garbage_api_key_is_refused(gateway: Client) -> None:
    assert (await gateway.get("/api/v1/me", headers={"X-API-Key": "sak_000000000000_nope"})).status == 401
    assert (await gateway.get("/api/v1/me", headers={"X-API-Key": "x" * 500})).status == 401


async def test_admin_changes_tier_and_role(gateway: Client, redis_url: str) -> None:
    admin = await login(gateway, DEV_ADMIN)
    changed = await gateway.patch("/api/v1/admin/users/2", json={"tier": "pro", "role": "admin"}, headers=bearer(admin))
    assert changed.status == 200
    assert (await changed.json())["tier"] == "pro"
    user = await login(gateway, DEV_USER)
    assert user["user"]["role"] == "admin"
    response = await gateway.get("/api/v1/me", headers=bearer(user))
    assert response.headers["X-RateLimit-Limit"] == "10000"
    bad = await gateway.patch("/api/v1/admin/users/2", json={"tier": "gold"}, headers=bearer(admin))
    assert bad.status == 422
    assert (await gateway.patch("/api/v1/admin/users/999", json={"tier": "pro"}, headers=bearer(admin))).status == 404
    client = aioredis.from_url(redis_url)
    try:
        assert await client.exists("rl:{user:2}")
    finally:
        await client.aclose()
