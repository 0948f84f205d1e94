"""GET /api/v1/external: the flaky dependency behind a breaker, through its whole cycle, on an injected clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from apiserver.keys import EXTERNAL
from tests.integration.apiserver_support import ADMIN, USER, as_, create_app, settings_for
from tests.support.clock import ManualClock

pytestmark = pytest.mark.integration
Client = TestClient[web.Request, web.Application]


async def test_open_half_open_close_cycle(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]], database_url: str, redis_url: str
) -> None:
    clock = ManualClock(500.0)
    settings = settings_for(
        database_url, redis_url, EXTERNAL_BREAKER_FAIL_MAX="3", EXTERNAL_BREAKER_RESET="10", EXTERNAL_FAILURE_RATE="1"
    )
    api = await aiohttp_client(create_app(settings, clock=clock))
    for _ in range(3):
        assert (await api.get("/api/v1/external")).status == 502
    refused = await api.get("/api/v1/external")
    assert refused.status == 503
    assert refused.headers["Retry-After"] == "10"
    assert (await refused.json(content_type="application/problem+json"))["type"].endswith("circuit-open")

    clock.advance(10)
    api.app[EXTERNAL].failure_rate = 0.0
    trial = await api.get("/api/v1/external")
    assert trial.status == 200
    assert (await trial.json())["breaker"] == "closed"
    metrics = await (await api.get("/metrics")).text()
    assert 'circuit_breaker_state{name="external-api"} 0.0' in metrics

    api.app[EXTERNAL].failure_rate = 1.0
    for _ in range(3):
        await api.get("/api/v1/external")
    breakers = await (await api.get("/internal/breakers", headers=as_(ADMIN))).json()
    external = next(b for b in breakers["breakers"] if b["name"] == "external-api")
    assert external["state"] == "open"
    assert (await api.post("/internal/breakers/external-api/reset", headers=as_(USER))).status == 403
    reset = await api.post("/internal/breakers/external-api/reset", headers=as_(ADMIN))
    assert (await reset.json())["state"] == "closed"
    assert (await api.post("/internal/breakers/nope/reset", headers=as_(ADMIN))).status == 404
