"""L2: Redis, shared by every replica, behind a circuit breaker so a dead Redis costs nothing per request.

Keys live under ``cache:`` only (``cache:res:{id}``, ``cache:list:{gen}:{query}``, ``cache:gen:resources``,
``cache:lock:{key}``), so an admin cache clear can never touch rate-limit (``rl:``) or auth (``auth:``) state.
Fills go through ``put_versioned.lua`` (EVALSHA; redis-py reloads the script on NOSCRIPT).

The fill lock belongs to one acquisition::

    try_lock: token = 16 random bytes (hex); SET cache:lock:{key} token NX PX ttl ── taken ─► None (a loser)
      │ set
    token handed to the caller, who alone may release it:
    unlock(key, token): unlock.lua ── GET == token ─► DEL (released)
                                   └─ otherwise ───► nothing (expired, or another owner took it over)

A replica that lost the lock has no token, so it cannot release the winner's lock; an owner that outlived its
TTL finds someone else's token there and leaves that lock alone. Both are single-key scripts, so they run
unchanged on a Redis Cluster.

On a Redis Cluster every key is its own slot (the entries spread over the cluster), so a write cannot touch the
entry and the list generation in one script: it stores the entry with ``put_versioned.lua``, then bumps the
generation and announces the write with ``announce_write.lua``, in that order. PUBLISH reaches every node's
subscribers, and SCAN/DEL of a cache clear run on every primary (redis-py's cluster client).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from apiserver.cache.entry import Entry
from shared.breaker import AsyncCircuitBreaker, BreakerOpen
from shared.keys import RedisClient

PREFIX = "cache:"
LOCK_PREFIX = PREFIX + "lock:"
GENERATION_KEY = "cache:gen:resources"
INVALIDATION_CHANNEL = "cache:invalidate"
_SCRIPTS = resources.files("apiserver.cache")
_PUT_VERSIONED = _SCRIPTS.joinpath("put_versioned.lua").read_text()
_WRITE_THROUGH = _SCRIPTS.joinpath("write_through.lua").read_text()
_ANNOUNCE_WRITE = _SCRIPTS.joinpath("announce_write.lua").read_text()
_UNLOCK = _SCRIPTS.joinpath("unlock.lua").read_text()
T = TypeVar("T")


class L2Unavailable(Exception):
    """Redis is down or its breaker is open: the caller continues without L2."""


class RedisCache:
    def __init__(
        self,
        client: RedisClient,
        breaker: AsyncCircuitBreaker,
        on_command: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self._put_script = client.register_script(_PUT_VERSIONED)
        self._write_through_script = client.register_script(_WRITE_THROUGH)
        self._announce_script = client.register_script(_ANNOUNCE_WRITE)
        self._unlock_script = client.register_script(_UNLOCK)
        self._cluster = isinstance(client, RedisCluster)
        self._on_command = on_command or (lambda: None)

    async def _run(self, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            permit = self.breaker.acquire()
        except BreakerOpen:
            raise L2Unavailable from None
        self._on_command()
        try:
            result = await operation()
        except (RedisError, OSError) as exc:
            self.breaker.record_failure(permit, exc)
            raise L2Unavailable from exc
        except BaseException:
            self.breaker.release(permit)
            raise
        self.breaker.record_success(permit)
        return result

    async def get(self, key: str) -> Entry | None:
        raw = await self._run(lambda: self.client.get(PREFIX + key))
        if not raw:
            return None
        return Entry.decode(raw if isinstance(raw, bytes) else raw.encode())

    async def put(self, key: str, entry: Entry, ttl_seconds: float) -> bool:
        ttl_ms = max(int(ttl_seconds * 1000), 1)
        written = await self._run(
            lambda: self._put_script(keys=[PREFIX + key], args=[entry.version, entry.encode(), ttl_ms])
        )
        return bool(written)

    async def write_through(self, key: str, entry: Entry, ttl_seconds: float, message: bytes) -> int:
        """Store a committed version, bump the list generation and publish ``message`` (+ gen); one round trip."""
        ttl_ms = max(int(ttl_seconds * 1000), 1)
        if self._cluster:
            return int(await self._run(lambda: self._write_through_in_order(key, entry, ttl_ms, message)))
        keys = [PREFIX + key, GENERATION_KEY]
        args: list[bytes | str | int] = [entry.version, entry.encode(), ttl_ms, INVALIDATION_CHANNEL, message]
        return int(await self._run(lambda: self._write_through_script(keys=keys, args=args)))

    async def _write_through_in_order(self, key: str, entry: Entry, ttl_ms: int, message: bytes) -> int:
        await self._put_script(keys=[PREFIX + key], args=[entry.version, entry.encode(), ttl_ms])
        return int(await self._announce_script(keys=[GENERATION_KEY], args=[INVALIDATION_CHANNEL, message]))

    async def try_lock(self, key: str, ttl_seconds: float) -> str | None:
        """A short fill lock so one replica recomputes a hot key while the others wait for its L2 write.

        Returns the owner token to hand to :meth:`unlock`, or None when another acquisition holds the lock.
        """
        ttl_ms = max(int(ttl_seconds * 1000), 1)
        token = secrets.token_hex(16)
        taken = await self._run(lambda: self.client.set(LOCK_PREFIX + key, token, nx=True, px=ttl_ms))
        return token if taken else None

    async def unlock(self, key: str, token: str) -> bool:
        """Release the fill lock if ``token`` still owns it (compare-and-delete); True when it was released."""
        released = await self._run(lambda: self._unlock_script(keys=[LOCK_PREFIX + key], args=[token]))
        return bool(released)

    async def generation(self) -> int:
        raw = await self._run(lambda: self.client.get(GENERATION_KEY))
        return int(raw) if raw else 0

    async def bump_generation(self) -> int:
        return int(await self._run(lambda: self.client.incr(GENERATION_KEY)))

    async def publish(self, message: bytes) -> None:
        await self._run(lambda: self.client.publish(INVALIDATION_CHANNEL, message))

    async def clear_namespace(self) -> int:
        """Delete every ``cache:`` key (admin action only: SCAN is never on a request path)."""
        deleted = 0
        async for batch in _batched(self.client.scan_iter(match=PREFIX + "*", count=1000), 500):
            deleted += await self.client.delete(*batch)
        return deleted


async def _batched(source: AsyncIterator[bytes], size: int) -> AsyncIterator[list[bytes]]:
    batch: list[bytes] = []
    async for item in source:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
