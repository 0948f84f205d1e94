"""End to end through real processes: gateway → balancer → apiservers, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from database.accounts import DEV_ADMIN, DEV_USER
from stack.services.redis import EmbeddedRedis
from tests.support.polling import wait_until
from tests.support.stack import Stack, running_stack, start_stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path, database_url: str, redis_url: str) -> Iterator[Stack]:
    with running_stack(tmp_path, database_url, redis_url) as running:
        yield running


async def _json(response: aiohttp.ClientResponse, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


async def _routable(http: aiohttp.ClientSession, stack: Stack) -> None:
    async def every_instance_answers() -> bool:
        seen = set()
        for _ in range(10):
            async with http.get(stack.gateway + "/api/v1/status") as response:
                if response.status == 200:
                    seen.add((await response.json())["instanceId"])
        return len(seen) == len(stack.apiservers)

    await wait_until(every_instance_answers, within=15)


async def test_walkthrough(stack: Stack, redis_url: str) -> None:
    base = stack.gateway
    async with aiohttp.ClientSession() as http:
        await _routable(http, stack)
        session = await _json(await http.post(base + "/api/v1/auth/login", json=DEV_ADMIN.login))
        auth = {"Authorization": f"Bearer {session['token']}"}
        assert (await _json(await http.get(base + "/api/v1/me", headers=auth)))["role"] == "admin"

        created = await _json(
            await http.post(base + "/api/v1/resources", json={"name": "walk", "type": "note"}, headers=auth), 201
        )
        listed = await _json(await http.get(base + "/api/v1/resources", headers=auth))
        assert created["id"] in [item["id"] for item in listed["items"]]
        fetched = await _json(await http.get(f"{base}/api/v1/resources/{created['id']}", headers=auth))
        assert fetched["name"] == "walk"

        instances: Counter[str] = Counter()
        for _ in range(20):
            instances[(await _json(await http.get(base + "/api/v1/status")))["instanceId"]] += 1
        assert len(instances) == 2

        await _admin_views(http, base, auth, stack)
        await _cache_clear_keeps_sessions_and_limits(http, base, auth, session, redis_url)

        assert (await _json(await http.get(base + "/health")))["status"] == "ok"
        async with http.get(base + "/metrics") as metrics:
            text = await metrics.text()
        assert 'ratelimit_decisions_total{decision="allowed",tier="enterprise"}' in text
        assert 'http_requests_total{method="GET",route="/api/v1/status"' in text
        assert (await _json(await http.get(stack.balancer.url + "/lb/status")))["backends"]
        async with http.get(base + "/lb/status") as hidden:
            assert hidden.status == 404


async def _admin_views(http: aiohttp.ClientSession, base: str, auth: dict[str, str], stack: Stack) -> None:
    async def both_heartbeats() -> bool:
        dashboard = await _json(await http.get(base + "/api/v1/admin/dashboard", headers=auth))
        return isinstance(dashboard["apiservers"], list) and len(dashboard["apiservers"]) == 2

    await wait_until(both_heartbeats, within=10)
    dashboard = await _json(await http.get(base + "/api/v1/admin/dashboard", headers=auth))
    assert dashboard["gateway"]["rate_limiter"]["backend"] == "redis"
    assert dashboard["gateway"]["rate_limit_decisions"]["enterprise"]["allowed"] > 0
    assert "hit_ratio" in str(dashboard["apiservers"][0]["cache"]) or dashboard["apiservers"][0]["cache"]
    assert len(dashboard["balancer"]["backends"]) == 2

    breakers = await _json(await http.get(base + "/api/v1/admin/circuit-breakers", headers=auth))
    assert len(breakers["apiservers"]) == 2
    for answer in breakers["apiservers"].values():
        assert {b["name"] for b in answer["breakers"]} >= {"external-api"}
    reset = await _json(await http.post(base + "/api/v1/admin/circuit-breakers/external-api/reset", headers=auth))
    assert reset["scope"] == "apiservers"
    name = breakers["balancer"][0]["name"]
    reset = await _json(await http.post(f"{base}/api/v1/admin/circuit-breakers/{name}/reset", headers=auth))
    assert reset["scope"] == "balancer"
    missing = await http.post(base + "/api/v1/admin/circuit-breakers/no-such-breaker/reset", headers=auth)
    assert missing.status == 404

    async with http.get(base + "/api/v1/admin/stream?max_events=1", headers=auth) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        body = await stream.text()
    assert "event: snapshot" in body


async def _cache_clear_keeps_sessions_and_limits(
    http: aiohttp.ClientSession, base: str, auth: dict[str, str], session: dict[str, Any], redis_url: str
) -> None:
    stats = await _json(await http.get(base + "/api/v1/admin/cache", headers=auth))
    assert len(stats["apiservers"]) == 2
    client = aioredis.from_url(redis_url)
    try:
        counted_before = int(await client.hget("rl:{user:1}", "t") or 0)  # the limiter's running total
        assert counted_before > 0
        assert [key async for key in client.scan_iter("cache:res:*")]
        cleared = await _json(await http.post(base + "/api/v1/admin/cache/clear", headers=auth))
        assert cleared["cleared"] is True
        # Cached entries are gone (the apiservers keep only their list-generation counter).
        assert [key async for key in client.scan_iter("cache:res:*")] == []
        assert int(await client.hget("rl:{user:1}", "t") or 0) >= counted_before
    finally:
        await client.aclose()
    refreshed = await http.post(base + "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refreshed.status == 200
    assert (await _json(await http.get(base + "/api/v1/me", headers=auth)))["email"] == DEV_ADMIN.email


async def test_exact_limit_across_two_gateways(tmp_path: Path, database_url: str, redis_url: str) -> None:
    """50 concurrent clients on one identity through 2 gateway processes: exactly the limit is admitted."""
    limit, total = 120, 300
    stack = start_stack(tmp_path, database_url, redis_url, apiservers=1, gateways=2, RATE_LIMIT_FREE=str(limit))
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as http:
            login = await http.post(stack.gateway + "/api/v1/auth/login", json=DEV_USER.login)
            auth = {"Authorization": f"Bearer {(await _json(login))['token']}"}
            queue: asyncio.Queue[int] = asyncio.Queue()
            for index in range(total):
                queue.put_nowait(index)
            results: list[tuple[int, str | None]] = []

            async def client() -> None:
                while not queue.empty():
                    index = queue.get_nowait()
                    url = stack.gateways[index % 2].url + "/api/v1/status"
                    async with http.get(url, headers=auth) as response:
                        await response.read()
                        results.append((response.status, response.headers.get("X-RateLimit-Remaining")))

            await asyncio.gather(*(client() for _ in range(50)))
    finally:
        stack.stop()
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: limit, 429: total - limit}
    # Every admitted request saw a distinct count: no two replicas ever read the same counter state.
    remaining = sorted(int(value or -1) for status, value in results if status == 200)
    assert remaining == list(range(limit))


async def test_gateway_survives_redis_outage(
    tmp_path: Path, database_url: str, redis_url: str, own_redis: EmbeddedRedis
) -> None:
    stack = start_stack(tmp_path, database_url, redis_url, apiservers=1, REDIS_URL=own_redis.url)
    base = stack.gateway
    try:
        async with aiohttp.ClientSession() as http:
            login = DEV_ADMIN.login
            session = await _json(await http.post(base + "/api/v1/auth/login", json=login))
            auth = {"Authorization": f"Bearer {session['token']}"}
            await _json(await http.get(base + "/api/v1/status", headers=auth))

            own_redis.stop()
            for _ in range(5):
                response = await http.get(base + "/api/v1/status", headers=auth)
                assert response.status == 200
                assert response.headers["X-RateLimit-Limit"] == "100000"
            assert (await http.post(base + "/api/v1/auth/login", json=login)).status == 200
            dashboard = await _json(await http.get(base + "/api/v1/admin/dashboard", headers=auth))
            assert dashboard["gateway"]["rate_limiter"]["backend"] == "local"
            async with http.get(base + "/ready") as ready:
                assert ready.status == 200, "still serving (local limits), so still ready: degraded"
                body = await ready.json()
                assert body["status"] == "degraded"
                assert body["checks"]["redis"] != "ok"

            own_redis.start()
            client = aioredis.from_url(own_redis.url)
            try:

                async def counted_in_redis_again() -> bool:
                    await http.get(base + "/api/v1/status", headers=auth)
                    return bool(await client.exists("rl:{user:1}"))

                await wait_until(counted_in_redis_again, within=15, interval=0.2)
            finally:
                await client.aclose()
            dashboard = await _json(await http.get(base + "/api/v1/admin/dashboard", headers=auth))
            assert dashboard["gateway"]["rate_limiter"]["backend"] == "redis"
    finally:
        stack.stop()
