"""Shutdown that cannot hang: background loops are stopped and resources closed within a bound, or abandoned loudly.

A process stops on SIGTERM and has a grace period (Kubernetes: 30 s) before it is killed. One step that waits
forever (a pool waiting for a server that no longer answers, a loop whose cancellation an exception handler
turned into a retry) would spend all of it, and the steps after it (flushing spans, closing the other pools)
would never run. So::

    stop_tasks(*tasks)     cancel; a task still running is cancelled again every 0.1 s (a loop that caught the
                           first cancellation as a TimeoutError, an OSError, goes back to its next await and
                           gets the next one); after ``grace`` it is abandoned with a warning naming it
    closing(step, close)   await ``close()`` for at most ``grace``; past that a warning names the step and
                           ``force()`` (if given) closes the hard way (asyncpg's ``Pool.terminate``)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

__all__ = ["GRACE_SECONDS", "closing", "stop_tasks"]

GRACE_SECONDS = 5.0
_RETRY_CANCEL = 0.1
_log = structlog.get_logger("shared.shutdown")


async def stop_tasks(*tasks: asyncio.Task[Any], grace: float = GRACE_SECONDS) -> None:
    """Cancel ``tasks`` and wait until each has ended, at most ``grace`` seconds in all; never raises for them."""
    pending = {task for task in tasks if not task.done()}
    deadline = asyncio.get_running_loop().time() + grace
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            for task in pending:
                _log.warning("background_task_stuck", task=task.get_name(), coroutine=_name(task), seconds=grace)
            break
        _, pending = await asyncio.wait(pending, timeout=min(_RETRY_CANCEL, left))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            _log.warning("background_task_failed", task=task.get_name(), error=type(task.exception()).__name__)


async def closing(
    step: str,
    close: Callable[[], Awaitable[Any]],
    *,
    force: Callable[[], Any] | None = None,
    grace: float = GRACE_SECONDS,
) -> None:
    """``await close()`` within ``grace`` seconds; past that, log the step and call ``force`` instead."""
    try:
        async with asyncio.timeout(grace):
            await close()
    except TimeoutError:
        _log.warning("shutdown_step_timed_out", step=step, seconds=grace)
        if force is not None:
            force()


def _name(task: asyncio.Task[Any]) -> str:
    coroutine = task.get_coro()
    return getattr(coroutine, "__qualname__", type(coroutine).__name__)
