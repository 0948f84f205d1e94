"""Real PostgreSQL and Redis for the test suite.

Session-scoped servers are started once (embedded, on free ports, in scratch directories) and migrated once;
the function-scoped `database_url` / `redis_url` fixtures reset their state before each test, so tests are
independent without paying a server start each. Setting TEST_DATABASE_URL / TEST_REDIS_URL points the suite at
existing servers instead (they are truncated and flushed!); fault tests that kill servers then skip, because
they use `own_postgres` / `own_redis`, private servers started for one test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from database.migrate import run_migrations
from database.seed import seed
from stack.services.ports import free_port
from stack.services.postgres import EmbeddedPostgres
from stack.services.redis import EmbeddedRedis
from tests.helpers import (
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    ExternalServer,
    Server,
    run_sync,
    server_root,
    skip_unless_embedded_servers,
)

_TABLES = "resources, api_keys, refresh_tokens, users"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    """One migrated PostgreSQL for the whole run."""
    external = os.environ.get(TEST_DATABASE_URL)
    if external:
        run_sync(run_migrations(external))
        yield ExternalServer(external)
        return
    with server_root("scalable-api-test-pg-") as root, EmbeddedPostgres(root / "pg", free_port()) as server:
        run_sync(run_migrations(server.url))
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Server]:
    """One Redis for the whole run."""
    external = os.environ.get(TEST_REDIS_URL)
    if external:
        yield ExternalServer(external)
        return
    with (
        server_root("scalable-api-test-redis-") as root,
        EmbeddedRedis(root / "redis", free_port()) as server,
    ):
        yield server


@pytest.fixture
async def database_url(postgres_server: Server) -> str:
    """The shared database, emptied and holding only the two dev accounts (ids 1 and 2)."""
    connection = await asyncpg.connect(postgres_server.url)
    try:
        await connection.execute(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()
    await seed(postgres_server.url, resources=0)
    return postgres_server.url


@pytest.fixture
async def redis_url(redis_server: Server) -> str:
    """The shared Redis, flushed."""
    client = aioredis.from_url(redis_server.url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    return redis_server.url


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A private, migrated PostgreSQL this test may stop, kill and restart."""
    skip_unless_embedded_servers()
    with server_root("scalable-api-own-pg-") as root, EmbeddedPostgres(root / "pg", free_port()) as server:
        run_sync(run_migrations(server.url))
        yield server


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A private Redis this test may stop, kill and restart."""
    skip_unless_embedded_servers()
    with server_root("scalable-api-own-redis-") as root, EmbeddedRedis(root / "redis", free_port()) as server:
        yield server
