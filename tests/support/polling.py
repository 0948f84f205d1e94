"""Waiting for a state without sleeping for it: poll a condition until it holds or a deadline passes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

__all__ = ["wait_until"]


async def wait_until(condition: Callable[[], Awaitable[bool]], *, within: float = 10, interval: float = 0.05) -> None:
    """Poll `condition` until it holds; fail the test with a clear message at the deadline."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():
            return
        await asyncio.sleep(interval)
    pytest.fail(f"condition not met within {within}s")
