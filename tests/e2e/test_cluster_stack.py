"""The whole stack on a Redis Cluster (``REDIS_URL=redis+cluster://…``): every Redis user works across slots.

Gateway (limiter, revocation markers, heartbeat reads) and apiservers (the two-level cache's scripts, pub/sub
invalidation, heartbeats, the admin cache clear) all talk to a real 3-master cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio.cluster import RedisCluster

from database.accounts import DEV_ADMIN
from shared.resources import make_redis_cluster
from stack.services.cluster import EmbeddedCluster
from tests.support.polling import wait_until
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path, database_url: str, redis_cluster: EmbeddedCluster) -> Iterator[Stack]:
    redis_cluster.wait_until_healthy()
    with running_stack(tmp_path, database_url, redis_cluster.url) as running:
        yield running


async def _json(response: aiohttp.ClientResponse, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


async def _etag_everywhere(http: aiohttp.ClientSession, stack: Stack, resource_id: int, etag: str) -> bool:
    """Every apiserver, asked directly, answers the resource with ``etag`` (its L1 was invalidated)."""
    for apiserver in stack.apiservers:
        async with http.get(f"{apiserver.url}/api/v1/resources/{resource_id}") as response:
            if response.headers.get("ETag") != etag:
                return False
    return True


async def test_the_stack_on_a_redis_cluster(stack: Stack, redis_cluster: EmbeddedCluster) -> None:
    base = stack.gateway
    async with aiohttp.ClientSession() as http:
        await wait_until(lambda: stack.every_apiserver_serves(http), within=20)
        session = await _json(await http.post(base + "/api/v1/auth/login", json=DEV_ADMIN.login))
        auth = {"Authorization": f"Bearer {session['token']}"}

        created = await _json(
            await http.post(base + "/api/v1/resources", json={"name": "on a cluster", "type": "note"}, headers=auth),
            201,
        )
        path = f"{base}/api/v1/resources/{created['id']}"
        first = await http.get(path, headers=auth)
        assert first.status == 200
        assert int(first.headers["X-RateLimit-Remaining"]) < int(first.headers["X-RateLimit-Limit"])
        # Read it through every apiserver so each holds it in L1; then a write must reach them all.
        assert await _etag_everywhere(http, stack, created["id"], first.headers["ETag"])
        patched = await http.patch(path, json={"name": "renamed"}, headers=auth)
        assert patched.status == 200, await patched.text()
        new_etag = patched.headers["ETag"]
        await wait_until(lambda: _etag_everywhere(http, stack, created["id"], new_etag), within=10)

        cache = await _json(await http.get(base + "/api/v1/admin/cache", headers=auth))
        assert len(cache["apiservers"]) == len(stack.apiservers)  # heartbeats read across slots
        cleared = await _json(await http.post(base + "/api/v1/admin/cache/clear", headers=auth))
        assert cleared["cleared"] is True
        client: RedisCluster = make_redis_cluster(redis_cluster.url)
        try:
            assert [key async for key in client.scan_iter(match="cache:res:*")] == []
            assert await client.exists("rl:{user:1}")  # a cache clear never touches rate-limit state
        finally:
            await client.aclose()

        assert (await http.post(base + "/api/v1/auth/logout", headers=auth)).status == 204
        revoked = await http.get(base + "/api/v1/me", headers=auth)
        assert revoked.status == 401  # the revocation marker shares the limiter's slot and is read in its call
