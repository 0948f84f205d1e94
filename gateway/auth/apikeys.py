"""API keys: shown once, stored as SHA-256, found by their public prefix, revoked everywhere within a second.

A key looks like ``sak_<12 hex>_<43 urlsafe>``; the first 16 characters are the prefix (unique, shown in
listings, used to find the row), the rest is 256 random bits. Plain SHA-256 is enough for a key of that
entropy (no salt or slow hash needed: there is nothing to brute-force), and the comparison is constant-time.

Revocation reaches every replica two ways::

    DELETE /keys/{id} ─► UPDATE api_keys SET revoked_at ─► SET auth:revoked:{user:<owner>}:key:{id} (1 h)
                                                              │ read by the rate-limit script on every request
                                                              ▼ so the next request anywhere gets 401
    look-ups are cached per process for API_KEY_CACHE_TTL (≤ 1 s), so even with Redis down a revoked key
    stops working within that time.

``last_used_at`` is written at most once a minute per key per process, in the background, so an API key
costs no database write per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from cachetools import TTLCache
from redis.exceptions import RedisError

from gateway.auth.principal import API_KEY, revocation_marker, user_limit_key
from shared import queries
from shared.identity import AccountRole, AccountTier
from shared.keys import RedisClient

KEY_PREFIX = "sak_"
PREFIX_LENGTH = len(KEY_PREFIX) + 12
MAX_KEYS_PER_USER = 100
REVOCATION_MARKER_TTL = 3600
TOUCH_INTERVAL = 60.0
_log = structlog.get_logger("gateway.apikeys")


@dataclass(frozen=True, slots=True)
class KeyOwner:
    key_id: int
    user_id: int
    role: AccountRole
    tier: AccountTier


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "last_used_at": None if self.last_used_at is None else self.last_used_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
        }


class TooManyKeys(Exception):
    pass


def new_key() -> tuple[str, str]:
    """(full key, its prefix)."""
    prefix = KEY_PREFIX + secrets.token_hex(6)
    return f"{prefix}_{secrets.token_urlsafe(32)}", prefix


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """The key store. ``pool`` is read on use: the PostgreSQL pool opens at start-up, after this object (which
    the authentication middleware holds) is built by ``create_app``."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool[Any]],
        redis: RedisClient,
        *,
        cache_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._redis = redis
        self._clock = clock
        self._cache: TTLCache[bytes, KeyOwner | None] | None = (
            TTLCache(maxsize=10_000, ttl=cache_ttl, timer=clock) if cache_ttl > 0 else None
        )
        self._touched: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def create(self, user_id: int, name: str) -> tuple[str, KeyInfo]:
        key, prefix = new_key()
        async with self._pool().acquire() as connection, connection.transaction():
            # Serialise creations per user so the cap holds under concurrency.
            await queries.execute(
                connection, "SELECT pg_advisory_xact_lock(hashtext('api_keys'), $1::int)", user_id % 2**31
            )
            count = await queries.fetchval(
                connection, "SELECT count(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL", user_id
            )
            if count >= MAX_KEYS_PER_USER:
                raise TooManyKeys
            row = await queries.fetchrow(
                connection,
                "INSERT INTO api_keys (user_id, name, prefix, key_hash) VALUES ($1, $2, $3, $4) "
                "RETURNING id, name, prefix, created_at, last_used_at, expires_at",
                user_id,
                name,
                prefix,
                key_digest(key),
            )
        if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
            raise RuntimeError("api key insert returned no row")
        return key, KeyInfo(**dict(row.items()))

    async def list(self, user_id: int) -> list[KeyInfo]:
        rows = await queries.fetch(
            self._pool(),
            "SELECT id, name, prefix, created_at, last_used_at, expires_at FROM api_keys "
            "WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id",
            user_id,
        )
        return [KeyInfo(**dict(row.items())) for row in rows]

    async def revoke(self, user_id: int, key_id: int) -> bool:
        revoked = await queries.fetchval(
            self._pool(),
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING id",
            key_id,
            user_id,
        )
        if revoked is None:
            return False
        try:
            marker = revocation_marker(user_limit_key(user_id), API_KEY, key_id)
            await self._redis.set(marker, b"1", ex=REVOCATION_MARKER_TTL)
        except (RedisError, OSError) as exc:
            # The per-process cache TTL (≤ 1 s) still bounds how long the key keeps working.
            _log.warning("api_key_revocation_marker_failed", key_id=key_id, error=type(exc).__name__)
        if self._cache is not None:
            self._cache.clear()
        return True

    async def authenticate(self, key: str) -> KeyOwner | None:
        """The owner of a valid, unrevoked, unexpired key; None otherwise (cached briefly either way)."""
        if not key.startswith(KEY_PREFIX) or len(key) > 128:
            return None
        digest = key_digest(key)
        if self._cache is not None and digest in self._cache:
            owner = self._cache[digest]
        else:
            owner = await self._lookup(key[:PREFIX_LENGTH], digest)
            if self._cache is not None:
                self._cache[digest] = owner
        if owner is not None:
            self._touch(owner.key_id)
        return owner

    async def _lookup(self, prefix: str, digest: bytes) -> KeyOwner | None:
        row = await queries.fetchrow(
            self._pool(),
            "SELECT k.id, k.key_hash, u.id AS user_id, u.role, u.tier FROM api_keys k JOIN users u ON u.id = k.user_id "
            "WHERE k.prefix = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) "
            "AND NOT u.disabled",
            prefix,
        )
        if row is None or not hmac.compare_digest(bytes(row["key_hash"]), digest):
            return None
        return KeyOwner(key_id=row["id"], user_id=row["user_id"], role=row["role"], tier=row["tier"])

    def _touch(self, key_id: int) -> None:
        now = self._clock()
        if now - self._touched.get(key_id, -TOUCH_INTERVAL) < TOUCH_INTERVAL:
            return
        self._touched[key_id] = now
        task = asyncio.create_task(self._write_last_used(key_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_last_used(self, key_id: int) -> None:
        try:
            await queries.execute(self._pool(), "UPDATE api_keys SET last_used_at = now() WHERE id = $1", key_id)
        except (TimeoutError, asyncpg.PostgresError, OSError) as exc:
            _log.debug("api_key_touch_failed", error=type(exc).__name__)

    async def close(self) -> None:
        """Wait for pending last-used writes (called on shutdown, before the pool closes)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
