"""The rate limiter contract every implementation honours, and the algorithm they all run.

Algorithm: a sliding window of ``window`` seconds split into ``buckets`` sub-buckets of ``width = window /
buckets`` seconds. Each identity keeps one counter per sub-bucket (a Redis hash, or a dict in-process). A
request at time ``t`` falls in bucket ``i = floor(t / width)`` and is admitted when the sum of buckets
``i - buckets .. i`` (``buckets + 1`` of them) plus its cost stays within the limit::

      width ├──┤
    ───┬──┬──┬──┬──┬──┬──┬──┬──┬──► time          buckets = 6, limit = L
       │  │░░│▓▓│▓▓│▓▓│▓▓│▓▓│▓▓│
       │  └──┴──┴──┴──┴──┴──┘▲ t                 counted: the 7 buckets ▓/░ (i-6 .. i)
       │     ├─── window ───┤                    ░ = partly before t - window, still counted

The counted buckets always cover the whole interval ``(t - window, t]``, so a request is admitted only when
*every* request admitted in the last ``window`` seconds is already counted. Hence the error bound:

* never over: in any interval of length ``window`` at most ``limit`` requests are admitted (exact, no
  probabilistic estimate like the weighted two-window counter, which can admit up to ``2 * limit``);
* slightly strict: a request keeps counting for up to ``window + width`` seconds, so a client pacing at
  exactly the limit may be refused for at most ``width`` seconds (1/60 of the window by default).

Memory is at most ``buckets + 1`` small integers per active identity whatever the limit, unlike a sliding log
that keeps one entry per admitted request (100,000 for an enterprise minute). A decision costs O(1): the
identity keeps a running total of its counted buckets and the lowest and highest bucket index stored; a bucket
is subtracted from the total once, when it leaves the window, instead of every bucket being summed and sorted on
every request.

The Redis implementation runs the algorithm in one Lua script that also checks the credential's revocation
markers, so each request costs exactly one round trip; the local one runs it in-process for unit tests and as
the fail-open fallback while Redis is down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class WindowConfig:
    window: float = 60.0
    buckets: int = 60

    @property
    def width(self) -> float:
        return self.window / self.buckets


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one request. ``reset``: seconds until the oldest counted request stops counting;
    ``retry_after``: seconds until a refused request would be admitted (0 when admitted)."""

    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float = 0.0
    revoked: bool = False

    @property
    def retry_after_seconds(self) -> int:
        return max(1, math.ceil(self.retry_after))


class LimiterUnavailable(Exception):
    """The limiter's storage cannot be reached (and the limiter was told to fail closed)."""


class RateLimiter(Protocol):
    """Counts requests per identity key; safe to call from many replicas at once."""

    @property
    def config(self) -> WindowConfig: ...

    async def hit(self, key: str, limit: int, *, revocation_keys: Sequence[str] = (), cost: int = 1) -> Decision:
        """Admit or refuse one request for ``key`` and count it when admitted. When any of ``revocation_keys``
        is marked (a logged-out token or family, a revoked key), answer ``revoked=True`` without counting."""
        ...

    async def peek(self, key: str, limit: int) -> Decision:
        """The state of ``key`` as the next request would see it, without counting anything."""
        ...

    async def close(self) -> None:
        """Release what the limiter holds (connections, tasks); called once at shutdown."""
        ...


@dataclass(frozen=True, slots=True)
class WindowState:
    """What the algorithm concludes from one identity's buckets (shared by every implementation)."""

    allowed: bool
    total: int
    reset: float
    retry_after: float


@dataclass(slots=True)
class Buckets:
    """One identity's window: the counts of its non-empty sub-buckets, their running total, and the lowest and
    highest bucket index stored (``first``/``last`` mean nothing while ``counts`` is empty)."""

    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0
    first: int = 0
    last: int = 0


def _expire(buckets: Buckets, oldest: int) -> None:
    """Drop the buckets older than ``oldest`` from the running total; ``first`` becomes the oldest one left."""
    if not buckets.counts or buckets.first >= oldest:
        return
    if buckets.last < oldest:  # every counted request is out of the window
        buckets.counts.clear()
        buckets.total = 0
        return
    first = None
    for index in range(buckets.first, buckets.last + 1):
        count = buckets.counts.get(index)
        if count is None:
            continue
        if index < oldest:
            buckets.total -= count
            del buckets.counts[index]
        elif first is None:
            first = index
    buckets.first = oldest if first is None else first


def _retry_after(buckets: Buckets, need: int, now: float, config: WindowConfig) -> float:
    """Seconds until ``need`` counted requests have left the window (0 when they never will)."""
    freed = 0
    for index in range(buckets.first, buckets.last + 1):
        freed += buckets.counts.get(index, 0)
        if freed >= need:
            return (index + config.buckets + 1) * config.width - now
    return 0.0


def evaluate(buckets: Buckets, now: float, limit: int, cost: int, config: WindowConfig) -> WindowState:
    """Decide for one identity at ``now`` and update ``buckets`` in place (expiry, and ``cost`` added to bucket
    ``floor(now / width)`` when admitted with ``cost > 0``).

    O(1) per decision: the running total is adjusted as buckets leave the window instead of summing every bucket,
    so a bucket is visited once when it expires (at most ``buckets + 1`` of them in one call, after a pause).
    The Lua script is a line-for-line port of this function.
    """
    width = config.width
    current = math.floor(now / width)
    _expire(buckets, current - config.buckets)
    allowed = buckets.total + cost <= limit if cost > 0 else buckets.total < limit
    if allowed and cost > 0:
        if not buckets.counts:
            buckets.first = buckets.last = current
        buckets.counts[current] = buckets.counts.get(current, 0) + cost
        buckets.total += cost
        buckets.first = min(buckets.first, current)  # a replica whose clock runs behind
        buckets.last = max(buckets.last, current)
    total = buckets.total
    retry_after = 0.0 if allowed else _retry_after(buckets, total + max(cost, 1) - limit, now, config)
    reset = (buckets.first + config.buckets + 1) * width - now if buckets.counts else 0.0
    return WindowState(allowed, total, max(reset, 0.0), max(retry_after, 0.0))
