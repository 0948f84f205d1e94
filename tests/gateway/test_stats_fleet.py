"""Fleet-wide gateway figures (gateway.fleet): what a gateway publishes on its heartbeat, how any gateway sums the
fleet back, and the 15 minutes of history kept in Redis.

The pure pieces run without servers; the publisher and reader run over the suite's real Redis with an injected
clock (no test waits for a wall-clock second), and one test runs the real in-process gateway's heartbeat.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from database.accounts import DEV_ADMIN
from gateway.fleet import (
    HISTORY_SECONDS,
    HISTORY_TTL,
    RECENT_SECONDS,
    FleetPublisher,
    Snapshot,
    counters_of,
    fleet_id,
    fleet_total,
    history_point,
    moved_since,
    publishes,
    read_fleet,
)
from gateway.keys import SETTINGS
from gateway.settings import GatewaySettings
from shared.keys import GATEWAY_FLEET_KEY, GATEWAY_ROW_PREFIX, GATEWAY_SLOT_PREFIX, METRICS, REDIS
from shared.metrics import LATENCY_BUCKETS, Metrics
from shared.settings import CommonSettings
from tests.gateway.conftest import GatewayFactory, bearer, login
from tests.support.polling import wait_until

BUCKETS = len(LATENCY_BUCKETS) + 1


def gateway_figures(
    *,
    statuses: dict[str, int] | None = None,
    decisions: dict[str, dict[str, int]] | None = None,
    latency: list[int] | None = None,
    requests: int = 0,
) -> Snapshot:
    """A snapshot shaped like ``gateway_snapshot``'s, with the figures a test sets."""
    return {
        "instance": "ignored-worker-id",
        "uptime": 10.0,
        "requests": requests,
        "responses_by_class": {"2xx": requests} if requests else {},
        "rate_limit_decisions": decisions or {},
        "shed": 0,
        "logins": {},
        "http": {
            "responses_by_status": statuses or {},
            "latency_seconds": {"le": [*LATENCY_BUCKETS, None], "cumulative": latency or [0] * BUCKETS},
        },
        "rate_limiter": {"backend": "redis"},
    }


# -- without servers ----------------------------------------------------------------------------------------------


def test_counters_are_requests_429_5xx_decisions_and_latency() -> None:
    latency = [0, 2, 3] + [4] * (BUCKETS - 3)
    counters = counters_of(
        gateway_figures(
            statuses={"200": 3, "429": 2, "500": 1, "503": 1},
            decisions={"free": {"allowed": 5, "limited": 2}},
            latency=latency,
        )
    )
    assert counters["n"] == 7
    assert counters["429"] == 2
    assert counters["5xx"] == 2
    assert counters["d:free:allowed"] == 5
    assert counters["d:free:limited"] == 2
    assert [counters[f"l:{index}"] for index in range(BUCKETS)] == latency


def test_only_what_grew_is_published() -> None:
    assert moved_since({"n": 5, "429": 1, "l:0": 3}, {"n": 9, "429": 1, "l:0": 2, "5xx": 1}) == {"n": 4, "5xx": 1}


def test_a_slot_reads_back_as_a_history_point() -> None:
    slot = {b"g": b"2", b"n": b"30", b"429": b"4", b"d:free:allowed": b"20", b"d:free:limited": b"4", b"l:1": b"7"}
    point = history_point(1_700_000_000, slot)
    assert point["t"] == 1_700_000_000
    assert (point["gateways"], point["requests"], point["too_many"], point["server_errors"]) == (2, 30, 4, 0)
    assert point["decisions"] == {"free": {"allowed": 20, "limited": 4}}
    assert point["latency"] == [0, 7] + [0] * (BUCKETS - 2)
    assert history_point(1, {b"g": b"1"})["latency"] is None  # a quiet second has no histogram


def test_the_total_sums_every_row() -> None:
    one = gateway_figures(requests=3, statuses={"200": 3}, decisions={"free": {"allowed": 3}}, latency=[1] * BUCKETS)
    two = gateway_figures(requests=4, statuses={"200": 2, "429": 2}, decisions={"free": {"allowed": 2, "limited": 2}})
    total = fleet_total([one, two])
    assert total["requests"] == 7
    assert total["rate_limit_decisions"] == {"free": {"allowed": 5, "limited": 2}}
    assert total["http"] == {
        "responses_by_status": {"200": 5, "429": 2},
        "latency_seconds": {"le": [*LATENCY_BUCKETS, None], "cumulative": [1] * BUCKETS},
    }
    assert fleet_total([])["requests"] == 0


def _common(**env: str) -> CommonSettings:
    return CommonSettings.from_env({"INSTANCE_ID": "gateway-a", **env}, service="gateway")


def test_one_gateway_is_one_row_however_many_workers() -> None:
    assert (fleet_id(_common()), publishes(_common())) == ("gateway-a", True)
    first = _common(WORKERS="3", WORKER_INDEX="0")
    other = _common(WORKERS="3", WORKER_INDEX="2")
    assert first.instance_id == "gateway-a-w0"
    assert fleet_id(first) == fleet_id(other) == "gateway-a"
    assert publishes(first)
    assert not publishes(other)  # its figures are already in worker 0's (multiprocess metrics)


# -- over the real Redis ------------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


PublisherFactory = Callable[..., FleetPublisher]


@pytest.fixture
async def make_publisher(redis: aioredis.Redis, database_url: str, redis_url: str) -> PublisherFactory:
    """A publisher over a bare app holding only what it reads; ``figures[0]`` is what its gateway reports."""

    def build(instance: str, clock: Clock, figures: list[Snapshot], *, multiprocess: bool = False) -> FleetPublisher:
        app = web.Application()
        env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "INSTANCE_ID": instance}
        app[SETTINGS] = GatewaySettings.from_env(env)
        app[REDIS] = redis
        app[METRICS] = Metrics("gateway")
        if multiprocess:
            app[METRICS].multiprocess_dir = "/nonexistent"  # only read to decide the first beat
        return FleetPublisher(app, lambda _app: figures[0], clock=clock)

    return build


@pytest.mark.integration
async def test_two_gateways_add_up_second_by_second(make_publisher: PublisherFactory, redis: aioredis.Redis) -> None:
    clock = Clock(1_000.0)
    a_figures, b_figures = [gateway_figures()], [gateway_figures()]
    a = make_publisher("gateway-a", clock, a_figures)
    b = make_publisher("gateway-b", clock, b_figures)

    a_figures[0] = gateway_figures(requests=5, statuses={"200": 5}, decisions={"free": {"allowed": 5}})
    b_figures[0] = gateway_figures(requests=3, statuses={"200": 1, "429": 2}, decisions={"free": {"limited": 2}})
    clock.now = 1_001.01
    await a.beat(1_001)
    clock.now = 1_001.02
    await b.beat(1_001)
    a_figures[0] = gateway_figures(requests=7, statuses={"200": 6, "503": 1}, latency=[2] * BUCKETS)
    clock.now = 1_002.01
    await a.beat(1_002)

    fleet = await read_fleet(redis, now=1_002.5, seconds=5)
    assert [row["instance"] for row in fleet["gateways"]] == ["gateway-a", "gateway-b"]
    assert fleet["total"]["requests"] == 7 + 3
    history: list[dict[str, Any]] = fleet["history"]
    assert [point["t"] for point in history] == [1_001, 1_002]
    first, second = history
    assert (first["gateways"], first["requests"], first["too_many"]) == (2, 8, 2)
    assert first["decisions"] == {"free": {"allowed": 5, "limited": 2}}
    assert (second["gateways"], second["requests"], second["server_errors"]) == (1, 2, 1)
    assert second["latency"] == [2] * BUCKETS
    # Each row says how fast its gateway went over its last beat.
    assert fleet["gateways"][0]["rates"]["requests"] == pytest.approx(2 / 1.0)
    assert await redis.ttl(f"{GATEWAY_SLOT_PREFIX}1001") > HISTORY_TTL - 5
    # A second still settling (every gateway has until SETTLE past its end) is not read yet.
    early = await read_fleet(redis, now=1_002.1, seconds=5)
    assert [point["t"] for point in early["history"]] == [1_001]


@pytest.mark.integration
async def test_a_stopped_gateway_leaves_and_an_expired_one_is_pruned(
    make_publisher: PublisherFactory, redis: aioredis.Redis
) -> None:
    clock = Clock(2_000.0)
    a = make_publisher("gateway-a", clock, [gateway_figures(requests=1)])
    b = make_publisher("gateway-b", clock, [gateway_figures(requests=2)])
    await a.beat(2_000)
    await b.beat(2_000)
    await a.leave()
    assert [row["instance"] for row in (await read_fleet(redis, now=2_000, seconds=0))["gateways"]] == ["gateway-b"]
    await redis.delete(GATEWAY_ROW_PREFIX + "gateway-b")  # as its TTL would after a kill -9
    assert (await read_fleet(redis, now=2_000, seconds=0))["gateways"] == []
    assert await redis.smembers(GATEWAY_FLEET_KEY) == set()


@pytest.mark.integration
async def test_a_restarted_worker_does_not_replay_the_tiers_counters(
    make_publisher: PublisherFactory, redis: aioredis.Redis
) -> None:
    clock = Clock(3_000.02)
    figures = [gateway_figures(statuses={"200": 50_000})]  # the tier's merged counters, from before the restart
    worker = make_publisher("gateway-a-w0", clock, figures, multiprocess=True)
    await worker.beat(3_000)
    assert await redis.exists(f"{GATEWAY_SLOT_PREFIX}3000") == 0  # a baseline, not 50,000 requests in a second
    figures[0] = gateway_figures(statuses={"200": 50_004})
    clock.now = 3_001.01
    await worker.beat(3_001)
    assert await redis.hget(f"{GATEWAY_SLOT_PREFIX}3001", "n") == b"4"


@pytest.mark.integration
async def test_fifteen_minutes_cost_well_under_a_megabyte(
    make_publisher: PublisherFactory, redis: aioredis.Redis
) -> None:
    """The memory the module docstring states: a busy second (every field moved) of a four-tier fleet."""
    clock = Clock(4_000.0)
    figures = [gateway_figures()]
    publisher = make_publisher("gateway-a", clock, figures)
    every_tier = {tier: {"allowed": 90_000, "limited": 900} for tier in ("anonymous", "free", "pro", "enterprise")}
    figures[0] = gateway_figures(
        statuses={"200": 99_000, "429": 3_600, "503": 10}, decisions=every_tier, latency=[90_000] * BUCKETS
    )
    clock.now = 4_001.0
    await publisher.beat(4_001)
    used = await redis.memory_usage(f"{GATEWAY_SLOT_PREFIX}4001")
    assert used is not None
    assert used * HISTORY_SECONDS < 512 * 1024, used


@pytest.mark.integration
async def test_the_real_gateway_publishes_and_its_stream_opens_on_the_history(
    make_gateway: GatewayFactory, redis: aioredis.Redis
) -> None:
    client = await make_gateway(ADMIN_STREAM_INTERVAL="0.05")
    headers = bearer(await login(client, DEV_ADMIN))
    for _ in range(5):
        assert (await client.get("/api/v1/status")).status == 200

    async def fleet() -> dict[str, Any]:
        dashboard: dict[str, Any] = await (await client.get("/api/v1/admin/dashboard", headers=headers)).json()
        return dashboard["fleet"]  # type: ignore[no-any-return]

    async def counted() -> bool:
        figures = await fleet()
        in_history = sum(point["requests"] for point in figures["history"])
        return bool(figures["gateways"]) and figures["total"]["requests"] >= 5 and in_history >= 5

    await wait_until(counted, within=5, interval=0.1)  # a beat a second, then SETTLE before a second is read
    figures = await fleet()
    assert [row["instance"] for row in figures["gateways"]] == ["gateway-test"]

    # Ten minutes ago, according to Redis: a connecting dashboard gets it, later events only the recent seconds.
    old = int(figures["history"][-1]["t"]) - 600
    await redis.hset(f"{GATEWAY_SLOT_PREFIX}{old}", mapping={"g": 1, "n": 42})
    response = await client.get("/api/v1/admin/stream?max_events=2", headers=headers)
    events = [
        orjson.loads(line.removeprefix("data: "))
        for line in (await response.text()).splitlines()
        if line.startswith("data: ")
    ]
    first, later = ([point["t"] for point in event["fleet"]["history"]] for event in events)
    assert old in first
    assert old not in later
    assert len(later) <= RECENT_SECONDS
