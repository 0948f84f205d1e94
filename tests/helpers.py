"""Helpers shared by the fixtures in `tests/conftest.py` and the tests themselves."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

T = TypeVar("T")

TEST_DATABASE_URL = "TEST_DATABASE_URL"
TEST_REDIS_URL = "TEST_REDIS_URL"


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


async def wait_until(condition: Callable[[], Awaitable[bool]], *, within: float = 10, interval: float = 0.05) -> None:
    """Poll `condition` until it holds; fail the test with a clear message at the deadline."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(interval)
    pytest.fail(f"condition not met within {within}s")
