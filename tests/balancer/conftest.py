"""Fixtures for balancer tests: controllable backends on real sockets, and balancer settings for them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from balancer.settings import BalancerSettings
from tests.balancer.backend_app import STATE, create_backend


@pytest.fixture
async def backends() -> AsyncIterator[list[TestServer]]:
    servers = [TestServer(create_backend(f"b{index}"), host="127.0.0.1") for index in range(3)]
    for server in servers:
        await server.start_server()
    yield servers
    for server in servers:
        await server.close()


def state(server: TestServer) -> dict[str, object]:
    return server.app[STATE]


def settings_for(urls: list[str], **overrides: str) -> BalancerSettings:
    env: dict[str, str] = {
        "BALANCER_BACKENDS": ",".join(urls),
        "BALANCER_HEALTH_INTERVAL": "3600",  # unit tests drive checks by hand
        "BALANCER_BREAKER_RESET": "5",
        **overrides,
    }
    return BalancerSettings.from_env(env)


SettingsFactory = Callable[..., BalancerSettings]


def url_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


def backend_id(server: TestServer) -> str:
    return f"127.0.0.1:{server.port}"


def counts(servers: list[TestServer]) -> Mapping[str, int]:
    return {backend_id(server): int(str(state(server)["requests"])) for server in servers}


__all__ = ["backend_id", "counts", "settings_for", "state", "url_of", "web"]
