"""Three real apiserver processes over real PostgreSQL and Redis, observed the way a client sees them: over HTTP.

Each test starts its own cluster (``python -m apiserver`` on free ports) against the shared servers, or against a
private PostgreSQL / Redis when it kills one. What is proved:

- a write on one replica is read back fresh on the other two within 100 ms, although all three had the old value
  in L1 (PUT, PATCH, DELETE, and a POST over a cached 404 and a cached list page);
- an L1 hit costs neither a Redis command nor a PostgreSQL query (``/metrics`` counters);
- Redis down: reads and writes keep working with no 500, and L1 comes back once Redis does;
- PostgreSQL down: cached reads 200, uncached reads and writes 503 problem+json with ``Retry-After``, and every
  write acknowledged around the outage is in PostgreSQL exactly once afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from multidict import CIMultiDict

from database.seed import seed
from shared.identity import IDENTITY_HEADER, Identity, sign_identity
from shared.settings import DEV_INTERNAL_SECRET
from stack.services.ports import free_port
from stack.services.postgres import EmbeddedPostgres
from stack.services.redis import EmbeddedRedis
from tests.support.polling import wait_until
from tests.support.processes import SuiteProcess, suite_env

pytestmark = pytest.mark.e2e

REPLICAS = 3
COHERENCE_DEADLINE = 0.100  # seconds from a write's response until every replica serves the new value
ADMIN = Identity(user_id=1, role="admin", tier="enterprise", method="jwt")
USER = Identity(user_id=2, role="user", tier="free", method="jwt")


# -- helpers ---------------------------------------------------------------------------------------------------


def auth(identity: Identity) -> dict[str, str]:
    """The signed identity header the gateway would forward for ``identity``."""
    return {IDENTITY_HEADER: sign_identity(identity, DEV_INTERNAL_SECRET)}


@dataclass
class Reply:
    status: int
    headers: CIMultiDict[str]
    body: Any
    content_type: str


async def call(
    http: aiohttp.ClientSession, method: str, url: str, *, json: object = None, headers: dict[str, str] | None = None
) -> Reply:
    async with http.request(method, url, json=json, headers=headers) as response:
        raw = await response.read()
        content_type = response.content_type
        body: Any = None
        if raw and content_type.endswith("json"):
            body = await response.json(content_type=None)
        elif raw:
            body = raw.decode(errors="replace")
        return Reply(response.status, CIMultiDict(response.headers), body, content_type)


def assert_unavailable(reply: Reply) -> None:
    """A 503 a client can act on: problem+json naming the status, and when to retry."""
    assert reply.status == 503, reply
    assert reply.content_type == "application/problem+json", reply
    assert reply.body["status"] == 503
    assert {"type", "title", "detail", "request_id"} <= set(reply.body), reply.body
    assert int(reply.headers["Retry-After"]) >= 1


def metric(text: str, name: str, labels: str = "") -> float:
    """Sum of the samples of ``name`` (optionally only those whose label set contains ``labels``)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        if sample == name or (sample.startswith(name + "{") and labels in sample):
            total += float(value)
    return total


async def metrics_of(http: aiohttp.ClientSession, process: SuiteProcess) -> str:
    reply = await call(http, "GET", process.url + "/metrics")
    assert reply.status == 200
    assert isinstance(reply.body, str)
    return reply.body


async def l1_enabled(http: aiohttp.ClientSession, process: SuiteProcess) -> bool:
    """True once the replica's invalidation subscription is up (L1 is bypassed until then)."""
    try:
        reply = await call(http, "GET", process.url + "/api/v1/status")
    except aiohttp.ClientError:
        return False
    return reply.status == 200 and bool(reply.body["cache"]["l1_enabled"])


async def all_l1_enabled(http: aiohttp.ClientSession, cluster: list[SuiteProcess]) -> bool:
    return all(await asyncio.gather(*(l1_enabled(http, process) for process in cluster)))


@asynccontextmanager
async def apiserver_cluster(
    tmp_path: Path, http: aiohttp.ClientSession, *, database_url: str, redis_url: str
) -> AsyncIterator[list[SuiteProcess]]:
    """Start REPLICAS apiservers side by side (start-up overlaps), stop them all on exit."""
    processes = [
        SuiteProcess(
            "apiserver",
            free_port(),
            suite_env(DATABASE_URL=database_url, REDIS_URL=redis_url, INSTANCE_ID=f"api-{index}"),
            tmp_path / f"apiserver-{index}.log",
        )
        for index in range(1, REPLICAS + 1)
    ]
    try:
        for process in processes:
            process.start(wait=False)
        await asyncio.gather(*(asyncio.to_thread(process.wait_healthy, 60.0) for process in processes))
        await wait_until(lambda: all_l1_enabled(http, processes), within=15)
        yield processes
    finally:
        await asyncio.gather(*(asyncio.to_thread(process.stop) for process in processes))


async def create(http: aiohttp.ClientSession, process: SuiteProcess, name: str, type_: str = "note") -> dict[str, Any]:
    reply = await call(
        http, "POST", process.url + "/api/v1/resources", json={"name": name, "type": type_}, headers=auth(USER)
    )
    assert reply.status == 201, reply
    body: dict[str, Any] = reply.body
    return body


async def warm(http: aiohttp.ClientSession, cluster: list[SuiteProcess], path: str) -> None:
    """Read ``path`` on every replica until it is an L1 hit there (a miss fills L1, so the second read hits)."""
    for process in cluster:
        first = await call(http, "GET", process.url + path)
        assert first.status == 200, first
        second = await call(http, "GET", process.url + path)
        assert second.status == 200, second
        assert second.headers["X-Cache"] == "HIT-L1", (process.url, second.headers)


async def time_until_everywhere(
    http: aiohttp.ClientSession,
    cluster: list[SuiteProcess],
    path: str,
    is_new: Callable[[Reply], bool],
    written_at: float,
) -> float:
    """Poll every replica until each serves the new state of ``path``; seconds since ``written_at`` when all do.

    The deadline is generous past 100 ms so a slow replica shows up as a measured time, not as a hang.
    """
    pending = set(range(len(cluster)))
    deadline = written_at + 5.0
    while pending and time.monotonic() < deadline:
        replies = await asyncio.gather(*(call(http, "GET", cluster[index].url + path) for index in sorted(pending)))
        for index, reply in zip(sorted(pending), replies, strict=True):
            assert reply.status != 500, reply
            if is_new(reply):
                pending.discard(index)
    assert not pending, f"replicas {sorted(pending)} still serve the old {path} 5 s after the write"
    return time.monotonic() - written_at


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


# -- coherence -------------------------------------------------------------------------------------------------


async def test_a_write_on_one_replica_is_read_fresh_on_the_others_within_100ms(
    tmp_path: Path, http: aiohttp.ClientSession, database_url: str, redis_url: str
) -> None:
    async with apiserver_cluster(tmp_path, http, database_url=database_url, redis_url=redis_url) as cluster:
        writer, *_ = cluster
        resource = await create(http, writer, "before", type_="coherent")
        path = f"/api/v1/resources/{resource['id']}"
        timings: dict[str, float] = {}

        # PUT on replica 1 while all three hold version 1 in L1.
        await warm(http, cluster, path)
        put = await call(
            http,
            "PUT",
            writer.url + path,
            json={"name": "after put", "type": "coherent", "data": {"n": 1}},
            headers={**auth(USER), "If-Match": '"1"'},
        )
        written = time.monotonic()
        assert put.status == 200, put
        timings["PUT"] = await time_until_everywhere(
            http, cluster, path, lambda r: r.status == 200 and r.body["name"] == "after put", written
        )

        # PATCH on replica 2 (the admin may edit anyone's resource).
        await warm(http, cluster, path)
        patch = await call(
            http,
            "PATCH",
            cluster[1].url + path,
            json={"data": {"n": 2}},
            headers={**auth(ADMIN), "If-Match": put.headers["ETag"]},
        )
        written = time.monotonic()
        assert patch.status == 200, patch
        timings["PATCH"] = await time_until_everywhere(
            http, cluster, path, lambda r: r.status == 200 and r.body["data"] == {"n": 2}, written
        )

        # POST on replica 3 over a cached list page and a cached 404 for the id it is about to get.
        list_path = "/api/v1/resources?type=coherent"
        next_path = f"/api/v1/resources/{resource['id'] + 1}"
        await warm(http, cluster, list_path)
        for process in cluster:
            assert (await call(http, "GET", process.url + next_path)).status == 404
        created = await call(
            http,
            "POST",
            cluster[2].url + "/api/v1/resources",
            json={"name": "fresh", "type": "coherent"},
            headers=auth(USER),
        )
        written = time.monotonic()
        assert created.status == 201, created
        assert created.body["id"] == resource["id"] + 1
        # Both paths polled at once: each time is its own, not the list's poll plus the item's.
        timings["POST (list)"], timings["POST (404)"] = await asyncio.gather(
            time_until_everywhere(http, cluster, list_path, lambda r: len(r.body["items"]) == 2, written),
            time_until_everywhere(
                http, cluster, next_path, lambda r: r.status == 200 and r.body["name"] == "fresh", written
            ),
        )

        # DELETE on replica 1 while all three hold the patched version in L1.
        await warm(http, cluster, path)
        deleted = await call(http, "DELETE", writer.url + path, headers=auth(USER))
        written = time.monotonic()
        assert deleted.status == 204, deleted
        timings["DELETE"] = await time_until_everywhere(http, cluster, path, lambda r: r.status == 404, written)

        # A slow replica must not re-cache the old value behind the write: the new one is what L1 now holds.
        for process in cluster:
            reply = await call(http, "GET", process.url + f"/api/v1/resources/{resource['id'] + 1}")
            assert (reply.status, reply.headers["X-Cache"]) == (200, "HIT-L1")
            assert (await call(http, "GET", process.url + path)).status == 404

    slow = {write: round(seconds * 1000, 1) for write, seconds in timings.items() if seconds > COHERENCE_DEADLINE}
    assert not slow, f"milliseconds until every replica served the write (limit 100): {slow}"


# -- observability ---------------------------------------------------------------------------------------------


async def test_every_replica_answers_health_ready_metrics_and_names_itself(
    tmp_path: Path, http: aiohttp.ClientSession, database_url: str, redis_url: str
) -> None:
    async with apiserver_cluster(tmp_path, http, database_url=database_url, redis_url=redis_url) as cluster:
        for index, process in enumerate(cluster, start=1):
            health = await call(http, "GET", process.url + "/health")
            assert (health.status, health.body["status"]) == (200, "ok")
            ready = await call(http, "GET", process.url + "/ready")
            assert ready.status == 200, ready
            assert ready.body["checks"] == {"postgres": "ok", "redis": "ok"}
            assert "http_requests_total" in await metrics_of(http, process)
            status = await call(http, "GET", process.url + "/api/v1/status")
            assert status.status == 200
            assert status.body["instanceId"] == f"api-{index}"


async def test_an_l1_hit_touches_neither_redis_nor_postgres(
    tmp_path: Path, http: aiohttp.ClientSession, database_url: str, redis_url: str
) -> None:
    async with apiserver_cluster(tmp_path, http, database_url=database_url, redis_url=redis_url) as cluster:
        replica = cluster[0]
        resource = await create(http, replica, "hot key")
        path = f"/api/v1/resources/{resource['id']}"
        await warm(http, [replica], path)

        before = await metrics_of(http, replica)
        replies = [await call(http, "GET", replica.url + path) for _ in range(200)]
        after = await metrics_of(http, replica)

        assert {(reply.status, reply.headers["X-Cache"]) for reply in replies} == {(200, "HIT-L1")}
        assert metric(after, "cache_redis_commands_total") == metric(before, "cache_redis_commands_total")
        assert metric(after, "db_queries_total") == metric(before, "db_queries_total")
        l1_hits = 'level="l1",result="hit"'
        assert metric(after, "cache_requests_total", l1_hits) - metric(before, "cache_requests_total", l1_hits) == 200


# -- Redis outage ----------------------------------------------------------------------------------------------


async def test_redis_down_reads_and_writes_keep_working_and_l1_recovers(
    tmp_path: Path, http: aiohttp.ClientSession, database_url: str, own_redis: EmbeddedRedis
) -> None:
    async with apiserver_cluster(tmp_path, http, database_url=database_url, redis_url=own_redis.url) as cluster:
        resource = await create(http, cluster[0], "cached")
        path = f"/api/v1/resources/{resource['id']}"
        await warm(http, cluster, path)
        await warm(http, cluster, "/api/v1/resources")

        own_redis.kill()

        # Several rounds: the first requests find Redis gone, later ones meet the open L2 breaker.
        for _ in range(5):
            for process in cluster:
                by_id = await call(http, "GET", process.url + path)
                assert (by_id.status, by_id.body["name"]) == (200, "cached"), by_id
                listed = await call(http, "GET", process.url + "/api/v1/resources")
                assert listed.status == 200, listed
                assert [item["id"] for item in listed.body["items"]] == [resource["id"]]

        # Writes go to PostgreSQL; with invalidations unheard no replica serves from memory, so all see it.
        patched = await call(http, "PATCH", cluster[0].url + path, json={"name": "renamed"}, headers=auth(USER))
        assert patched.status == 200, patched
        second = await create(http, cluster[1], "written while Redis was down")
        for process in cluster:
            by_id = await call(http, "GET", process.url + path)
            assert (by_id.status, by_id.body["name"]) == (200, "renamed"), by_id
            listed = await call(http, "GET", process.url + "/api/v1/resources")
            assert [item["id"] for item in listed.body["items"]] == [resource["id"], second["id"]], listed

        # Still serving, so still ready (a balancer must not eject every replica over a shared dependency),
        # but degraded, with the failing dependency named.
        ready = await call(http, "GET", cluster[2].url + "/ready")
        assert ready.status == 200, ready
        assert ready.body["status"] == "degraded"
        assert ready.body["checks"]["postgres"] == "ok"
        assert ready.body["checks"]["redis"] != "ok"

        await asyncio.to_thread(own_redis.start)

        async def l1_serves_again() -> bool:
            for process in cluster:
                replies = [await call(http, "GET", process.url + path) for _ in range(2)]
                if replies[-1].headers.get("X-Cache") != "HIT-L1" or replies[-1].body["name"] != "renamed":
                    return False
            return True

        await wait_until(l1_serves_again, within=5)
        assert (await call(http, "GET", cluster[2].url + "/ready")).status == 200


# -- PostgreSQL outage -----------------------------------------------------------------------------------------


@dataclass
class Writer:
    """Creates resources with unique names until told to stop (bounded), recording what was acknowledged."""

    http: aiohttp.ClientSession
    cluster: list[SuiteProcess]
    max_attempts: int = 5000
    acknowledged: dict[str, int] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    refused: list[tuple[str, Reply]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        for attempt in range(self.max_attempts):
            if self.stop.is_set():
                return
            name = f"outage write {attempt}"
            process = self.cluster[attempt % len(self.cluster)]
            reply = await call(
                self.http,
                "POST",
                process.url + "/api/v1/resources",
                json={"name": name, "type": "outage"},
                headers=auth(USER),
            )
            self.statuses.append(reply.status)
            if reply.status == 201:
                self.acknowledged[name] = reply.body["id"]
            else:
                self.refused.append((name, reply))

    def count(self, status: int) -> int:
        return self.statuses.count(status)


async def test_postgres_down_cached_reads_serve_writes_503_and_no_acknowledged_write_is_lost(
    tmp_path: Path, http: aiohttp.ClientSession, own_postgres: EmbeddedPostgres, redis_url: str
) -> None:
    await seed(own_postgres.url, resources=3)
    async with apiserver_cluster(tmp_path, http, database_url=own_postgres.url, redis_url=redis_url) as cluster:
        cached, uncached = "/api/v1/resources/1", "/api/v1/resources/3"
        await warm(http, cluster, cached)
        writer = Writer(http, cluster)
        writing = asyncio.create_task(writer.run())
        try:
            await wait_until(lambda: _at_least(writer, 201, 20), within=15)
            await asyncio.to_thread(own_postgres.kill)
            await wait_until(lambda: _at_least(writer, 503, 5), within=15)

            for process in cluster:
                reply = await call(http, "GET", process.url + cached)
                assert reply.status == 200, reply
                assert reply.headers["X-Cache"] in {"HIT-L1", "HIT-L2", "STALE"}
                assert reply.body["id"] == 1
                assert_unavailable(await call(http, "GET", process.url + uncached))
                assert_unavailable(await call(http, "GET", process.url + "/api/v1/resources?type=never-listed"))
                assert_unavailable(
                    await call(http, "PATCH", process.url + cached, json={"name": "x"}, headers=auth(ADMIN))
                )
                health = await call(http, "GET", process.url + "/health")
                assert health.status == 200
                ready = await call(http, "GET", process.url + "/ready")
                assert ready.status == 200, ready
                assert ready.body["status"] == "degraded"
                assert ready.body["checks"]["redis"] == "ok"
                assert ready.body["checks"]["postgres"] != "ok"

            acknowledged_before_restart = len(writer.acknowledged)
            await asyncio.to_thread(own_postgres.start)
            await wait_until(lambda: _acknowledged_more(writer, acknowledged_before_restart + 20), within=20)
        finally:
            writer.stop.set()
            await writing

        for process in cluster:
            reply = await call(http, "GET", process.url + uncached)
            assert reply.status == 200, reply

    rows = await _rows_named(own_postgres.url, list(writer.acknowledged))
    refused_rows = await _rows_named(own_postgres.url, [name for name, _ in writer.refused])
    missing = sorted(set(writer.acknowledged) - {row["name"] for row in rows})
    assert missing == [], f"{len(missing)} acknowledged writes are not in PostgreSQL"
    assert sorted((row["name"], row["id"]) for row in rows) == sorted(writer.acknowledged.items())
    # Checked last so a wrong status cannot hide a lost write: every refusal was a proper, retryable 503.
    # (A refused write may still have committed when PostgreSQL died between commit and reply; reported only.)
    committed = {row["name"] for row in refused_rows}
    wrong = [
        (reply.status, reply.body["detail"], name in committed) for name, reply in writer.refused if reply.status != 503
    ]
    assert wrong == [], "writes answered other than 201/503 as (status, detail, committed in PostgreSQL anyway)"
    for _, reply in writer.refused:
        assert_unavailable(reply)


async def _at_least(writer: Writer, status: int, count: int) -> bool:
    return writer.count(status) >= count


async def _acknowledged_more(writer: Writer, count: int) -> bool:
    return len(writer.acknowledged) >= count


async def _rows_named(url: str, names: list[str]) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch("SELECT id, name FROM resources WHERE name = ANY($1::text[])", names))
    finally:
        await connection.close()
