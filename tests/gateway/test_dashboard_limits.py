"""The dashboard's files stay reachable when the caller's address has spent its anonymous API budget: they never
touch the API's limiter, and only their own in-process guard (absurd rates) can refuse them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler

from gateway.auth.principal import anonymous
from gateway.dashboard import GUARD_LIMIT, GUARD_WINDOW, add_dashboard_routes
from gateway.keys import LIMITER, PRINCIPAL
from gateway.ratelimit.base import Decision
from gateway.ratelimit.local import LocalRateLimiter
from shared.context import request_middleware
from shared.metrics import Metrics
from tests.gateway.conftest import GatewayFactory
from tests.support.clock import ManualClock

Client = TestClient[web.Request, web.Application]
ANONYMOUS_BUDGET = 3
ADDRESS_KEY = "ip:127.0.0.1"  # the anonymous limit key of the test client's address


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text('<!doctype html><script type="module" src="/dashboard/assets/app-1a2b.js">')
    (root / "assets" / "app-1a2b.js").write_text("console.log('dashboard')")
    return root


@pytest.mark.integration
async def test_dashboard_files_load_after_the_anonymous_budget_is_spent(
    make_gateway: GatewayFactory, dist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await make_gateway(RATE_LIMIT_ANONYMOUS=str(ANONYMOUS_BUDGET), DASHBOARD_DIR=str(dist))
    for _ in range(ANONYMOUS_BUDGET):
        assert (await client.get("/api/v1/status")).status == 200
    refused = await client.get("/api/v1/status")
    assert refused.status == 429
    assert (await refused.json())["type"].endswith("rate-limited")

    limiter = client.app[LIMITER]
    keys_hit: list[str] = []
    real_hit = limiter.hit

    async def counting_hit(key: str, limit: int, *, revocation_keys: Sequence[str] = (), cost: int = 1) -> Decision:
        keys_hit.append(key)
        return await real_hit(key, limit, revocation_keys=revocation_keys, cost=cost)

    monkeypatch.setattr(limiter, "hit", counting_hit)
    before = await limiter.peek(ADDRESS_KEY, ANONYMOUS_BUDGET)

    redirect = await client.get("/dashboard", allow_redirects=False)
    assert redirect.status == 308
    for path in ("/dashboard/", "/dashboard/backends/b1", "/dashboard/assets/app-1a2b.js"):
        response = await client.get(path)
        assert response.status == 200, path
        assert "X-RateLimit-Limit" not in response.headers, path  # the API's limits said nothing about it
    assert "app-1a2b.js" in await (await client.get("/dashboard/")).text()

    assert keys_hit == []  # not one limiter call (so no Redis round trip) for the dashboard's files
    after = await limiter.peek(ADDRESS_KEY, ANONYMOUS_BUDGET)
    assert (after.remaining, after.allowed) == (before.remaining, before.allowed) == (0, False)
    assert (await client.get("/api/v1/status")).status == 429  # the API's limit holds as before
    assert keys_hit == [ADDRESS_KEY]


async def test_the_guard_refuses_only_absurd_rates_per_address(
    aiohttp_client: Callable[..., Awaitable[Client]],
) -> None:
    clock = ManualClock()
    app = web.Application()
    caller = {"address": "192.0.2.1"}

    @web.middleware
    async def as_anonymous(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[PRINCIPAL] = anonymous(caller["address"])
        return await handler(request)

    app.middlewares.extend([request_middleware(metrics=Metrics("gateway")), as_anonymous])  # problems → 429
    add_dashboard_routes(app, guard=LocalRateLimiter(GUARD_WINDOW, clock=clock))
    client = await aiohttp_client(app)

    for _ in range(GUARD_LIMIT):
        assert (await client.get("/dashboard", allow_redirects=False)).status == 308
    refused = await client.get("/dashboard", allow_redirects=False)
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    assert int(refused.headers["Retry-After"]) >= 1

    caller["address"] = "192.0.2.2"  # another address has its own allowance
    assert (await client.get("/dashboard", allow_redirects=False)).status == 308
    caller["address"] = "192.0.2.1"
    clock.advance(GUARD_WINDOW.window + GUARD_WINDOW.width)
    assert (await client.get("/dashboard", allow_redirects=False)).status == 308
