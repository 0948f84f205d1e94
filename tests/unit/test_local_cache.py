"""L1: versioned puts, LRU bounds with eviction counts, and expiry on an injected clock."""

from __future__ import annotations

from apiserver.cache.entry import Entry
from apiserver.cache.local import LocalCache
from tests.support.clock import ManualClock


def test_older_version_never_replaces_newer() -> None:
    cache = LocalCache(max_entries=10, max_age=60)
    assert cache.put("k", Entry(2, 200.0, b"two"))
    assert not cache.put("k", Entry(1, 300.0, b"one"))
    assert cache.get("k") == Entry(2, 200.0, b"two")
    assert cache.put("k", Entry(2, 400.0, b"two"))  # the same version refreshes freshness


def test_bounded_with_eviction_count() -> None:
    cache = LocalCache(max_entries=3, max_age=60)
    for index in range(5):
        cache.put(f"k{index}", Entry(1, 0.0, b"x"))
    assert len(cache) == 3
    assert cache.evictions == 2
    assert cache.get("k0") is None


def test_entries_expire_after_max_age() -> None:
    clock = ManualClock(100.0)
    cache = LocalCache(max_entries=3, max_age=10, clock=clock)
    cache.put("k", Entry(1, 105.0, b"x"))
    clock.advance_to(109.0)
    assert cache.get("k") is not None
    clock.advance_to(111.0)
    assert cache.get("k") is None


def test_entry_encoding_round_trip() -> None:
    entry = Entry(7, 1234.5, b'{"a":"|"}')
    assert Entry.decode(entry.encode()) == entry
    assert Entry.decode(b"garbage") is None
    assert Entry(0, 0.0, b"").absent
