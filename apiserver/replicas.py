"""Read replicas: cache-miss reads go to a replica only when it has replayed every write we know of.

    write (primary) ── commit ─► SELECT pg_current_wal_lsn() ─► note_write(lsn) ─► published with the
                                                                  cache invalidation; every replica
                                                                  process notes it too
    read (cache miss) ─► pick(): a replica whose breaker allows it and whose replayed LSN ≥ required LSN
                          │ none qualifies (lagging, down, or none configured)
                          └────────────────────────────────────────────────────────────► primary

A background poller reads each replica's ``pg_last_wal_replay_lsn()`` every ``interval`` seconds. This gives
read-your-writes for the writer (its own write raises the required LSN before the response is sent) and
keeps lagging replicas from filling the shared cache with rows older than a write that was already
announced. A replica that fails a query or a poll trips its breaker and is skipped until it recovers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from shared.breaker import AsyncCircuitBreaker, BreakerOpen

_log = structlog.get_logger("apiserver.replicas")


def parse_lsn(text: str) -> int:
    """``'16/B374D848'`` → an integer that orders like the WAL position."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@dataclass
class Replica:
    name: str
    pool: asyncpg.Pool[Any]
    breaker: AsyncCircuitBreaker
    replayed_lsn: int = -1


class ReadRouter:
    def __init__(self, replicas: Sequence[Replica], *, interval: float = 0.1) -> None:
        self.replicas = list(replicas)
        self.interval = interval
        self.required_lsn = 0
        self._next = 0

    def note_write(self, lsn: int) -> None:
        self.required_lsn = max(self.required_lsn, lsn)

    def pick(self) -> Replica | None:
        """The next caught-up replica in rotation, or None to read from the primary."""
        count = len(self.replicas)
        for offset in range(count):
            replica = self.replicas[(self._next + offset) % count]
            if replica.replayed_lsn >= self.required_lsn and replica.breaker.would_allow():
                self._next = (self._next + offset + 1) % count
                return replica
        return None

    async def poll_once(self) -> None:
        await asyncio.gather(*(self._poll(replica) for replica in self.replicas))

    async def _poll(self, replica: Replica) -> None:
        try:
            async with replica.breaker.guard():
                lsn = await replica.pool.fetchval("SELECT pg_last_wal_replay_lsn()::text", timeout=self.interval * 5)
        except BreakerOpen:
            return
        except Exception as exc:
            _log.debug("replica_poll_failed", replica=replica.name, error=type(exc).__name__)
            replica.replayed_lsn = -1
            return
        # NULL means the server is not (or no longer) in recovery: not a replica we may read from blindly.
        replica.replayed_lsn = parse_lsn(lsn) if lsn else -1

    async def run_poller(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval)
