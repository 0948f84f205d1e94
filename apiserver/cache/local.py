"""L1: a bounded in-process LRU whose entries expire after the stale-if-error window.

Freshness is tracked inside each :class:`Entry`, so an entry past ``fresh_until`` can still be served when
PostgreSQL is down; the store itself only drops entries ``max_age`` seconds after they were put, and the least
recently read ones once it holds ``max_entries``. Versioned puts mirror the Redis Lua contract: an older version
never replaces a newer one.

Why not ``cachetools.TTLCache`` (which this replaced): every L1 hit, the apiserver's whole hot path, reads here
once, and TTLCache's read (a timer context manager, a linked-list relink, three method layers) cost more than a
microsecond of it. Here a read is one dict lookup, one comparison and one ``move_to_end``::

    _items    OrderedDict key -> (expires, entry), least recently read first  (LRU eviction from the front)
    _expiry   deque of (expires, key) in put order == expiry order (one max_age for all), so expired entries
              are dropped from its front on every put and on len(); a pair whose key was put again since, or
              evicted, no longer matches its item and is skipped
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from apiserver.cache.entry import Entry


class LocalCache:
    def __init__(self, *, max_entries: int, max_age: float, clock: Callable[[], float] = time.time) -> None:
        self._max_entries = max_entries
        self._max_age = max_age
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, Entry]] = OrderedDict()
        self._expiry: deque[tuple[float, str]] = deque()
        self.evictions = 0  # entries dropped to make room (not expiries)

    def get(self, key: str) -> Entry | None:
        item = self._items.get(key)
        if item is None or item[0] <= self._clock():
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: str, entry: Entry) -> bool:
        now = self._clock()
        self._expire(now)
        items = self._items
        current = items.get(key)
        if current is not None and current[0] > now and current[1].version > entry.version:
            return False
        expires = now + self._max_age
        items[key] = (expires, entry)
        items.move_to_end(key)
        self._expiry.append((expires, key))
        while len(items) > self._max_entries:
            items.popitem(last=False)
            self.evictions += 1
        if len(self._expiry) > 2 * self._max_entries + 64:  # mostly pairs of keys put again: rebuild
            self._expiry = deque(sorted((expires, key) for key, (expires, _) in items.items()))
        return True

    def evict(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()
        self._expiry.clear()

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._items)

    def _expire(self, now: float) -> None:
        expiry, items = self._expiry, self._items
        while expiry and expiry[0][0] <= now:
            expires, key = expiry.popleft()
            item = items.get(key)
            if item is not None and item[0] == expires:
                del items[key]
