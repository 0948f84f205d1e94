"""PostgreSQL and Redis for the fixtures in ``tests/conftest.py``: embedded or external, and how to reset them.

Setting TEST_DATABASE_URL / TEST_REDIS_URL points the suite at existing servers (usable, but not ours to kill or
restart: fault tests that need that skip). ``reset_database`` / ``flush_redis`` put a shared server back to the
state every test starts from: the two development accounts and an empty Redis.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
import pytest
import redis.asyncio as aioredis

from database.seed import seed

__all__ = [
    "TEST_DATABASE_URL",
    "TEST_REDIS_URL",
    "ExternalServer",
    "Server",
    "external_servers_in_use",
    "flush_redis",
    "reset_database",
    "reset_state",
    "run_sync",
    "server_root",
    "skip_unless_embedded_servers",
]

T = TypeVar("T")

TEST_DATABASE_URL = "TEST_DATABASE_URL"
TEST_REDIS_URL = "TEST_REDIS_URL"
_TABLES = "idempotency_keys, resources, api_keys, refresh_tokens, users"


class Server(Protocol):
    """What every test needs from a server, whether embedded or external."""

    @property
    def url(self) -> str: ...


@dataclass(frozen=True)
class ExternalServer:
    """A server given through TEST_DATABASE_URL / TEST_REDIS_URL: usable, but not ours to kill or restart."""

    url: str


def external_servers_in_use() -> bool:
    """Tests that kill or restart servers need embedded ones; with external servers they are skipped."""
    return bool(os.environ.get(TEST_DATABASE_URL) or os.environ.get(TEST_REDIS_URL))


def skip_unless_embedded_servers() -> None:
    """Call at the start of a fault test (the own_* fixtures do) to skip it against external servers."""
    if external_servers_in_use():
        pytest.skip(f"fault tests need embedded servers; unset {TEST_DATABASE_URL} / {TEST_REDIS_URL}")


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code (session fixtures), on a loop of its own in a
    worker thread so it can never collide with the event loop pytest-asyncio runs tests on."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@contextmanager
def server_root(prefix: str) -> Iterator[Path]:
    """A scratch directory the unprivileged PostgreSQL account can enter (pytest's own tmp root is 0700 when
    the suite runs as root), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        root.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def reset_database(database_url: str) -> None:
    """Empty every table, then seed only the two development accounts (ids 1 and 2)."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()
    await seed(database_url, resources=0)


async def flush_redis(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()


async def reset_state(database_url: str, redis_url: str) -> None:
    """Both resets, for a stack that a module or package shares across its tests."""
    await reset_database(database_url)
    await flush_redis(redis_url)
