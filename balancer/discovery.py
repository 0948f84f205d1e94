"""DNS discovery: ``dns+http://name:port`` entries whose backends follow what the name resolves to.

::

    at start, then every BALANCER_DNS_INTERVAL seconds, for each dns+ target:
      resolve name ─► error, timeout or no address ─► keep the last known addresses
      │                                               (warning once per failure streak, lb_dns_resolutions_total
      │                                                {result="error"}, ``last_error`` in /lb/status)
      └─► addresses ─► new one:  pool.add(healthy=False): its health loop starts at once and ``rise`` passing
                                 checks admit it, so traffic reaches it only after it has answered /ready
                       gone one: draining at once (no new requests); a background task waits for its in-flight
                                 requests (up to BALANCER_SHUTDOWN_GRACE), then drops it from the pool

Kubernetes answers a headless Service's name with the ready pods' addresses and Compose answers a service
name with every replica's, so scaling either way is followed within one interval. A name that stops resolving
at all (NXDOMAIN while every pod restarts) keeps the last set: the health checks already keep dead addresses
out of rotation, and dropping everything on one bad answer would turn a DNS hiccup into an outage.

Why by hand: resolving a name and diffing two sets is a few lines over ``loop.getaddrinfo`` (the OS resolver,
which honours /etc/hosts and the container's resolv.conf); a DNS library would be a dependency for SRV records
we do not need, since the port is part of the entry. Resolution goes through the :class:`Resolver` protocol so
tests inject a fake one.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from aiohttp import web

from balancer.backend import Backend, Clock
from balancer.metrics import BalancerMetrics
from balancer.pool import BackendPool
from balancer.settings import BackendSpec, DnsTarget
from shared.shutdown import stop_tasks

_log = structlog.get_logger("balancer.discovery")


class Resolver(Protocol):
    async def resolve(self, host: str, port: int) -> Sequence[str]:
        """The IP addresses ``host`` resolves to; raises ``OSError`` when it cannot be resolved."""
        ...


class SystemResolver:
    """The operating system's resolver, through the event loop's ``getaddrinfo`` (no blocking, no dependency)."""

    async def resolve(self, host: str, port: int) -> Sequence[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
        return sorted({str(info[4][0]) for info in infos})


class NoAddresses(OSError):
    """A resolution that succeeded with an empty answer: treated as a failure (the last set is kept)."""


@dataclass
class TargetState:
    """What one ``dns+`` entry resolved to last, and how its resolutions are going."""

    target: DnsTarget
    addresses: tuple[str, ...] = ()
    resolutions: int = 0
    errors: int = 0
    failing: bool = False
    last_error: str | None = None
    last_success: float | None = None

    def snapshot(self, now: float) -> dict[str, object]:
        return {
            "target": self.target.name,
            "addresses": list(self.addresses),
            "resolutions": self.resolutions,
            "errors": self.errors,
            "last_error": self.last_error if self.failing else None,
            "last_success_ago_s": None if self.last_success is None else round(now - self.last_success, 3),
        }


class Discovery:
    """Keeps the pool's discovered backends equal to the union of what the targets resolve to."""

    def __init__(
        self,
        pool: BackendPool,
        targets: Sequence[DnsTarget],
        *,
        interval: float,
        resolver: Resolver | None = None,
        metrics: BalancerMetrics | None = None,
        clock: Clock = time.monotonic,
        on_draining: Callable[[Backend], None] | None = None,
    ) -> None:
        self.pool = pool
        self.interval = interval
        self.targets = [TargetState(target) for target in targets]
        self._resolver: Resolver = resolver or SystemResolver()
        self._timeout = min(max(interval, 1.0), 10.0)
        self._metrics = metrics
        self._clock = clock
        self._on_draining = on_draining
        self._owned: set[str] = set()  # ids this discovery added (static backends are never touched)
        self._removals: set[asyncio.Task[None]] = set()

    async def refresh(self) -> None:
        """Resolve every target once and apply the difference to the pool (removals drain in the background)."""
        await asyncio.gather(*(self._resolve(state) for state in self.targets))
        wanted: dict[str, BackendSpec] = {}
        for state in self.targets:
            for address in state.addresses:
                spec = state.target.spec(address)
                wanted.setdefault(spec.id, spec)
        for backend_id, spec in wanted.items():
            self._admit(backend_id, spec)
        for backend_id in sorted(self._owned - wanted.keys()):
            self._retire(backend_id)

    def _admit(self, backend_id: str, spec: BackendSpec) -> None:
        existing = self.pool.get(backend_id)
        if existing is not None:
            if backend_id in self._owned:
                existing.weight = spec.weight
            # else: a static backend with the same address (it stays static), or one still draining out
            # (it is added afresh on the first refresh after it is gone).
            return
        self.pool.add(spec, healthy=False)
        self._owned.add(backend_id)
        _log.info("dns_backend_added", backend=backend_id, url=spec.url)

    def _retire(self, backend_id: str) -> None:
        self._owned.discard(backend_id)
        backend = self.pool.get(backend_id)
        if backend is None:
            return
        backend.draining = True  # now, not when the task first runs: no request may pick it from here on
        if self._on_draining is not None:
            self._on_draining(backend)
        _log.info("dns_backend_removed", backend=backend_id, in_flight=backend.in_flight)
        task = asyncio.get_running_loop().create_task(self.pool.remove(backend_id))
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def _resolve(self, state: TargetState) -> None:
        target = state.target
        state.resolutions += 1
        try:
            async with asyncio.timeout(self._timeout):
                addresses = tuple(sorted(set(await self._resolver.resolve(target.host, target.port))))
            if not addresses:
                raise NoAddresses(f"{target.host} resolved to no address")
        except (OSError, UnicodeError) as exc:  # TimeoutError is an OSError; IDNA failures are UnicodeErrors
            self._failed(state, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return
        if state.failing:
            _log.warning("dns_resolution_recovered", target=target.name, addresses=list(addresses))
        state.failing = False
        state.last_success = self._clock()
        if addresses != state.addresses:
            _log.info("dns_addresses_changed", target=target.name, addresses=list(addresses))
        state.addresses = addresses
        if self._metrics is not None:
            self._metrics.dns_resolutions.labels(target.name, "ok").inc()
            self._metrics.dns_addresses.labels(target.name).set(len(addresses))

    def _failed(self, state: TargetState, error: str) -> None:
        state.errors += 1
        state.last_error = error
        if not state.failing:
            _log.warning("dns_resolution_failed", target=state.target.name, error=error, keeping=list(state.addresses))
        state.failing = True
        if self._metrics is not None:
            self._metrics.dns_resolutions.labels(state.target.name, "error").inc()

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug in one round must not stop discovery
                _log.exception("dns_discovery_error")
            await asyncio.sleep(self.interval)

    def snapshot(self) -> dict[str, object]:
        now = self._clock()
        return {"interval_s": self.interval, "targets": [state.snapshot(now) for state in self.targets]}

    def context(self) -> Callable[[web.Application], AsyncIterator[None]]:
        """The ``cleanup_ctx`` running the resolve loop; on exit it stops it and any drain still waiting."""

        async def dns_discovery(app: web.Application) -> AsyncIterator[None]:
            loop_task = asyncio.get_running_loop().create_task(self.run())
            try:
                yield
            finally:
                await stop_tasks(loop_task, *self._removals)

        return dns_discovery
