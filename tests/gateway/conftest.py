"""Fixtures for the gateway tests: settings over the real PostgreSQL/Redis, an echo upstream that shows what the
gateway forwards, and a logged-in client helper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from database.accounts import DevAccount
from gateway.app import create_app
from gateway.settings import GatewaySettings

GatewayFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


async def echo(request: web.Request) -> web.Response:
    """Answers with what it received, so tests can see the forwarded headers and body."""
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.raw_path,
            "headers": dict(request.headers.items()),
            "body": body.decode(errors="replace"),
        }
    )


@pytest.fixture
async def echo_upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> TestServer:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    return await aiohttp_server(app)


def gateway_env(database_url: str, redis_url: str, balancer_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BALANCER_URL": balancer_url,
        "LOG_LEVEL": "warning",
        "INSTANCE_ID": "gateway-test",
    }
    env.update(overrides)
    return env


@pytest.fixture
def make_gateway(
    database_url: str,
    redis_url: str,
    echo_upstream: TestServer,
    aiohttp_client: Callable[..., Awaitable[TestClient[web.Request, web.Application]]],
) -> GatewayFactory:
    async def build(**overrides: str) -> TestClient[web.Request, web.Application]:
        env = gateway_env(database_url, redis_url, str(echo_upstream.make_url("")).rstrip("/"), **overrides)
        return await aiohttp_client(create_app(GatewaySettings.from_env(env)))

    return build


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> TestClient[web.Request, web.Application]:
    return await make_gateway()


async def login(client: TestClient[web.Request, web.Application], account: DevAccount) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json=account.login)
    assert response.status == 200, await response.text()
    session: dict[str, Any] = await response.json()
    return session


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['token']}"}
