"""Migrations, seed data and the embedded servers, against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
import redis.exceptions

from database.accounts import DEV_ACCOUNTS
from database.migrate import MigrationChecksumError, load_migrations, run_migrations
from database.seed import seed
from shared.passwords import verify_password
from stack.services.postgres import EmbeddedPostgres
from stack.services.redis import EmbeddedRedis

pytestmark = pytest.mark.integration


async def _fetchval(url: str, query: str) -> object:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


@pytest.fixture
async def fresh_schema_url(database_url: str) -> AsyncIterator[str]:
    """A DSN whose search_path is a new, empty schema: a blank database for migration tests, on the shared
    server."""
    schema = f"migration_test_{secrets.token_hex(4)}"
    await _fetchval(database_url, f"CREATE SCHEMA {schema}")
    try:
        separator = "&" if "?" in database_url else "?"
        yield f"{database_url}{separator}search_path={schema}"
    finally:
        await _fetchval(database_url, f"DROP SCHEMA {schema} CASCADE")


async def test_migrations_are_idempotent(database_url: str) -> None:
    assert await run_migrations(database_url) == []
    assert await _fetchval(database_url, "SELECT count(*) FROM schema_migrations") == len(load_migrations())


async def test_concurrent_runners_apply_each_migration_once(fresh_schema_url: str) -> None:
    results = await asyncio.gather(*(run_migrations(fresh_schema_url) for _ in range(3)))

    versions = [migration.version for migration in load_migrations()]
    assert sorted(results, key=len) == [[], [], versions]
    assert await _fetchval(fresh_schema_url, "SELECT count(*) FROM schema_migrations") == len(versions)
    assert await _fetchval(fresh_schema_url, "SELECT count(*) FROM users") == 0


async def test_changed_migration_is_refused(fresh_schema_url: str, tmp_path: Path) -> None:
    migration = tmp_path / "0001_things.sql"
    migration.write_text("CREATE TABLE things (id int);")
    assert await run_migrations(fresh_schema_url, source=tmp_path) == ["0001"]

    migration.write_text("CREATE TABLE things (id bigint);")
    with pytest.raises(MigrationChecksumError, match="0001_things"):
        await run_migrations(fresh_schema_url, source=tmp_path)


async def test_failed_migration_leaves_no_trace(fresh_schema_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (id int); SELECT no_such_function();")
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await run_migrations(fresh_schema_url, source=tmp_path)

    assert await _fetchval(fresh_schema_url, "SELECT array_agg(version) FROM schema_migrations") == ["0001"]
    assert await _fetchval(fresh_schema_url, "SELECT to_regclass('half') IS NULL") is True


async def test_seed_creates_dev_accounts_with_argon2id_hashes(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT email, password_hash, role, tier FROM users ORDER BY id")
    finally:
        await connection.close()

    assert [(row["email"], row["role"], row["tier"]) for row in rows] == [
        (account.email, account.role, account.tier) for account in DEV_ACCOUNTS
    ]
    for row, account in zip(rows, DEV_ACCOUNTS, strict=True):
        assert row["password_hash"].startswith("$argon2id$")
        assert verify_password(row["password_hash"], account.password)
        assert not verify_password(row["password_hash"], account.password + "x")


async def test_seed_is_idempotent(database_url: str) -> None:
    first = await seed(database_url, resources=50)
    second = await seed(database_url, resources=50)

    assert (first.users_created, first.resources_created) == (0, 50)  # the fixture already made the users
    assert (second.users_created, second.resources_created) == (0, 0)
    assert await _fetchval(database_url, "SELECT count(*) FROM resources") == 50


async def test_seed_can_add_more_and_keeps_the_sequence_ahead(database_url: str) -> None:
    await seed(database_url, resources=10)
    result = await seed(database_url, resources=5, only_if_empty=False)

    assert result.resources_created == 5
    new_id = await _fetchval(database_url, "INSERT INTO resources (name, type) VALUES ('x', 'note') RETURNING id")
    assert new_id == 16


async def test_seed_loads_100k_varied_resources(database_url: str) -> None:
    result = await seed(database_url, resources=100_000)

    assert result.resources_created == 100_000
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM resources") == 100_000
        types = await connection.fetchval("SELECT count(DISTINCT type) FROM resources")
        owners = await connection.fetchval("SELECT count(DISTINCT owner_id) FROM resources")
        sample = await connection.fetchrow("SELECT name, type, data FROM resources WHERE id = 42")
    finally:
        await connection.close()
    assert types >= 5
    assert owners == 2
    assert sample is not None
    assert sample["name"] == f"Sample {sample['type']} 42"
    assert '"index": 42' in sample["data"]


async def test_postgres_restart_keeps_data(own_postgres: EmbeddedPostgres) -> None:
    await _fetchval(own_postgres.url, "INSERT INTO resources (name, type) VALUES ('kept', 'note')")

    await asyncio.to_thread(own_postgres.stop)
    assert not own_postgres.is_running()
    await asyncio.to_thread(own_postgres.start)

    assert await _fetchval(own_postgres.url, "SELECT name FROM resources") == "kept"


async def test_postgres_recovers_after_kill(own_postgres: EmbeddedPostgres) -> None:
    await _fetchval(own_postgres.url, "INSERT INTO resources (name, type) VALUES ('committed', 'note')")

    own_postgres.kill()
    assert not own_postgres.is_running()
    with pytest.raises(OSError):  # noqa: PT011 - refused connection; the exact subclass varies by platform
        await asyncpg.connect(own_postgres.url, timeout=2)
    await asyncio.to_thread(own_postgres.restart)

    assert own_postgres.is_running()
    assert await _fetchval(own_postgres.url, "SELECT name FROM resources") == "committed"


async def test_redis_start_stop_kill(own_redis: EmbeddedRedis) -> None:
    client = aioredis.from_url(own_redis.url)
    try:
        await client.set("k", "v")
        assert await client.get("k") == b"v"

        own_redis.kill()
        assert not own_redis.is_running()
        with pytest.raises(redis.exceptions.ConnectionError):
            await client.ping()

        await asyncio.to_thread(own_redis.restart)
        assert await client.ping() is True
        assert await client.get("k") is None  # no persistence by design

        await asyncio.to_thread(own_redis.stop)
        assert not own_redis.is_running()
    finally:
        await client.aclose()


def test_url_shapes(tmp_path: Path) -> None:
    assert EmbeddedPostgres(tmp_path, 5433).url == "postgresql://app:app@127.0.0.1:5433/scalable_api"
    assert EmbeddedRedis(tmp_path, 6390).url == "redis://127.0.0.1:6390/0"
