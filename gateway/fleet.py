"""Fleet-wide gateway figures: every gateway publishes its own to Redis on a heartbeat, and whichever gateway
serves the dashboard reads every live one back, sums them and sends the fleet's last 15 minutes.

Publishing, on every whole second of the wall clock (so every gateway's beats fall on the same boundaries)::

    this gateway's Prometheus families, read on the beat (never on the request path) ─► snapshot, counters c
      SET     stats:{gateways}:gateway:<id>  <snapshot JSON>  EX LIVE_TTL     the gateway's row (dies with it)
      SADD    stats:{gateways}:ids  <id>                                     the ids readers walk (never SCAN)
      HINCRBY stats:{gateways}:slot:<s>  <field>  c - c_previous   for each field that moved, and  g 1
      EXPIRE  stats:{gateways}:slot:<s>  HISTORY_TTL

Slot ``<s>`` holds the whole fleet's traffic in the second ending at epoch second ``s``: each gateway adds its own
share into the same hash, so one HGETALL per second of history gives the fleet's figures however many gateways
there are, and a gateway that joins, leaves or restarts moves no baseline. Fields: ``g`` gateways that reported,
``n`` responses (``http_requests_total``), ``429``, ``5xx``, ``d:<tier>:<decision>`` rate-limit decisions,
``l:<i>`` requests at or under latency bound ``i`` (a cumulative histogram, as ``/metrics`` has it). A second
without a hash had no gateway publishing: the charts draw a gap there, not zero traffic.

With several workers (:mod:`shared.workers`) worker 0 alone publishes, under the gateway's ``INSTANCE_ID`` (its
own id without ``-w0``): it reads the whole tier's counters (multiprocess metrics), so a gateway is one row.

Reading (every admin stream event, ``/api/v1/admin/dashboard``): SMEMBERS, then one pipeline with a GET per id
and an HGETALL per second wanted; ids whose row expired are pruned. A stream's first event carries
``HISTORY_SECONDS`` of slots, later ones the last ``RECENT_SECONDS`` (a share that landed late replaces what
was sent). Every key shares the ``{gateways}`` hash tag: each pipeline goes to one Redis Cluster node.

Memory: a slot hash is a small listpack; with every field moved (four tiers, every latency bucket) it takes 432
bytes with its key (``MEMORY USAGE``, held by tests/gateway/test_stats_fleet.py), so 15 minutes cost at most
about 0.4 MB for the whole fleet, however many gateways it has, plus one row of about 1 KB per live gateway.
Writes: one pipeline of at most about 30 commands per gateway per second. Reads: a dashboard connecting costs one
pipeline of 900 HGETALLs (about 30 ms and 0.3 MB of JSON with every field moved), each later event about 1 ms.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson
import structlog
from aiohttp import web
from redis.exceptions import RedisError

from gateway.keys import SETTINGS
from shared.keys import GATEWAY_FLEET_KEY, GATEWAY_ROW_PREFIX, GATEWAY_SLOT_PREFIX, METRICS, REDIS, RedisClient
from shared.metrics import LATENCY_BUCKETS
from shared.settings import CommonSettings
from shared.shutdown import closing, stop_tasks

STEP = 1  # seconds between beats, and the history's resolution: one constant, so every gateway's slots line up
HISTORY_SECONDS = 900  # what a dashboard gets when it connects: the last 15 minutes
HISTORY_TTL = HISTORY_SECONDS + 60
LIVE_TTL = 5  # a gateway that missed this many beats leaves the fleet (a stopped one leaves at once)
RECENT_SECONDS = 10  # the seconds every later stream event sends again
SETTLE = 0.3  # how long after a second ends it is read: every gateway's share has landed by then

Snapshot = dict[str, Any]
Counters = dict[str, int]
SnapshotSource = Callable[[web.Application], Snapshot]
_log = structlog.get_logger("gateway.fleet")


def fleet_id(common: CommonSettings) -> str:
    """The id a gateway publishes under: ``INSTANCE_ID`` (for a worker, its own id without ``-w<i>``)."""
    if common.worker_index is None:
        return common.instance_id
    return common.instance_id.removesuffix(f"-w{common.worker_index}")


def publishes(common: CommonSettings) -> bool:
    """One publisher per gateway: the lone process, or worker 0 of several."""
    return common.worker_index in (None, 0)


def counters_of(snapshot: Snapshot) -> Counters:
    """The cumulative counters a slot is made of, from a gateway snapshot (``gateway_snapshot``'s shape)."""
    http = snapshot.get("http") or {}
    by_status: Mapping[str, int] = http.get("responses_by_status") or {}
    counters = {
        "n": sum(by_status.values()),
        "429": by_status.get("429", 0),
        "5xx": sum(count for status, count in by_status.items() if status.startswith("5")),
    }
    for tier, decisions in (snapshot.get("rate_limit_decisions") or {}).items():
        for decision, count in decisions.items():
            counters[f"d:{tier}:{decision}"] = count
    for index, count in enumerate((http.get("latency_seconds") or {}).get("cumulative") or ()):
        counters[f"l:{index}"] = count
    return counters


def moved_since(previous: Counters, current: Counters) -> Counters:
    """The fields that grew since ``previous``, by how much (a counter never shrinks within one process)."""
    moved = {name: value - previous.get(name, 0) for name, value in current.items()}
    return {name: count for name, count in moved.items() if count > 0}


def rates(moved: Counters, seconds: float) -> dict[str, float]:
    """One gateway's request, 429 and 5xx rates over its last beat, for its row."""
    per_second = 1 / seconds if seconds > 0 else 0.0
    return {
        name: round(moved.get(field, 0) * per_second, 3)
        for name, field in (("requests", "n"), ("too_many", "429"), ("server_errors", "5xx"))
    }


class FleetPublisher:
    """This gateway's side of the fleet: a beat per second, keeping the counters the next beat subtracts."""

    def __init__(
        self, app: web.Application, snapshot: SnapshotSource, *, clock: Callable[[], float] = time.time
    ) -> None:
        settings = app[SETTINGS]
        self.id = fleet_id(settings.common)
        self._app = app
        self._redis: RedisClient = app[REDIS]
        self._snapshot = snapshot
        self._clock = clock
        self._about = {"instance": self.id, "port": settings.port, "workers": settings.common.workers}
        # A lone process counts from zero, so its first second is kept. A worker 0 restarted by its parent finds
        # the tier's counters already high (multiprocess files outlive workers): its first beat is a baseline.
        fresh = app[METRICS].multiprocess_dir is None
        self._previous: tuple[float, Counters] | None = (clock(), {}) if fresh else None

    async def beat(self, second: int) -> None:
        """Publish this gateway's row, and what it served since its last beat as its share of ``second`` (the
        second ending at that epoch second, the boundary this beat was due at)."""
        now = self._clock()
        snapshot = self._snapshot(self._app)
        counters = counters_of(snapshot)
        previous, self._previous = self._previous, (now, counters)
        moved = recent = None
        if previous is not None:
            moved = moved_since(previous[1], counters)
            recent = rates(moved, now - previous[0])
        row = {**snapshot, **self._about, "ts": now, "rates": recent}
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(GATEWAY_ROW_PREFIX + self.id, orjson.dumps(row), ex=LIVE_TTL)
        pipe.sadd(GATEWAY_FLEET_KEY, self.id)
        if moved is not None:
            key = f"{GATEWAY_SLOT_PREFIX}{second}"
            pipe.hincrby(key, "g", 1)
            for field, count in moved.items():
                pipe.hincrby(key, field, count)
            pipe.expire(key, HISTORY_TTL)
        await pipe.execute()

    async def run(self) -> None:
        while True:
            # To the next boundary, as every gateway does. A beat that runs late (a busy loop) still credits the
            # second it was due for; the next one is due at the boundary after the clock's time, so one late
            # beat never shifts the ones after it.
            now = self._clock()
            due = (math.floor(now / STEP) + 1) * STEP
            await asyncio.sleep(due - now)
            try:
                await self.beat(due)
            except (RedisError, OSError) as exc:
                # Lost: that second shows this gateway's share missing, never a burst later.
                _log.debug("fleet_beat_failed", error=type(exc).__name__)

    async def leave(self) -> None:
        """A gateway that stops leaves the fleet at once (a killed one when its row expires)."""
        with contextlib.suppress(RedisError, OSError):
            pipe = self._redis.pipeline(transaction=False)
            pipe.delete(GATEWAY_ROW_PREFIX + self.id)
            pipe.srem(GATEWAY_FLEET_KEY, self.id)
            await pipe.execute()


def fleet_heartbeat(snapshot: SnapshotSource) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context running this gateway's :class:`FleetPublisher` (workers other than 0 run none)."""

    async def heartbeat(app: web.Application) -> AsyncIterator[None]:
        if not publishes(app[SETTINGS].common):
            yield
            return
        publisher = FleetPublisher(app, snapshot)
        task = asyncio.create_task(publisher.run())
        try:
            yield
        finally:
            await stop_tasks(task)
            await closing("fleet leave", publisher.leave)

    return heartbeat


# -- reading -----------------------------------------------------------------------------------------------------


async def read_fleet(redis: RedisClient, *, now: float, seconds: int) -> dict[str, Any]:
    """Every live gateway's row, their sum, and the fleet's history over the ``seconds`` that have settled."""
    members = await redis.smembers(GATEWAY_FLEET_KEY)
    ids = sorted(_text(member) for member in members)
    newest = math.floor((now - SETTLE) / STEP) * STEP
    ends = [newest - STEP * back for back in reversed(range(max(seconds // STEP, 0)))]
    pipe = redis.pipeline(transaction=False)
    for instance in ids:
        pipe.get(GATEWAY_ROW_PREFIX + instance)
    for end in ends:
        pipe.hgetall(f"{GATEWAY_SLOT_PREFIX}{end}")
    replies = await pipe.execute()
    values, slots = replies[: len(ids)], replies[len(ids) :]
    gone = [instance for instance, value in zip(ids, values, strict=True) if value is None]
    if gone:
        with contextlib.suppress(RedisError, OSError):
            await redis.srem(GATEWAY_FLEET_KEY, *gone)
    rows = [row for row in map(_row, values) if row is not None]
    return {
        "step": STEP,
        "live_ttl": LIVE_TTL,
        "le": [*LATENCY_BUCKETS, None],
        "gateways": rows,
        "total": fleet_total(rows),
        "history": [history_point(end, slot) for end, slot in zip(ends, slots, strict=True) if slot],
    }


def _row(value: bytes | None) -> Snapshot | None:
    if value is None:
        return None
    with contextlib.suppress(orjson.JSONDecodeError):
        row = orjson.loads(value)
        if isinstance(row, dict):
            return row
    return None


def fleet_total(rows: list[Snapshot]) -> dict[str, object]:
    """The live gateways' cumulative figures, summed (a gateway that leaves takes its share with it)."""
    responses: Counters = {}
    statuses: Counters = {}
    logins: Counters = {}
    decisions: dict[str, Counters] = {}
    latency = [0] * (len(LATENCY_BUCKETS) + 1)
    for row in rows:
        _add(responses, row.get("responses_by_class"))
        _add(logins, row.get("logins"))
        for tier, counts in (row.get("rate_limit_decisions") or {}).items():
            _add(decisions.setdefault(tier, {}), counts)
        http = row.get("http") or {}
        _add(statuses, http.get("responses_by_status"))
        for index, count in enumerate((http.get("latency_seconds") or {}).get("cumulative") or ()):
            if index < len(latency):
                latency[index] += count
    return {
        "requests": sum(int(row.get("requests") or 0) for row in rows),
        "shed": sum(int(row.get("shed") or 0) for row in rows),
        "responses_by_class": dict(sorted(responses.items())),
        "rate_limit_decisions": dict(sorted(decisions.items())),
        "logins": logins,
        "http": {
            "responses_by_status": dict(sorted(statuses.items())),
            "latency_seconds": {"le": [*LATENCY_BUCKETS, None], "cumulative": latency},
        },
    }


def _add(into: Counters, counts: Mapping[str, int] | None) -> None:
    for name, count in (counts or {}).items():
        into[name] = into.get(name, 0) + int(count)


def history_point(end: int, slot: Mapping[bytes, bytes]) -> dict[str, object]:
    """One second of the fleet's traffic (a slot hash) as the dashboard reads it; ``t`` is the second's end."""
    fields = {name.decode(): int(value) for name, value in slot.items()}
    decisions: dict[str, Counters] = {}
    latency = [0] * (len(LATENCY_BUCKETS) + 1)
    for name, count in fields.items():
        kind, _, rest = name.partition(":")
        if kind == "d":
            tier, _, decision = rest.partition(":")
            decisions.setdefault(tier, {})[decision] = count
        elif kind == "l" and rest.isdigit() and int(rest) < len(latency):
            latency[int(rest)] = count
    return {
        "t": end,
        "gateways": fields.get("g", 0),
        "requests": fields.get("n", 0),
        "too_many": fields.get("429", 0),
        "server_errors": fields.get("5xx", 0),
        "decisions": decisions,
        "latency": latency if any(latency) else None,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
