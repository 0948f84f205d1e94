"""Failed-login limits per account and per client address, so passwords cannot be guessed at API speed.

Counters live in Redis under ``auth:login:`` (shared by every replica, expiring ``window`` seconds after the
first failure); while Redis is unreachable the same counts are kept in-process, so an outage never turns the
limit off. Account keys use a hash of the lower-cased email: no addresses in Redis key names.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from cachetools import TTLCache
from redis.exceptions import RedisError

from shared.keys import RedisClient

_PREFIX = "auth:login:"


def _account_key(email: str) -> str:
    return _PREFIX + "acct:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def _address_key(address: str) -> str:
    return _PREFIX + "addr:" + address


class LoginThrottle:
    def __init__(
        self,
        redis: RedisClient,
        *,
        max_per_account: int,
        max_per_address: int,
        window: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._limits = (max_per_account, max_per_address)
        self._window = window
        self._local: TTLCache[str, int] = TTLCache(maxsize=100_000, ttl=window, timer=clock)

    async def blocked_for(self, email: str, address: str) -> int | None:
        """Seconds until another attempt is allowed, or None when this one may proceed."""
        keys = (_account_key(email), _address_key(address))
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
                pipe.ttl(key)
            account, account_ttl, address_count, address_ttl = await pipe.execute()
            counts = (int(account or 0), int(address_count or 0))
            ttls = (int(account_ttl), int(address_ttl))
        except (RedisError, OSError):
            counts = (self._local.get(keys[0], 0), self._local.get(keys[1], 0))
            ttls = (self._window, self._window)
        waits = [max(ttl, 1) for count, limit, ttl in zip(counts, self._limits, ttls, strict=True) if count >= limit]
        return max(waits) if waits else None

    async def failed(self, email: str, address: str) -> None:
        keys = (_account_key(email), _address_key(address))
        try:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, self._window, nx=True)
            await pipe.execute()
        except (RedisError, OSError):
            for key in keys:
                self._local[key] = self._local.get(key, 0) + 1

    async def succeeded(self, email: str) -> None:
        key = _account_key(email)
        self._local.pop(key, None)
        try:
            await self._redis.delete(key)
        except (RedisError, OSError):
            return
