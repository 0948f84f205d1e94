"""Apiserver faults under continuous mixed load through the gateway: a ``kill -9``, then a rolling restart.

One three-apiserver stack serves both scenarios (the first leaves every replica running again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import asyncpg
import pytest

from tests.resilience.conftest import prepare
from tests.resilience.load import LoadRun, MixedLoad, failed, poll_until
from tests.resilience.report import record
from tests.support.processes import SuiteProcess
from tests.support.servers import Server, reset_state, run_sync, server_root
from tests.support.stack import UNLIMITED, Stack, backend_id, start_stack

pytestmark = pytest.mark.e2e
SUITE = "resilience"
# Clients in flight at once: enough that several requests are on the victim when it dies.
CONCURRENCY = 12


@pytest.fixture(scope="module")
def cluster(postgres_server: Server, redis_server: Server) -> Iterator[Stack]:
    run_sync(reset_state(postgres_server.url, redis_server.url))
    with server_root("scalable-api-resilience-") as tmp:
        # The retry budget admits max(BALANCER_RETRY_MIN_CONCURRENCY, 20 % of requests in flight) replays at once;
        # when a backend dies, every request it held (up to a third of CONCURRENCY here) needs one at the same
        # moment, and with the default floor of 3 the budget may refuse one of them (a 502 by design, counted in
        # lb_status's retry_budget.refused). The guarantee measured here is the replay itself, so the floor
        # covers the load's concurrency; the budget's refusals have their own unit tests.
        retry_floor = {"BALANCER_RETRY_MIN_CONCURRENCY": str(CONCURRENCY)}
        running = start_stack(
            tmp, postgres_server.url, redis_server.url, apiservers=3, rate_limits=UNLIMITED, balancer_env=retry_floor
        )
        try:
            yield running
        finally:
            running.stop()


async def _duplicated(database_url: str, tag: str) -> dict[str, int]:
    """Names of the load's POSTs that exist more than once in PostgreSQL, with their row counts."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT name, count(*) AS n FROM resources WHERE name LIKE $1 GROUP BY name HAVING count(*) > 1",
            f"load {tag} %",
        )
    finally:
        await connection.close()
    return {row["name"]: row["n"] for row in rows}


async def test_kill_9_an_apiserver_fails_no_idempotent_request(
    cluster: Stack, http: aiohttp.ClientSession, postgres_server: Server
) -> None:
    """POSTs carry an Idempotency-Key: the balancer may replay them, unconfirmed ones are resent, none doubles."""
    assert await poll_until(lambda: cluster.every_apiserver_serves(http), within=15) is not None
    data = await prepare(http, cluster)
    mix = MixedLoad(cluster.gateway, data.auth, data.read_ids, data.own_ids, keyed_posts=True)
    load = LoadRun(http, mix.pick, concurrency=CONCURRENCY, budget=20_000, deadline=40, observe=mix.observe).start()
    victim = cluster.apiservers[1]
    await load.more(300)

    killed_at = time.monotonic()
    await asyncio.to_thread(victim.kill)
    await load.more(400)
    await cluster.restart(victim)
    ready_at = time.monotonic()

    async def back_in_rotation() -> bool:
        backend = await cluster.backend(http, victim)
        return bool(backend["in_rotation"]) and await cluster.every_apiserver_serves(http)

    recovery = await poll_until(back_in_rotation, within=10)
    await load.more(200)
    samples = await load.stop()
    budget = (await cluster.lb_status(http))["retry_budget"]
    unconfirmed_during_load = len(mix.unconfirmed)
    still_unconfirmed = await mix.confirm(http)
    duplicates = await _duplicated(postgres_server.url, mix.tag)

    bad = failed(samples, idempotent_only=True)
    # A keyed POST cut off mid-flight is not a failure for a client with Stripe semantics: it resends with the
    # same key and gets the one write. It fails when it is still unconfirmed after that, or applied twice.
    record(
        SUITE,
        "apiserver_kill_9",
        title="`kill -9` one of 3 apiservers (POSTs carry Idempotency-Key; a cut-off one is resent with its key)",
        guarantee="0 failed requests, writes included; 0 duplicate rows; back in rotation",
        samples=samples,
        failed=len(bad) + len(still_unconfirmed) + sum(count - 1 for count in duplicates.values()),
        recovery_s=recovery,
        extra={
            "failed_posts": len(failed(samples)) - len(bad),
            "seconds_down": round(ready_at - killed_at, 2),
            "acknowledged_posts": len(mix.acknowledged),
            "posts_resent_with_their_key": unconfirmed_during_load,
            "posts_still_unconfirmed": still_unconfirmed,
            "duplicate_rows": duplicates,
            "balancer_retries_refused_by_budget": budget["refused"],
            "failures": sorted({sample.error[:120] for sample in failed(samples)}),
        },
    )
    assert bad == [], f"{len(bad)} idempotent requests failed: {bad[:5]}"
    assert still_unconfirmed == {}, f"keyed POSTs never confirmed: {still_unconfirmed}"
    assert duplicates == {}, f"keyed POSTs written twice: {duplicates}"
    assert recovery is not None, f"{backend_id(victim)} not back in rotation 10 s after it was ready again"


async def test_rolling_restart_of_every_apiserver_fails_no_request(cluster: Stack, http: aiohttp.ClientSession) -> None:
    """Drain, stop (SIGTERM), start, wait until healthy in the pool, enable: one apiserver at a time."""
    assert await poll_until(lambda: cluster.every_apiserver_serves(http), within=15) is not None
    data = await prepare(http, cluster)
    mix = MixedLoad(cluster.gateway, data.auth, data.read_ids, data.own_ids)
    load = LoadRun(http, mix.pick, concurrency=8, budget=30_000, deadline=60, observe=mix.observe).start()
    await load.more(200)
    started = time.monotonic()
    per_server: list[float] = []
    for process in cluster.apiservers:
        began = time.monotonic()
        assert await cluster.control(http, process, "drain") == 200
        await asyncio.to_thread(process.stop)
        await cluster.restart(process)

        async def healthy(process: SuiteProcess = process) -> bool:
            return bool((await cluster.backend(http, process))["healthy"])

        assert await poll_until(healthy, within=10) is not None
        assert await cluster.control(http, process, "enable") == 200
        per_server.append(time.monotonic() - began)
    total = time.monotonic() - started
    recovery = await poll_until(lambda: cluster.every_apiserver_serves(http), within=10)
    samples = await load.stop()

    bad = failed(samples)
    record(
        SUITE,
        "apiserver_rolling_restart",
        title="Rolling restart of every apiserver (drain → stop → start → enable)",
        guarantee="0 failed requests (POSTs included)",
        samples=samples,
        failed=len(bad),
        recovery_s=recovery,
        extra={
            "restart_seconds_each": [round(value, 2) for value in per_server],
            "rollout_seconds": round(total, 2),
            "via": "balancer /lb/backends/{id}/drain|enable",
        },
    )
    assert bad == [], f"{len(bad)} requests failed during the rolling restart: {bad[:5]}"
    assert recovery is not None
