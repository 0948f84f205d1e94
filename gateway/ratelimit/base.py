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

Memory is ``buckets + 1`` small integers per active identity whatever the limit, unlike a sliding log that
keeps one entry per admitted request (100,000 for an enterprise minute).

The Redis implementation runs the algorithm in one Lua script that also checks the credential's revocation
markers, so each request costs exactly one round trip; the local one runs it in-process for unit tests and as
the fail-open fallback while Redis is down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class WindowState:
    """What the algorithm concludes from one identity's buckets (shared by every implementation)."""

    allowed: bool
    total: int
    reset: float
    retry_after: float


def evaluate(
    counts: dict[int, int], now: float, limit: int, cost: int, config: WindowConfig
) -> tuple[WindowState, list[int]]:
    """Decide for ``counts`` (bucket index -> count) at ``now``; return the verdict and the stale buckets.

    The caller writes back: deletes the stale indices and, when admitted with ``cost > 0``, adds ``cost`` to
    bucket ``floor(now / width)``. The Lua script is a line-for-line port of this function.
    """
    width = config.width
    current = math.floor(now / width)
    oldest = current - config.buckets
    stale = [index for index in counts if index < oldest]
    live = sorted((index, count) for index, count in counts.items() if index >= oldest)
    total = sum(count for _, count in live)
    allowed = total + cost <= limit if cost > 0 else total < limit
    if allowed and cost > 0:
        total += cost
        if not live or live[-1][0] != current:
            live.append((current, cost))
    retry_after = 0.0
    if not allowed:
        need, freed = total + max(cost, 1) - limit, 0
        for index, count in live:
            freed += count
            if freed >= need:
                retry_after = (index + config.buckets + 1) * width - now
                break
    reset = (live[0][0] + config.buckets + 1) * width - now if live else 0.0
    return WindowState(allowed, total, max(reset, 0.0), max(retry_after, 0.0)), stale
