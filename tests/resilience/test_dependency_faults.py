"""Shared-dependency faults under continuous mixed load through the gateway: Redis killed, PostgreSQL stopped.

Each scenario runs its own stack over a private server (``own_redis`` / ``own_postgres``) that it may kill.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from database.accounts import DEV_ADMIN
from database.seed import seed
from stack.services.postgres import EmbeddedPostgres
from stack.services.redis import EmbeddedRedis
from tests.resilience.conftest import prepare
from tests.resilience.load import Call, LoadRun, MixedLoad, poll_until
from tests.resilience.report import Sample, record
from tests.support.stack import UNLIMITED, Stack, operator_headers, running_stack

pytestmark = pytest.mark.e2e
SUITE = "resilience"
OUTAGE = 10.0  # seconds the dependency stays down
RECOVERY_DEADLINE = 5.0


async def _dashboard(http: aiohttp.ClientSession, cluster: Stack, admin: dict[str, str]) -> dict[str, Any]:
    async with http.get(cluster.gateway + "/api/v1/admin/dashboard", headers=admin) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def _l1_enabled(http: aiohttp.ClientSession, cluster: Stack) -> bool:
    for process in cluster.apiservers:
        try:
            async with http.get(process.url + "/api/v1/status") as response:
                if response.status != 200 or not (await response.json())["cache"]["l1_enabled"]:
                    return False
        except aiohttp.ClientError:
            return False
    return True


async def _l2_used(http: aiohttp.ClientSession, cluster: Stack) -> bool:
    """Every apiserver's Redis-cache breaker is closed again (L2 in use)."""
    for process in cluster.apiservers:
        async with http.get(process.url + "/internal/breakers", headers=operator_headers()) as response:
            breakers = (await response.json())["breakers"]
        if any(b["name"] == "redis-cache" and b["state"] != "closed" for b in breakers):
            return False
    return True


async def test_redis_killed_for_10s_serves_on_local_limits_and_recovers(
    tmp_path: Path, database_url: str, own_redis: EmbeddedRedis, http: aiohttp.ClientSession
) -> None:
    with running_stack(tmp_path, database_url, own_redis.url, rate_limits=UNLIMITED) as cluster:
        data = await prepare(http, cluster)
        admin = await cluster.bearer(http, DEV_ADMIN.login)
        mix = MixedLoad(cluster.gateway, data.auth, data.read_ids, data.own_ids)
        load = LoadRun(http, mix.pick, concurrency=6, budget=30_000, deadline=45, observe=mix.observe).start()
        await load.more(300)

        killed_at = time.monotonic()
        await asyncio.to_thread(own_redis.kill)
        await asyncio.sleep(OUTAGE / 2)  # the fault's duration, not a wait for a state
        during = await _dashboard(http, cluster, admin)
        await asyncio.sleep(OUTAGE / 2)
        await asyncio.to_thread(own_redis.start)
        returned_at = time.monotonic()

        async def limiter_on_redis() -> bool:
            return bool((await _dashboard(http, cluster, admin))["gateway"]["rate_limiter"]["backend"] == "redis")

        parts = await asyncio.gather(
            poll_until(limiter_on_redis, within=RECOVERY_DEADLINE + 5),
            poll_until(lambda: _l1_enabled(http, cluster), within=RECOVERY_DEADLINE + 5),
            poll_until(lambda: _l2_used(http, cluster), within=RECOVERY_DEADLINE + 5),
        )
        recovery = None if None in parts else max(part for part in parts if part is not None)
        samples = await load.stop()

    outage = [s for s in samples if killed_at <= s.started < returned_at]
    errors = [s for s in samples if s.status == 0 or s.status >= 500]
    record(
        SUITE,
        "redis_killed",
        title=f"Redis killed for {OUTAGE:g} s",
        guarantee="no 500s; local limits at the gateway; L1 + PostgreSQL at the apiservers; recovery ≤ 5 s",
        samples=samples,
        failed=len(errors),
        recovery_s=recovery,
        extra={
            "requests_during_outage": len(outage),
            "ok_during_outage": sum(1 for s in outage if s.status < 400),
            "limiter_during_outage": during["gateway"]["rate_limiter"]["backend"],
            "recovery_s_gateway_limiter_l1_l2": [None if p is None else round(p, 2) for p in parts],
            "failures": sorted({s.error[:120] for s in errors}),
        },
    )
    assert errors == [], f"{len(errors)} requests failed or were 5xx: {errors[:5]}"
    assert outage
    assert all(s.status < 400 for s in outage)
    assert during["gateway"]["rate_limiter"]["backend"] == "local"
    assert recovery is not None
    assert recovery <= RECOVERY_DEADLINE, f"recovered after {recovery} s"


async def _rows(url: str, names: list[str]) -> dict[str, list[int]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT id, name FROM resources WHERE name = ANY($1::text[])", names)
    finally:
        await connection.close()
    found: dict[str, list[int]] = {}
    for row in rows:
        found.setdefault(row["name"], []).append(row["id"])
    return found


def _post_only(mix: MixedLoad) -> Callable[[int], Call]:
    def pick(number: int) -> Call:
        return mix.pick(19 + 20 * number)  # slot 19 of the mix: a POST

    return pick


def _refusal_ok(sample: Sample) -> bool:
    return sample.status == 503 and sample.retry_after is not None and int(sample.retry_after) >= 1


async def test_postgres_stopped_for_10s_keeps_cached_reads_and_every_acknowledged_write(
    tmp_path: Path, own_postgres: EmbeddedPostgres, redis_url: str, http: aiohttp.ClientSession
) -> None:
    await seed(own_postgres.url, resources=0)
    with running_stack(tmp_path, own_postgres.url, redis_url, rate_limits=UNLIMITED) as cluster:
        data = await prepare(http, cluster)
        mix = MixedLoad(cluster.gateway, data.auth, data.read_ids, data.own_ids)
        load = LoadRun(http, mix.pick, concurrency=6, budget=30_000, deadline=45, observe=mix.observe).start()
        await load.more(300)

        stopped_at = time.monotonic()
        await asyncio.to_thread(own_postgres.stop)
        # Clients keep retrying their refused writes: the write share rises during the outage, as in production.
        retry_mix = MixedLoad(cluster.gateway, data.auth, data.read_ids, data.own_ids)
        retries = LoadRun(
            http, _post_only(retry_mix), concurrency=2, budget=5_000, deadline=OUTAGE, observe=retry_mix.observe
        ).start()
        await asyncio.sleep(OUTAGE)  # the fault's duration, not a wait for a state
        samples_retried = await retries.stop()
        acknowledged_before = len(mix.acknowledged)
        await asyncio.to_thread(own_postgres.start)
        returned_at = time.monotonic()

        async def writes_again() -> bool:
            return len(mix.acknowledged) > acknowledged_before

        recovery = await poll_until(writes_again, within=15)
        await load.more(200)
        samples = await load.stop()

    samples = samples + samples_retried
    acknowledged = {**mix.acknowledged, **retry_mix.acknowledged}
    found = await _rows(own_postgres.url, list(acknowledged))
    missing = sorted(set(acknowledged) - set(found))
    doubled = {name: ids for name, ids in found.items() if len(ids) != 1}
    outage = [s for s in samples if stopped_at + 0.5 <= s.started < returned_at]
    reads = [s for s in outage if s.name == "read"]
    writes = [s for s in outage if s.name in ("post", "put")]
    bad_reads = [s for s in reads if s.status != 200]
    bad_writes = [s for s in writes if not (s.status < 300 or _refusal_ok(s))]
    record(
        SUITE,
        "postgres_stopped",
        title=f"PostgreSQL stopped for {OUTAGE:g} s",
        guarantee="cached reads 200; writes 503 + Retry-After; every acknowledged write in PG exactly once",
        samples=samples,
        failed=len(bad_reads) + len(bad_writes) + len(missing) + len(doubled),
        recovery_s=recovery,
        extra={
            "cached_reads_during_outage": len(reads),
            "cached_reads_not_200": len(bad_reads),
            "writes_during_outage": len(writes),
            "writes_refused_503_retry_after": sum(1 for s in writes if _refusal_ok(s)),
            "acknowledged_writes": len(acknowledged),
            "acknowledged_missing_in_pg": len(missing),
            "applied_twice": len(doubled),
            "failures": sorted({f"{s.status} {s.error[:120]}" for s in bad_reads + bad_writes}),
        },
    )
    assert missing == [], f"{len(missing)} acknowledged writes are not in PostgreSQL"
    assert doubled == {}, f"writes applied more than once: {doubled}"
    assert reads
    assert bad_reads == [], f"{len(bad_reads)} cached reads failed: {bad_reads[:5]}"
    assert writes
    assert bad_writes == [], f"{len(bad_writes)} writes were not 2xx or 503 + Retry-After"
    assert recovery is not None
