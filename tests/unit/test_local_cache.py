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


def test_reads_keep_an_entry_from_eviction() -> None:
    cache = LocalCache(max_entries=2, max_age=60)
    cache.put("a", Entry(1, 0.0, b"a"))
    cache.put("b", Entry(1, 0.0, b"b"))
    assert cache.get("a") is not None  # now "b" is the least recently read
    cache.put("c", Entry(1, 0.0, b"c"))
    assert (cache.get("a"), cache.get("b")) == (Entry(1, 0.0, b"a"), None)
    assert cache.evictions == 1


def test_a_put_again_entry_lives_max_age_from_its_last_put() -> None:
    clock = ManualClock(100.0)
    cache = LocalCache(max_entries=3, max_age=10, clock=clock)
    cache.put("k", Entry(1, 0.0, b"old"))
    clock.advance_to(105.0)
    cache.put("k", Entry(2, 0.0, b"new"))
    clock.advance_to(112.0)  # past the first put's expiry: that one must not take the second with it
    cache.put("other", Entry(1, 0.0, b"x"))
    assert cache.get("k") == Entry(2, 0.0, b"new")
    assert len(cache) == 2
    clock.advance_to(116.0)
    assert cache.get("k") is None
    assert len(cache) == 1


def test_expired_newer_version_does_not_block_a_put() -> None:
    clock = ManualClock(100.0)
    cache = LocalCache(max_entries=3, max_age=10, clock=clock)
    cache.put("k", Entry(5, 0.0, b"five"))
    clock.advance_to(111.0)
    assert cache.put("k", Entry(3, 0.0, b"three"))
    assert cache.get("k") == Entry(3, 0.0, b"three")


def test_expiry_bookkeeping_stays_bounded_under_rewrites() -> None:
    clock = ManualClock(100.0)
    cache = LocalCache(max_entries=4, max_age=1000, clock=clock)
    for version in range(1000):
        cache.put(f"k{version % 3}", Entry(version, 0.0, b"x"))
    assert len(cache._expiry) <= 2 * 4 + 64
    assert [cache.get(f"k{i}") is not None for i in range(3)] == [True, True, True]
    clock.advance(1000)
    assert len(cache) == 0


def test_entry_carries_its_etag() -> None:
    assert Entry(7, 0.0, b"x").etag == '"7"'
    assert Entry(7, 0.0, b"x") == Entry(7, 0.0, b"x")
