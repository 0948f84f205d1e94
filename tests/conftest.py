"""Real PostgreSQL and Redis for the test suite, the test clock, and the guard on which tests may start servers.

Session-scoped servers are started once (embedded, on free ports, in scratch directories) and migrated once;
the function-scoped `database_url` / `redis_url` fixtures reset their state before each test, so tests are
independent without paying a server start each. Setting TEST_DATABASE_URL / TEST_REDIS_URL points the suite at
existing servers instead (they are truncated and flushed!); fault tests that kill servers then skip, because
they use `own_postgres` / `own_redis`, private servers started for one test.

Only tests marked `integration` or `e2e` may use these servers or start suite processes
(:mod:`tests.support.markers` says how that is checked).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from database.migrate import run_migrations
from stack.services.cluster import EmbeddedCluster
from stack.services.ports import free_port
from stack.services.postgres import EmbeddedPostgres
from stack.services.redis import EmbeddedRedis
from tests.support.clock import ManualClock
from tests.support.markers import SpawnGuard, missing_server_marker
from tests.support.servers import (
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    ExternalServer,
    Server,
    flush_redis,
    reset_database,
    run_sync,
    server_root,
    skip_unless_embedded_servers,
)

_SPAWN_GUARD = SpawnGuard()


def pytest_configure(config: pytest.Config) -> None:
    _SPAWN_GUARD.install()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    _SPAWN_GUARD.enter(item)
    try:
        yield
    finally:
        _SPAWN_GUARD.leave()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture of ``item`` is set up, so an unmarked test fails without starting a server."""
    reason = missing_server_marker(item)
    if reason is not None:
        pytest.fail(reason, pytrace=False)


@pytest.fixture
def clock() -> ManualClock:
    """Time that moves only when the test advances it."""
    return ManualClock()


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
    await reset_database(postgres_server.url)
    return postgres_server.url


@pytest.fixture
async def redis_url(redis_server: Server) -> str:
    """The shared Redis, flushed."""
    await flush_redis(redis_server.url)
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[EmbeddedCluster]:
    """A Redis Cluster of 3 masters with a replica each, started once; tests that kill a node wait until the
    cluster is healthy again before they end (``EmbeddedCluster.wait_until_healthy``)."""
    skip_unless_embedded_servers()
    with server_root("scalable-api-test-cluster-") as root, EmbeddedCluster(root / "cluster") as cluster:
        yield cluster


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
