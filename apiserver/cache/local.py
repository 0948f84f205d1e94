"""L1: a bounded in-process LRU whose entries expire after the stale-if-error window.

Built on ``cachetools.TTLCache`` (LRU eviction once full, per-entry expiry). Freshness is tracked inside each
:class:`Entry`, so an entry past ``fresh_until`` can still be served when PostgreSQL is down. Versioned puts
mirror the Redis Lua contract: an older version never replaces a newer one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TTLCache

from apiserver.cache.entry import Entry


class _CountingTTLCache(TTLCache[str, Entry]):
    evictions = 0

    def popitem(self) -> tuple[str, Entry]:
        # TTLCache calls popitem only to make room: each call is one capacity eviction.
        self.evictions += 1
        return super().popitem()


class LocalCache:
    def __init__(self, *, max_entries: int, max_age: float, clock: Callable[[], float] = time.time) -> None:
        self._data = _CountingTTLCache(maxsize=max_entries, ttl=max_age, timer=clock)

    def get(self, key: str) -> Entry | None:
        return self._data.get(key)

    def put(self, key: str, entry: Entry) -> bool:
        current = self._data.get(key)
        if current is not None and current.version > entry.version:
            return False
        self._data[key] = entry
        return True

    def evict(self, key: str) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    @property
    def evictions(self) -> int:
        return self._data.evictions
