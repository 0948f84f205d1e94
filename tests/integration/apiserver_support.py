"""Building an apiserver app against the real test servers, signed identities for its callers, and the problem check."""

from __future__ import annotations

import asyncio
import time

import asyncpg
from aiohttp import ClientResponse, web

from apiserver.app import create_app
from apiserver.keys import CACHE
from apiserver.settings import ApiServerSettings
from shared.identity import IDENTITY_HEADER, Identity, sign_identity
from shared.settings import DEV_INTERNAL_SECRET

ADMIN = Identity(user_id=1, role="admin", tier="enterprise", method="jwt")
USER = Identity(user_id=2, role="user", tier="free", method="jwt")
OTHER = Identity(user_id=3, role="user", tier="pro", method="api_key")


def settings_for(database_url: str, redis_url: str, **extra: str) -> ApiServerSettings:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "INSTANCE_ID": "apiserver-test",
        "EXTERNAL_LATENCY_MS": "0",
        "HEARTBEAT_INTERVAL": "0.2",
        **extra,
    }
    return ApiServerSettings.from_env(env)


def as_(identity: Identity, secret: str = DEV_INTERNAL_SECRET) -> dict[str, str]:
    return {IDENTITY_HEADER: sign_identity(identity, secret)}


async def add_other_user(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO users (id, email, password_hash, role, tier)"
            " VALUES (3, 'other@example.com', 'x', 'user', 'pro')"
        )
    finally:
        await connection.close()


async def wait_subscribed(app: web.Application, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not app[CACHE].l1_enabled:
        if time.monotonic() > deadline:
            raise TimeoutError("the cache never subscribed to invalidations")
        await asyncio.sleep(0.01)


__all__ = ["ADMIN", "OTHER", "USER", "add_other_user", "as_", "create_app", "settings_for", "wait_subscribed"]


async def assert_problem(response: object, status: int, fragment: str = "") -> dict[str, object]:
    assert isinstance(response, ClientResponse)
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"] == "application/problem+json"
    body = await response.json(content_type="application/problem+json")
    assert body["status"] == status
    assert set(body) >= {"type", "title", "status", "detail", "instance", "request_id"}
    assert fragment in str(body["detail"])
    assert "Traceback" not in str(body)
    return dict(body)
