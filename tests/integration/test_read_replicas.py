"""Read replicas with a real streaming standby (pg_basebackup -R): reads go to the replica when it has
caught up, the writer reads its own writes while the replica lags, and a dead replica costs nothing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from database.seed import seed
from stack.services.ports import free_port
from stack.services.postgres import EmbeddedPostgres
from stack.services.replica import create_streaming_replica
from tests.integration.apiserver_support import USER, as_, create_app, settings_for, wait_subscribed
from tests.support.polling import wait_until

pytestmark = pytest.mark.integration
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def replica(own_postgres: EmbeddedPostgres) -> AsyncIterator[EmbeddedPostgres]:
    await seed(own_postgres.url, resources=20)
    standby = await asyncio.to_thread(
        create_streaming_replica, own_postgres, own_postgres.data_dir.parent / "replica", free_port()
    )
    await asyncio.to_thread(standby.start)
    try:
        yield standby
    finally:
        await asyncio.to_thread(standby.stop)


@pytest.fixture
async def api(
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
    own_postgres: EmbeddedPostgres,
    replica: EmbeddedPostgres,
    redis_url: str,
) -> Client:
    settings = settings_for(own_postgres.url, redis_url, DATABASE_REPLICA_URLS=replica.url)
    client = await aiohttp_client(create_app(settings))
    await wait_subscribed(client.app)
    return client


async def queries(api: Client) -> dict[str, float]:
    text = await (await api.get("/metrics")).text()
    found = re.findall(r'^db_queries_total\{target="(\w+)"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return {target: float(value) for target, value in found}


async def superuser(server: EmbeddedPostgres) -> asyncpg.Connection:
    # The local socket trusts the server's own superuser: the test controls replay with it.
    return await asyncpg.connect(
        host=str(server.socket_dir), port=server.port, user="postgres", database=server.database
    )


async def test_cache_miss_reads_go_to_a_caught_up_replica(api: Client) -> None:
    limits = iter(range(1, 101))

    async def replica_is_used() -> bool:
        before = await queries(api)
        # A page size not asked before is a cache miss, so each poll really reads from the database.
        await api.get("/api/v1/resources", params={"limit": str(next(limits))})
        after = await queries(api)
        return after.get("replica", 0) > before.get("replica", 0)

    await wait_until(replica_is_used, within=10)
    response = await api.get("/api/v1/resources/7")
    assert response.status == 200
    assert (await response.json())["id"] == 7


async def test_the_writer_reads_its_own_write_while_the_replica_lags(api: Client, replica: EmbeddedPostgres) -> None:
    connection = await superuser(replica)
    try:
        await connection.execute("SELECT pg_wal_replay_pause()")
        created = await api.post("/api/v1/resources", json={"name": "Fresh", "type": "memo"}, headers=as_(USER))
        assert created.status == 201
        new_id = (await created.json())["id"]
        before = await queries(api)
        listed = await (await api.get("/api/v1/resources", params={"type": "memo"})).json()
        assert [item["id"] for item in listed["items"]] == [new_id]
        assert (await api.get(f"/api/v1/resources/{new_id}")).status == 200
        after = await queries(api)
        assert after.get("replica", 0) == before.get("replica", 0)  # the lagging replica was not asked
        assert await connection.fetchval("SELECT count(*) FROM resources WHERE id = $1", new_id) == 0
    finally:
        await connection.execute("SELECT pg_wal_replay_resume()")
        await connection.close()


async def test_a_dead_replica_is_skipped(api: Client, replica: EmbeddedPostgres) -> None:
    await asyncio.to_thread(replica.kill)
    for resource_id in range(1, 15):
        response = await api.get(f"/api/v1/resources/{resource_id}")
        assert response.status == 200, await response.text()
    listed = await api.get("/api/v1/resources", params={"limit": "5", "type": "event"})
    assert listed.status == 200
