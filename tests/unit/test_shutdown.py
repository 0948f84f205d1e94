"""Shutdown steps end within their bound: a loop that swallows a cancellation, a close that never returns."""

from __future__ import annotations

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from shared.shutdown import closing, stop_tasks


async def test_a_loop_that_swallowed_one_cancellation_stops_at_the_next() -> None:
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:  # what an `except OSError` around a converted cancel amounts to
                rounds += 1
                if rounds > 1:
                    raise

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    started = time.monotonic()
    await stop_tasks(task, grace=5)
    assert task.cancelled()
    assert rounds == 2
    assert time.monotonic() - started < 1


async def test_a_task_that_never_stops_is_abandoned_with_a_warning_after_the_grace() -> None:
    released = False

    async def stubborn() -> None:
        while not released:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    started = time.monotonic()
    with capture_logs() as logs:
        await stop_tasks(task, grace=0.3)
    assert 0.3 <= time.monotonic() - started < 1.5
    assert [entry["task"] for entry in logs if entry["event"] == "background_task_stuck"] == ["stubborn"]
    assert not task.done()
    released = True  # the test's own cleanup: the next cancellation ends it
    task.cancel()
    await asyncio.wait([task], timeout=1)
    assert task.done()


async def test_a_failed_task_is_logged_not_raised() -> None:
    async def broken() -> None:
        raise RuntimeError("bug")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with capture_logs() as logs:
        await stop_tasks(task)
    assert [entry["error"] for entry in logs if entry["event"] == "background_task_failed"] == ["RuntimeError"]


async def test_a_close_that_hangs_is_forced_after_the_grace() -> None:
    forced = []

    async def hangs() -> None:
        await asyncio.sleep(3600)

    with capture_logs() as logs:
        await closing("postgres pool", hangs, force=lambda: forced.append(True), grace=0.2)
    assert forced == [True]
    assert [entry["step"] for entry in logs if entry["event"] == "shutdown_step_timed_out"] == ["postgres pool"]


async def test_a_close_that_fails_says_so() -> None:
    async def fails() -> None:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError):
        await closing("redis client", fails)
