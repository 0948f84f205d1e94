"""The two-level cache: in-process L1 in front of Redis L2 in front of PostgreSQL.

Read path (``get``)::

    L1 fresh? ── yes ─► serve (no Redis, no PostgreSQL)
      │ no
    already loading this key in this process? ── yes ─► await that load (single-flight)
      │ no
    L2 fresh? ── yes ─► store in L1, serve
      │ no
    take cache:lock:{key} (SET token NX PX) ── lost ─► poll L2 briefly for the winner's fill, serve it if it lands
      │ won (or L2 down)                               │ it did not land in time
      │◄───────────────────────────────────────────────┘ (load without the lock)
    PostgreSQL ── down ─► serve the stale L1/L2 entry if any (stale-if-error), else DatabaseUnavailable
      │ ok
    put_versioned.lua into L2 (older versions never overwrite newer), store in L1, serve
      │ whatever the outcome
    only if we won: unlock.lua with our token (compare-and-delete)

The lock is released only by the acquisition that took it: a loser that gave up waiting and loaded by itself
must not delete the winner's lock (that reopened the stampede), and a winner whose lock expired mid-load must
not delete its successor's. A winner whose load fails releases too, so the next request need not wait out the TTL.

Write path (``write_through``), after the PostgreSQL commit: evict our L1 entry, then in one pipelined round
trip put the committed version (or a deletion tombstone carrying version + 1) into L2, bump the list
generation and publish an invalidation. Every replica's subscriber evicts its L1 entry on the message, so a
write is visible everywhere within one pub/sub delivery.

Lists are cached under ``list:{generation}:{query}``; a write bumps the generation, so old list pages are
simply never asked for again and expire by TTL (no KEYS or SCAN on any request path).

Coherence when pub/sub is lost: L1 is cleared and bypassed until the subscription is back (a replica that
cannot hear invalidations must not serve from memory). A load that overlaps an invalidation of its key does
not enter L1 (invalidations are remembered per key for a minute), so a stale read cannot be re-cached behind
a write, while writes to other keys leave fills alone.
Redis down: the L2 breaker opens and requests go to L1 (when subscribed) and PostgreSQL, never a 500.

Tracing (:mod:`shared.tracing`): in a sampled request each level consulted is a span, ``cache L1`` (the lookup),
``cache L2`` (the Redis read; the fill lock and the wait for a peer's fill are ``cache L2 lock``), and
``cache PostgreSQL`` (the loader, whose queries are its children) then ``cache L2 put``; each says
``cache.hit`` where a level can hit. A fill shared by several requests (single-flight) is traced under the request
that started it. Unsampled, the hot path (an L1 hit) pays one ContextVar read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field

import orjson
import structlog
from cachetools import TTLCache
from redis.exceptions import RedisError

from apiserver.cache.entry import Entry, SourceUnavailable
from apiserver.cache.local import LocalCache
from apiserver.cache.redis import GENERATION_KEY, INVALIDATION_CHANNEL, L2Unavailable, RedisCache
from apiserver.cache.stats import CacheStats
from shared import spans

Loader = Callable[[], Awaitable[tuple[int, bytes]]]
CACHE_KEY = "cache.key"
CACHE_HIT = "cache.hit"
_log = structlog.get_logger("apiserver.cache")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    fresh_ttl: float = 60.0  # a found resource is served from cache this long without asking PostgreSQL
    negative_ttl: float = 5.0  # a 404 is remembered this long
    list_ttl: float = 30.0  # a list page (also invalidated by generation on every write)
    stale_ttl: float = 600.0  # how long an entry is kept for stale-if-error after it stops being fresh
    lock_ttl: float = 2.0  # cross-process fill lock
    lock_wait: float = 0.05  # how long a loser waits for the winner's fill before asking PostgreSQL itself


@dataclass(frozen=True, slots=True)
class Lookup:
    entry: Entry
    source: str  # "l1", "l2", "db" or "stale"

    @property
    def stale(self) -> bool:
        return self.source == "stale"


@dataclass(slots=True)
class _Subscription:
    connected: bool = False
    reconnects: int = 0
    last_error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class TwoLevelCache:
    def __init__(
        self,
        l1: LocalCache,
        l2: RedisCache,
        *,
        config: CacheConfig,
        stats: CacheStats,
        instance_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.l1 = l1
        self.l2 = l2
        self.config = config
        self.stats = stats
        self.instance_id = instance_id
        self._clock = clock
        self._epoch = 0  # bumped when the whole L1 is dropped (clear, pub/sub lost or regained)
        self._sequence = 0  # bumped per invalidation; _invalidated_at remembers it per key for a while
        # Only invalidations newer than the oldest fill in flight matter; fills take far less than 60 s.
        self._invalidated_at: TTLCache[str, int] = TTLCache(maxsize=100_000, ttl=60.0)
        self._inflight: dict[str, asyncio.Future[Lookup]] = {}
        self.list_generation = 0
        self.subscription = _Subscription()
        self.on_write_position: Callable[[int], None] | None = None

    @property
    def l1_enabled(self) -> bool:
        return self.subscription.connected

    # -- reads -------------------------------------------------------------------------------------------

    def peek_l1(self, key: str) -> Entry | None:
        """The fresh L1 entry for ``key``, or None; the hot path calls this before anything async."""
        if not self.subscription.connected:
            return None
        if spans.active() is None:
            return self._peek_l1(key)
        with spans.child_span("cache L1", attributes={CACHE_KEY: key}) as span:
            entry = self._peek_l1(key)
            if span is not None:
                span.set_attribute(CACHE_HIT, entry is not None)
            return entry

    def _peek_l1(self, key: str) -> Entry | None:
        entry = self.l1.get(key)
        if entry is not None and entry.is_fresh(self._clock()):
            self.stats.hit("l1")
            return entry
        self.stats.miss("l1")
        return None

    async def get(self, key: str, loader: Loader) -> Lookup:
        entry = self.peek_l1(key)
        if entry is not None:
            return Lookup(entry, "l1")
        return await self.load(key, loader)

    async def load(self, key: str, loader: Loader) -> Lookup:
        """The L2/PostgreSQL part of ``get``, for a caller that already missed ``peek_l1`` (counted once)."""
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fill(key, loader))
            self._inflight[key] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(pending)

    async def _fill(self, key: str, loader: Loader) -> Lookup:
        epoch = self._fill_token()
        stale = self.l1.get(key) if self.subscription.connected else None
        lock: str | None = None  # our owner token while we hold cache:lock:{key}
        l2_up = True
        try:
            with spans.child_span("cache L2", attributes={CACHE_KEY: key}) as span:
                cached = await self.l2.get(key)
                fresh = cached is not None and cached.is_fresh(self._clock())
                if span is not None:
                    span.set_attribute(CACHE_HIT, fresh)
            if fresh and cached is not None:
                self.stats.hit("l2")
                self._store_l1(key, cached, epoch)
                return Lookup(cached, "l2")
            self.stats.miss("l2")
            stale = _newer(stale, cached)
            with spans.child_span("cache L2 lock", attributes={CACHE_KEY: key}) as span:
                lock = await self.l2.try_lock(key, self.config.lock_ttl)
                landed = await self._await_peer_fill(key) if lock is None else None
                if span is not None:
                    span.set_attribute(CACHE_HIT, landed is not None)  # a peer's fill served us
            if landed is not None:
                self._store_l1(key, landed, epoch)
                return Lookup(landed, "l2")
        except L2Unavailable:
            l2_up = False
        try:
            return await self._load(key, loader, stale, epoch, l2_up=l2_up)
        finally:
            if lock is not None:
                with suppress(L2Unavailable):
                    await self.l2.unlock(key, lock)

    async def _await_peer_fill(self, key: str) -> Entry | None:
        deadline = self._clock() + self.config.lock_wait
        while self._clock() < deadline:
            await asyncio.sleep(0.005)
            cached = await self.l2.get(key)
            if cached is not None and cached.is_fresh(self._clock()):
                self.stats.hit("l2")
                return cached
        return None

    async def _load(
        self, key: str, loader: Loader, stale: Entry | None, epoch: tuple[int, int], *, l2_up: bool
    ) -> Lookup:
        try:
            with spans.child_span("cache PostgreSQL", attributes={CACHE_KEY: key}):
                version, payload = await loader()
        except SourceUnavailable:
            if stale is not None:
                self.stats.stale_served += 1
                return Lookup(stale, "stale")
            raise
        entry = Entry(version, self._clock() + self._ttl_for(key, payload), payload)
        if l2_up:
            with suppress(L2Unavailable), spans.child_span("cache L2 put", attributes={CACHE_KEY: key}):
                await self.l2.put(key, entry, self.config.stale_ttl)
        self._store_l1(key, entry, epoch)
        return Lookup(entry, "db")

    def _ttl_for(self, key: str, payload: bytes) -> float:
        if key.startswith("list:"):
            return self.config.list_ttl
        return self.config.fresh_ttl if payload else self.config.negative_ttl

    def _fill_token(self) -> tuple[int, int]:
        return self._epoch, self._sequence

    def _store_l1(self, key: str, entry: Entry, token: tuple[int, int]) -> None:
        """Keep a fill in L1 unless its key was invalidated (or the whole L1 dropped) while it was loading.

        Tracking invalidations per key, not globally, matters under writes: with a global epoch every write
        anywhere discarded every fill in flight, and hot keys kept missing L1 after each write.
        """
        epoch, sequence = token
        if not self.subscription.connected or epoch != self._epoch:
            return
        if self._invalidated_at.get(key, 0) > sequence:
            return
        self.l1.put(key, entry)

    def list_key(self, query: str) -> str:
        return f"list:{self.list_generation}:{query}"

    # -- writes ------------------------------------------------------------------------------------------

    def entry_for_write(self, version: int, payload: bytes) -> Entry:
        """The entry a committed write stores: fresh now; a deletion passes ``b""`` (a tombstone)."""
        return Entry(version, self._clock() + (self.config.fresh_ttl if payload else self.config.negative_ttl), payload)

    async def write_through(self, key: str, entry: Entry, *, lsn: int = 0) -> None:
        """After a PostgreSQL commit: make every replica forget the old value, and store the new one in L2.

        ``lsn`` is the commit's WAL position; peers hand it to ``on_write_position`` so their reads wait for
        a replica that has replayed it.
        """
        self._invalidate_local([key])
        message = orjson.dumps({"evict": [key], "origin": self.instance_id, "lsn": lsn})
        try:
            generation = await self.l2.write_through(key, entry, self.config.stale_ttl, message)
        except L2Unavailable:
            # Committed but not announced: peers that still hear pub/sub keep their L1 until TTL; say so loudly.
            _log.warning("cache_invalidation_not_published", key=key)
            return
        self.list_generation = max(self.list_generation, generation)

    async def clear(self) -> int:
        """Admin action: drop the ``cache:`` namespace in Redis and every replica's L1."""
        deleted = await self.l2.clear_namespace()
        generation = await self.l2.bump_generation()
        await self.l2.publish(orjson.dumps({"clear": True, "gen": generation, "origin": self.instance_id}))
        self.l1.clear()
        self._epoch += 1
        self.list_generation = max(self.list_generation, generation)
        return deleted

    def _invalidate_local(self, keys: list[str]) -> None:
        self._sequence += 1
        for key in keys:
            self.l1.evict(key)
            self._invalidated_at[key] = self._sequence

    def apply_message(self, raw: bytes) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            _log.warning("cache_bad_invalidation_message")
            return
        if message.get("clear"):
            self._epoch += 1
            self.l1.clear()
        elif message.get("origin") != self.instance_id:
            # Our own writes invalidated locally before publishing; replaying them would only drop fresh fills.
            self._invalidate_local([str(key) for key in message.get("evict", [])])
        generation = message.get("gen")
        if isinstance(generation, int):
            self.list_generation = max(self.list_generation, generation)
        lsn = message.get("lsn")
        if isinstance(lsn, int) and lsn and self.on_write_position is not None:
            self.on_write_position(lsn)

    # -- pub/sub -----------------------------------------------------------------------------------------

    async def run_subscriber(self) -> None:
        """Keep the invalidation subscription alive; L1 is used only while it is."""
        backoff = 0.05
        while True:
            pubsub = self.l2.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(INVALIDATION_CHANNEL)
                raw_generation = await self.l2.client.get(GENERATION_KEY)
                self.list_generation = max(self.list_generation, int(raw_generation or 0))
                self._connect()
                backoff = 0.05
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self.apply_message(message["data"])
            except (RedisError, OSError) as exc:
                self._disconnect(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            finally:
                with suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated

    def _connect(self) -> None:
        # Invalidations may have been missed while disconnected: start from an empty L1.
        self.l1.clear()
        self._epoch += 1
        self.subscription.connected = True
        self.subscription.reconnects += 1
        _log.info("cache_subscription_up", reconnects=self.subscription.reconnects)

    def _disconnect(self, exc: BaseException) -> None:
        if self.subscription.connected:
            _log.warning("cache_subscription_lost", error=type(exc).__name__)
        self.subscription.connected = False
        self.subscription.last_error = type(exc).__name__
        self.l1.clear()
        self._epoch += 1


def _newer(first: Entry | None, second: Entry | None) -> Entry | None:
    if first is None:
        return second
    if second is None:
        return first
    return first if first.version >= second.version else second
