"""One real stack for the attack suite (package-scoped: attacks do not break it), with three accounts.

Login throttling is lifted on this stack so fuzzing cannot lock the accounts other tests use; the brute-force
test starts a gateway of its own with the default limits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest

from database.accounts import DEV_ADMIN, DEV_USER
from shared.passwords import hash_password
from shared.settings import DEV_JWT_SECRET
from tests.support.servers import Server, reset_state, run_sync, server_root
from tests.support.stack import UNLIMITED, Stack, start_stack

OTHER_LOGIN = {"email": "other@example.com", "password": "other-pass-123"}
NO_LOGIN_LIMITS = {"LOGIN_MAX_FAILURES_PER_ACCOUNT": "1000000", "LOGIN_MAX_FAILURES_PER_ADDRESS": "1000000"}


async def add_other_user(database_url: str) -> None:
    password_hash = await asyncio.to_thread(hash_password, OTHER_LOGIN["password"])
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO users (email, password_hash, role, tier) VALUES ($1, $2, 'user', 'free')",
            OTHER_LOGIN["email"],
            password_hash,
        )
    finally:
        await connection.close()


@pytest.fixture(scope="package")
def stack(postgres_server: Server, redis_server: Server) -> Iterator[Stack]:
    run_sync(reset_state(postgres_server.url, redis_server.url))
    run_sync(add_other_user(postgres_server.url))
    with server_root("scalable-api-security-") as tmp:
        running = start_stack(
            tmp,
            postgres_server.url,
            redis_server.url,
            apiserver_env={"EXTERNAL_FAILURE_RATE": "0"},
            rate_limits=UNLIMITED,
            LOGIN_MAX_FAILURES_PER_ACCOUNT=NO_LOGIN_LIMITS["LOGIN_MAX_FAILURES_PER_ACCOUNT"],
            LOGIN_MAX_FAILURES_PER_ADDRESS=NO_LOGIN_LIMITS["LOGIN_MAX_FAILURES_PER_ADDRESS"],
        )
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture
async def http() -> Iterator[aiohttp.ClientSession]:  # type: ignore[misc]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


@dataclass(frozen=True)
class Principals:
    """Headers for each kind of caller."""

    anonymous: dict[str, str]
    user: dict[str, str]
    other: dict[str, str]
    admin: dict[str, str]
    revoked_key: dict[str, str]
    expired_token: dict[str, str]

    def items(self) -> list[tuple[str, dict[str, str]]]:
        return [(name, getattr(self, name)) for name in PRINCIPALS]


PRINCIPALS = ("anonymous", "user", "other", "admin", "revoked_key", "expired_token")


def expired_token(user_id: int = 2) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "scalable-api",
        "aud": "scalable-api",
        "sub": str(user_id),
        "iat": now - 3600,
        "nbf": now - 3600,
        "exp": now - 1800,
        "jti": "expired-token-0001",
        "role": "user",
        "tier": "free",
    }
    return jwt.encode(claims, DEV_JWT_SECRET, algorithm="HS256")


async def principals(http: aiohttp.ClientSession, stack: Stack) -> Principals:
    user = await stack.bearer(http, DEV_USER.login)
    async with http.post(stack.gateway + "/api/v1/keys", json={"name": "to revoke"}, headers=user) as response:
        assert response.status == 201, await response.text()
        key = await response.json()
    async with http.delete(f"{stack.gateway}/api/v1/keys/{key['id']}", headers=user) as response:
        assert response.status == 204
    return Principals(
        anonymous={},
        user=user,
        other=await stack.bearer(http, OTHER_LOGIN),
        admin=await stack.bearer(http, DEV_ADMIN.login),
        revoked_key={"X-API-Key": key["key"]},
        expired_token={"Authorization": f"Bearer {expired_token()}"},
    )
