"""What both cache levels store: a payload with its version and its freshness deadline."""

from __future__ import annotations

from dataclasses import dataclass, field


def etag_for(version: int) -> str:
    """The strong ETag of a resource version (the one place its format is defined)."""
    return f'"{version}"'


@dataclass(frozen=True, slots=True)
class Entry:
    """``payload`` is the serialized JSON response body; ``b""`` means "known absent" (a cached 404).

    ``fresh_until`` is a wall-clock time in seconds: past it the entry is stale, still kept for
    stale-if-error until the store's own TTL drops it.
    """

    version: int
    fresh_until: float
    payload: bytes
    # The ETag this version is served with, made once per entry rather than once per hit.
    etag: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "etag", etag_for(self.version))

    @property
    def absent(self) -> bool:
        return not self.payload

    def is_fresh(self, now: float) -> bool:
        return now < self.fresh_until

    def encode(self) -> bytes:
        return b"%d|%d|%s" % (self.version, int(self.fresh_until * 1000), self.payload)

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        version, sep1, rest = raw.partition(b"|")
        fresh_ms, sep2, payload = rest.partition(b"|")
        if not (sep1 and sep2):
            return None
        try:
            return cls(int(version), int(fresh_ms) / 1000, payload)
        except ValueError:
            return None


class SourceUnavailable(Exception):
    """The source of truth (PostgreSQL) cannot answer; the cache may serve a stale entry instead."""
