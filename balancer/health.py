"""Active health checks: one loop per backend, ``GET <health path>`` every interval (jittered ±10 %).

Verdicts feed :class:`~balancer.backend.HealthState` (rise/fall). A backend that has never passed a check is
*starting* for ``startup_grace`` seconds after it joined the pool (the apiservers of a stack start alongside the
balancer): its failed checks are retried every ``STARTING_RETRY`` seconds and logged at debug only, and its first
passing check puts it in rotation at once. ``backend_up`` is logged at info, ``backend_down`` as a warning.

Health checks do not drive the circuit
breaker, which judges real traffic; but when a backend that was *down* comes back up (``rise`` passing checks
in a row: a restarted process, a recovered host) its breaker's history is about a process that no longer
exists, so it is reset. That is what puts a killed-and-restarted backend back into rotation within two health
intervals of it becoming ready, instead of after a breaker timeout that grew while it was dead.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from balancer.backend import Backend, Clock
from balancer.pool import BackendPool
from shared.breaker import CLOSED
from shared.shutdown import stop_tasks
from shared.upstream import UpstreamFailure

HealthListener = Callable[[Backend], None]
_HEADERS = {"User-Agent": "scalable-api-balancer/health", "Accept": "application/json"}
_log = structlog.get_logger("balancer.health")
STARTING_RETRY = 0.1  # seconds between checks of a backend that is still starting


class HealthChecker:
    def __init__(
        self,
        pool: BackendPool,
        *,
        path: str,
        interval: float,
        timeout: float,
        startup_grace: float = 0.0,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        on_change: HealthListener | None = None,
    ) -> None:
        self._pool = pool
        self._path = path
        self._interval = interval
        self._timeout = timeout
        self._startup_grace = startup_grace
        self._clock = clock
        self._joined: dict[str, float] = {}
        self._rng = rng or random.Random()
        self._on_change = on_change
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    async def probe(self, backend: Backend) -> str | None:
        """One check; None when it passed, else what failed."""
        try:
            async with asyncio.timeout(self._timeout):
                response = await backend.health_upstream.send("GET", self._path, _HEADERS)
                try:
                    while await response.read():
                        pass
                finally:
                    response.release()
        except TimeoutError:
            return "timeout"
        except UpstreamFailure as failure:
            return f"{failure.kind}: {failure.detail}" if failure.detail else failure.kind
        if not 200 <= response.status < 300:
            return f"status {response.status}"
        return None

    def starting(self, backend: Backend) -> bool:
        """Never passed a check and joined the pool less than ``startup_grace`` seconds ago."""
        joined = self._joined.get(backend.id)
        return not backend.health.passed and joined is not None and self._clock() - joined < self._startup_grace

    async def check_once(self, backend: Backend) -> None:
        error = await self.probe(backend)
        starting = error is not None and self.starting(backend)
        changed = backend.health.record(error is None, self._clock(), error, starting=starting)
        if starting:
            _log.debug("backend_starting", backend=backend.id, error=error)
        if not changed:
            return
        if backend.health.up:
            _log.info("backend_up", backend=backend.id)
            if backend.breaker.state != CLOSED:
                backend.breaker.reset()
        elif not starting:
            _log.warning("backend_down", backend=backend.id, error=error)
        if self._on_change is not None:
            self._on_change(backend)

    async def _run(self, backend: Backend) -> None:
        while True:
            try:
                await self.check_once(backend)
            except Exception:  # a bug in one check must not stop checking this backend
                _log.exception("health_check_error", backend=backend.id)
            if self.starting(backend):
                await asyncio.sleep(STARTING_RETRY)
            else:
                await asyncio.sleep(self._interval * self._rng.uniform(0.9, 1.1))

    def start(self, backend: Backend) -> None:
        if backend.id not in self._tasks:
            self._joined.setdefault(backend.id, self._clock())
            self._tasks[backend.id] = asyncio.get_running_loop().create_task(self._run(backend))

    async def stop(self, backend_id: str) -> None:
        task = self._tasks.pop(backend_id, None)
        if task is not None:
            await stop_tasks(task)

    async def stop_all(self) -> None:
        """Every loop at once, within one grace: one after another, a stuck loop per backend would add 5 s each."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await stop_tasks(*tasks)

    def context(self) -> Callable[[web.Application], AsyncIterator[None]]:
        """The ``cleanup_ctx`` that runs the loops (and follows pool membership) while the app runs."""

        async def health_checks(app: web.Application) -> AsyncIterator[None]:
            def follow(backend: Backend, added: bool) -> None:
                if added:
                    self.start(backend)
                else:
                    task = asyncio.get_running_loop().create_task(self.stop(backend.id))
                    self._stopping.add(task)
                    task.add_done_callback(self._stopping.discard)

            for backend in self._pool.backends:
                self.start(backend)
            self._pool.on_change(follow)
            try:
                yield
            finally:
                await self.stop_all()

        return health_checks
