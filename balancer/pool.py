"""The backend pool: the set of backends, changeable at run time (DNS discovery drives ``add`` / ``remove``).

Readers take ``pool.backends``, an immutable tuple replaced on every change, so the hot path iterates it
without locks or copies. Whoever needs to react to membership (the health checker, metrics) subscribes with
``on_change``. Removing a backend drains it first: it leaves rotation at once (``draining``) but stays listed,
so ``/lb/status`` shows it finishing its in-flight requests; when they are done (or the grace period ends) it
is dropped, listeners hear of it and its pools close.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from balancer.backend import Backend, Clock, HealthState
from balancer.settings import BackendSpec, BalancerSettings
from shared.breaker import STATE_CODES, AsyncCircuitBreaker
from shared.upstream import Upstream

Listener = Callable[[Backend, bool], None]  # (backend, added)
BreakerListener = Callable[[Backend, str, str], None]  # (backend, old state, new state)
_log = structlog.get_logger("balancer.pool")


class BackendPool:
    def __init__(
        self,
        settings: BalancerSettings,
        *,
        clock: Clock = time.monotonic,
        on_breaker_change: BreakerListener | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._on_breaker_change = on_breaker_change
        self._listeners: list[Listener] = []
        self._removing: set[str] = set()
        self.backends: tuple[Backend, ...] = ()

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def get(self, backend_id: str) -> Backend | None:
        for backend in self.backends:
            if backend.id == backend_id:
                return backend
        return None

    def removing(self, backend_id: str) -> bool:
        """True while ``backend_id`` is draining on its way out of the pool."""
        return backend_id in self._removing

    def add(self, spec: BackendSpec, *, healthy: bool = True) -> Backend:
        """Add a backend; ``healthy=False`` keeps it out of rotation until ``rise`` passing health checks."""
        if self.get(spec.id) is not None:
            raise ValueError(f"backend {spec.id} is already in the pool")
        backend = self._build(spec)
        backend.health.up = healthy
        backend.health.seen_down = not healthy  # a newcomer earns rotation with ``rise`` passes
        self.backends = (*self.backends, backend)
        for listener in self._listeners:
            listener(backend, True)
        return backend

    async def remove(self, backend_id: str) -> None:
        backend = self.get(backend_id)
        if backend is None or backend_id in self._removing:
            return
        self._removing.add(backend_id)
        backend.draining = True
        _log.info("backend_removing", backend=backend_id, in_flight=backend.in_flight)
        try:
            drained = await backend.wait_idle(self._settings.shutdown_grace)
        finally:
            # Cancelled (shutdown): it stays listed, so ``close`` still closes its pools.
            self._removing.discard(backend_id)
        self.backends = tuple(item for item in self.backends if item is not backend)
        for listener in self._listeners:
            listener(backend, False)
        _log.info("backend_removed", backend=backend_id, drained=drained)
        await _close(backend)

    async def close(self) -> None:
        backends, self.backends = self.backends, ()
        await asyncio.gather(*(_close(backend) for backend in backends))

    def _build(self, spec: BackendSpec) -> Backend:
        settings = self._settings
        upstream = Upstream(
            spec.url,
            max_connections=settings.max_connections,
            connect_timeout=settings.connect_timeout,
            timeout=settings.timeout,
        )
        # Health checks use their own single connection so a saturated traffic pool never fails them.
        health_upstream = Upstream(
            spec.url, max_connections=1, connect_timeout=settings.health_timeout, timeout=settings.health_timeout
        )
        holder: list[Backend] = []

        def breaker_changed(breaker: AsyncCircuitBreaker, old: str, new: str) -> None:
            if holder and self._on_breaker_change is not None:
                self._on_breaker_change(holder[0], old, new)

        breaker = AsyncCircuitBreaker(
            f"backend:{spec.id}",
            fail_max=settings.breaker_failures,
            reset_timeout=settings.breaker_reset,
            max_reset_timeout=settings.breaker_max_reset,
            clock=self._clock,
            on_state_change=breaker_changed,
        )
        backend = Backend(
            spec.id,
            spec.url,
            spec.weight,
            upstream=upstream,
            health_upstream=health_upstream,
            breaker=breaker,
            health=HealthState(rise=settings.health_rise, fall=settings.health_fall),
        )
        holder.append(backend)
        _log.info("backend_added", backend=spec.id, url=spec.url, weight=spec.weight)
        return backend


async def _close(backend: Backend) -> None:
    await backend.upstream.close()
    await backend.health_upstream.close()


def breaker_code(state: str) -> int:
    return STATE_CODES[state]
