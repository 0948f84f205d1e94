"""A deadline for the request head and caps on open connections, on a process's listening port.

Why by hand: aiohttp has neither. Its server waits as long as a client likes for a request head to finish (at
best its keep-alive timer, 75 s as we run it, closes a connection still waiting for its first head, however
slowly bytes trickle in), and it accepts every connection the kernel hands it, so one client holding thousands of
half-sent heads exhausts the process's file limit. nginx bounds the head with ``client_header_timeout`` and the
connections with ``limit_conn``; HAProxy with ``timeout http-request`` and ``maxconn``. :class:`ConnectionGuard`
does the same in front of aiohttp's own protocol (``web.Server``), one small object per connection and no task::

    accept ─► ConnectionGuard() ─► _Guarded (aiohttp's RequestHandler is made only once the connection is admitted)
      connection_made: the peer's address (IPv6: its /64) ─► ConnectionCounts.admit
        over MAX_CONNECTIONS_PER_ADDRESS or MAX_CONNECTIONS ─► transport.abort() at once, nothing read or parsed;
                                       counted (http_connections_refused_total{reason}), one warning a second at most
        admitted ─► RequestHandler made and connected; head deadline armed: now + HEADER_TIMEOUT (loop.call_at)
      data_received ─► the handler parses it, then
        a head completed                   ─► deadline disarmed (the body and the answer have limits of their own)
        bytes while idle between requests  ─► deadline armed at the first byte of the next head (keep-alive)
      deadline reached ─► transport.abort(); counted (http_header_timeouts_total), one warning a second at most
      connection_lost ─► counts released, deadline disarmed, the handler told

A keep-alive connection that sends nothing between requests is not a slow client but a pool's idle connection:
aiohttp's keep-alive timeout closes it, the head deadline does not. A fresh connection that sends nothing is
closed at the deadline, as nginx does. Known limit: bytes of the next head that arrive while the previous request
is still being answered (pipelining) arm nothing; the next bytes that arrive once the connection is idle arm the
deadline, and if none come, the keep-alive timeout bounds it.

Counts are per worker process: with ``WORKERS=N`` every worker serves the port (``SO_REUSEPORT``) and holds its
own counts, so a tier admits up to N times each cap. Peers in ``TRUSTED_PROXIES`` carry many clients and are
exempt from the per-address cap (not from the total). The Unix socket a worker opens for its siblings is not
guarded (only they reach it). Two private attributes of aiohttp's ``RequestHandler`` tell that a head was parsed
(``_request_count``) and that the handler waits for the next request (``_waiter``): :func:`check_aiohttp` refuses
to start on an aiohttp without them, and ``tests/unit/test_connections.py`` drives both through real sockets.
"""

from __future__ import annotations

import asyncio
import ipaddress
import resource
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from shared.metrics import Metrics
from shared.netaddr import IPNetwork
from shared.settings import ConnectionLimits

__all__ = [
    "AddressKeys",
    "ConnectionCounts",
    "ConnectionGuard",
    "RateLimitedWarning",
    "check_aiohttp",
    "connection_cap",
    "open_file_limit",
]

Refusal = Literal["per_address", "total"]
AUTO_CEILING = 10_000  # MAX_CONNECTIONS=auto never admits more per worker: one event loop serves no more well
IPV6_CLIENT_PREFIX = 64  # one subscriber's allocation: a client with a /64 has 2**64 addresses to rotate through
_KEY_CACHE_SIZE = 4096
_PRIVATE_ATTRIBUTES = ("_request_count", "_waiter")
_log = structlog.get_logger("shared.connections")


def open_file_limit() -> int:
    """This process's soft limit on open files (``ulimit -n``)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return AUTO_CEILING * 2 if soft == resource.RLIM_INFINITY else soft


def connection_cap(limits: ConnectionLimits, open_files: int) -> int:
    """The total cap to enforce (0: none). ``auto``: half the open-file limit, at most :data:`AUTO_CEILING`; the
    other half is for what the process opens itself (upstream pools, PostgreSQL, Redis, logs), so the cap refuses
    cheaply before accept() would fail for lack of a descriptor (asyncio then stops accepting for a second)."""
    if limits.max_connections is None:
        return max(1, min(AUTO_CEILING, open_files // 2))
    return limits.max_connections


def check_aiohttp() -> None:
    """Refuse to start on an aiohttp whose ``RequestHandler`` no longer has what the head deadline reads."""
    slots = {name for cls in RequestHandler.__mro__ for name in getattr(cls, "__slots__", ())}
    missing = [name for name in _PRIVATE_ATTRIBUTES if name not in slots]
    if missing:
        raise RuntimeError(f"aiohttp's RequestHandler lacks {', '.join(missing)}: shared.connections needs updating")


class AddressKeys:
    """The identity a per-address cap counts: the IPv4 address, or the IPv6 /64 (an IPv4-mapped IPv6 address is
    its IPv4 address); None for peers without an IP (Unix sockets) and for trusted proxies. Cached: a flood comes
    from few addresses, and parsing one costs more than the rest of the admission."""

    def __init__(self, trusted: Sequence[IPNetwork] = ()) -> None:
        self._trusted = tuple(trusted)
        self._cache: dict[str, str | None] = {}

    def __call__(self, peername: object) -> str | None:
        if not isinstance(peername, tuple) or not peername:
            return None
        host = str(peername[0])
        try:
            return self._cache[host]
        except KeyError:
            pass
        if len(self._cache) >= _KEY_CACHE_SIZE:
            self._cache.clear()
        key = self._cache[host] = self._key(host)
        return key

    def _key(self, host: str) -> str | None:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])  # without an IPv6 zone ("fe80::1%eth0")
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address.version == network.version and address in network for network in self._trusted):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
        return str(address)


class ConnectionCounts:
    """Open connections in total and per address key, against two caps (0: no cap). Pure bookkeeping."""

    def __init__(self, *, max_total: int = 0, max_per_address: int = 0) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self._by_address: dict[str, int] = {}

    def admit(self, key: str | None) -> Refusal | None:
        """Count a new connection from ``key`` (None: not counted per address) and return None, or return which
        cap refuses it (and count nothing)."""
        if self.max_total and self.total >= self.max_total:
            return "total"
        if key is not None and self.max_per_address:
            held = self._by_address.get(key, 0)
            if held >= self.max_per_address:
                return "per_address"
            self._by_address[key] = held + 1
        self.total += 1
        return None

    def release(self, key: str | None) -> None:
        """An admitted connection from ``key`` closed."""
        self.total -= 1
        if key is not None and self.max_per_address:
            held = self._by_address[key] - 1
            if held:
                self._by_address[key] = held
            else:
                del self._by_address[key]

    def held_by(self, key: str) -> int:
        return self._by_address.get(key, 0)

    @property
    def addresses(self) -> int:
        """How many address keys hold a connection (a bounded figure: entries go when their last connection does)."""
        return len(self._by_address)


class RateLimitedWarning:
    """One warning line for ``event`` at most every ``every`` seconds; each says how many were left out since the
    last, so a flood costs one line a second (as :class:`shared.logging.MalformedRequestFilter` does)."""

    def __init__(
        self,
        event: str,
        *,
        every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[..., Any] | None = None,
    ) -> None:
        self.event = event
        self._every = every
        self._clock = clock
        self._emit = _log.warning if emit is None else emit
        self._next = float("-inf")
        self.suppressed = 0

    def __call__(self, **fields: Any) -> bool:
        """Log the line, or count it out; True when it was logged."""
        now = self._clock()
        if now < self._next:
            self.suppressed += 1
            return False
        self._next = now + self._every
        self._emit(self.event, **fields, suppressed_since_last=self.suppressed)
        self.suppressed = 0
        return True


class ConnectionGuard:
    """The protocol factory of a guarded listening port, in front of aiohttp's ``server`` (``runner.server``)."""

    def __init__(
        self,
        server: web.Server,
        limits: ConnectionLimits,
        *,
        max_total: int,
        trusted: Sequence[IPNetwork] = (),
        metrics: Metrics | None = None,
        service: str = "",
    ) -> None:
        check_aiohttp()
        self.server = server
        self.loop = asyncio.get_running_loop()
        self.header_timeout = limits.header_timeout
        self.counts = ConnectionCounts(max_total=max_total, max_per_address=limits.max_connections_per_address)
        self._keys = AddressKeys(trusted) if limits.max_connections_per_address else None
        figures = metrics if metrics is not None else Metrics(service)
        self._open = figures.connections_open.labels(service)
        self._refused = {
            reason: figures.connections_refused.labels(service, reason) for reason in ("per_address", "total")
        }
        self._timeouts = figures.header_timeouts.labels(service)
        self.warn_refused = RateLimitedWarning("connection_refused")
        self.warn_timeout = RateLimitedWarning("header_timeout")

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self)

    async def listen(self, host: str, port: int, *, backlog: int = 128) -> asyncio.Server:
        """Listen on ``host:port`` (``SO_REUSEPORT``: every worker of the tier binds the same port)."""
        return await self.loop.create_server(self, host, port, backlog=backlog, reuse_port=True)

    def key_of(self, transport: asyncio.BaseTransport) -> str | None:
        return None if self._keys is None else self._keys(transport.get_extra_info("peername"))

    def refuse(self, transport: asyncio.Transport, reason: Refusal, key: str | None) -> None:
        transport.abort()
        self._refused[reason].inc()
        cap = self.counts.max_total if reason == "total" else self.counts.max_per_address
        self.warn_refused(peer=key or _peer(transport), reason=reason, cap=cap, open=self.counts.total)

    def opened(self) -> None:
        self._open.inc()

    def closed(self, key: str | None) -> None:
        self.counts.release(key)
        self._open.dec()

    def timed_out(self, transport: asyncio.Transport) -> None:
        transport.abort()
        self._timeouts.inc()
        self.warn_timeout(peer=_peer(transport), timeout=self.header_timeout)


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


def _head_parsed(handler: RequestHandler) -> int:
    """How many request heads the handler has parsed on this connection (one per request, errors included)."""
    return handler._request_count  # private: aiohttp has no public figure (see check_aiohttp)


def _idle(handler: RequestHandler) -> bool:
    """The handler waits for the next request: no request is being read, answered or queued."""
    waiter = handler._waiter  # private: aiohttp's own test for idle, in _process_keepalive (see check_aiohttp)
    return waiter is not None and not waiter.done()


class _Guarded(asyncio.Protocol):
    """One connection: admitted or refused on arrival, then aiohttp's handler behind the head deadline."""

    __slots__ = ("_deadline", "_guard", "_handler", "_key", "_transport")

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._handler: RequestHandler | None = None
        self._transport: asyncio.Transport | None = None
        self._key: str | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        stream = cast(asyncio.Transport, transport)
        key = guard.key_of(transport)
        refusal = guard.counts.admit(key)
        if refusal is not None:
            guard.refuse(stream, refusal, key)
            return
        self._transport, self._key = stream, key
        guard.opened()
        handler = self._handler = guard.server()
        handler.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        parsed = _head_parsed(handler)
        handler.data_received(data)
        if _head_parsed(handler) != parsed:
            self._disarm()
        elif self._deadline is None and _idle(handler):
            self._arm()

    def eof_received(self) -> None:
        if self._handler is not None:
            self._handler.eof_received()  # returns nothing: the transport closes, as without the guard

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        handler = self._handler
        if handler is None:  # refused: never counted
            return
        self._handler = None
        self._disarm()
        self._guard.closed(self._key)
        handler.connection_lost(exc)

    def _arm(self) -> None:
        loop = self._guard.loop
        self._deadline = loop.call_at(loop.time() + self._guard.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._transport is not None and self._handler is not None:
            self._guard.timed_out(self._transport)
