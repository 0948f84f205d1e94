"""Chaos on the Compose stack's containers through the Docker SDK, under steady GET load through 127.0.0.1:8080.

    kill an apiserver container (SIGKILL) ─► 0 failed GETs (the balancer retries them and re-resolves DNS)
    restart the balancer container        ─► the gateway answers 503 + Retry-After while it is gone, then recovers
    pause the Redis container (SIGSTOP)   ─► no 5xx (local rate limits, L1 cache and PostgreSQL carry on)

Each scenario writes its figures to ``reports/compose/<scenario>.json`` before asserting (the README's failure table
is made from them by ``python -m tests.resilience.summary``). The load is the admin's (enterprise tier), so the rate
limiter never refuses it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import docker
import orjson
import pytest

from database.accounts import DEV_ADMIN
from tests.compose.gateway import bearer, get_json, wait_for_instances
from tests.compose.project import GATEWAY, Project
from tests.resilience.load import Call, LoadRun, MixedLoad, failed, poll_until, session
from tests.resilience.report import record

pytestmark = [pytest.mark.compose, pytest.mark.e2e, pytest.mark.timeout(900)]
SUITE = "compose"
APISERVERS = 3
PAUSE = 8.0  # seconds Redis stays paused
RECOVERY = 30.0  # seconds a scenario allows for recovery


@dataclass
class Served:
    """Which apiserver answered each GET /api/v1/status of the load, and when."""

    answers: list[tuple[float, str]] = field(default_factory=list)

    def observe(self, call: Call, status: int, body: bytes) -> None:
        if call.name == "status" and status == 200:
            self.answers.append((time.monotonic(), str(orjson.loads(body)["instanceId"])))

    def first_by(self, hostname: str, *, after: float) -> float | None:
        return next((at for at, instance in self.answers if at >= after and hostname in instance), None)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with session(connections=50) as client:
        yield client


@pytest.fixture
async def admin(stack: Project, http: aiohttp.ClientSession) -> dict[str, str]:
    """The stack at three apiservers, all answering, and the admin's Authorization header."""
    stack.run("up", "--wait", "--scale", f"apiserver={APISERVERS}")
    auth = await bearer(http, DEV_ADMIN.login)
    seen, waited = await wait_for_instances(http, auth, APISERVERS)
    assert waited is not None, f"only {sorted(seen)} answer"
    return auth


def steady_gets(http: aiohttp.ClientSession, auth: dict[str, str], served: Served | None = None) -> LoadRun:
    mix = MixedLoad(GATEWAY, auth, read_ids=range(1, 201), own_ids=[1], writes=False)
    observe = served.observe if served is not None else None
    return LoadRun(http, mix.pick, concurrency=6, budget=40_000, deadline=90, pace=0.005, observe=observe).start()


async def test_killing_an_apiserver_container_fails_no_get(
    stack: Project, engine: docker.DockerClient, http: aiohttp.ClientSession, admin: dict[str, str]
) -> None:
    served = Served()
    load = steady_gets(http, admin, served)
    await load.more(300)
    victim = stack.containers(engine, "apiserver")[-1]
    hostname = victim.attrs["Config"]["Hostname"]
    killed_at = time.monotonic()
    await asyncio.to_thread(victim.kill)
    await load.more(1000, within=RECOVERY)
    started_at = time.monotonic()
    await asyncio.to_thread(victim.start)

    async def back_in_rotation() -> bool:
        return served.first_by(hostname, after=started_at) is not None

    await poll_until(back_in_rotation, within=RECOVERY, interval=0.2)
    back = served.first_by(hostname, after=started_at)
    samples = await load.stop()

    failures = failed(samples)
    record(
        SUITE,
        "apiserver_container_killed",
        title=f"Compose: `docker kill` one of {APISERVERS} apiserver containers, then start it",
        guarantee="0 failed GETs; the restarted container is back in rotation (found again through DNS)",
        samples=samples,
        failed=len(failures),
        recovery_s=None if back is None else back - started_at,
        extra={
            "requests_while_killed": sum(1 for s in samples if killed_at <= s.started < started_at),
            "seconds_killed": round(started_at - killed_at, 2),
            "failures": sorted({f"{s.status} {s.error[:100]}" for s in failures}),
        },
    )
    assert failures == [], f"{len(failures)} GETs failed: {failures[:3]}"
    assert back is not None, f"{hostname} did not serve again within {RECOVERY:g} s of its start"


async def test_restarting_the_balancer_container_gets_503_with_retry_after_then_recovers(
    stack: Project, engine: docker.DockerClient, http: aiohttp.ClientSession, admin: dict[str, str]
) -> None:
    load = steady_gets(http, admin)
    await load.more(300)
    (balancer,) = stack.containers(engine, "balancer")
    restarting_at = time.monotonic()
    await asyncio.to_thread(balancer.restart, timeout=10)
    started_at = time.monotonic()

    async def serving() -> bool:
        recent = load.since(time.monotonic() - 0.5)
        return len(recent) >= 20 and all(sample.status == 200 for sample in recent)

    await poll_until(serving, within=RECOVERY, interval=0.1)
    recovered = next((s.started for s in load.since(started_at) if s.status == 200), None)
    samples = await load.stop()

    refused = [s for s in samples if s.status == 503]
    wrong = [s for s in samples if (s.status == 0 or s.status >= 500) and (s.status != 503 or not s.retry_after)]
    record(
        SUITE,
        "balancer_container_restarted",
        title="Compose: `docker restart` the balancer container",
        guarantee="every failure is a 503 with Retry-After from the gateway; then all 200 again",
        samples=samples,
        failed=len(wrong),
        recovery_s=None if recovered is None else recovered - started_at,
        latency_of=refused,
        extra={
            "answered_503": len(refused),
            "seconds_restarting": round(started_at - restarting_at, 2),
            "failures": sorted({f"{s.status} {s.error[:100]}" for s in wrong}),
        },
    )
    assert wrong == [], f"{len(wrong)} requests failed otherwise than 503 + Retry-After: {wrong[:3]}"
    assert refused, "no request met the gap (the restart was not observed)"
    assert recovered is not None, f"no 200 within {RECOVERY:g} s of the balancer's start"


async def test_pausing_the_redis_container_gives_no_5xx(
    stack: Project, engine: docker.DockerClient, http: aiohttp.ClientSession, admin: dict[str, str]
) -> None:
    load = steady_gets(http, admin)
    await load.more(300)
    (redis,) = stack.containers(engine, "redis")
    paused_at = time.monotonic()
    await asyncio.to_thread(redis.pause)
    try:
        await asyncio.sleep(PAUSE / 2)  # the fault's duration, not a wait for a state
        during = await get_json(http, "/api/v1/admin/dashboard", admin)
        await asyncio.sleep(PAUSE / 2)
    finally:
        await asyncio.to_thread(redis.unpause)
    unpaused_at = time.monotonic()

    async def limiter_on_redis() -> bool:
        dashboard = await get_json(http, "/api/v1/admin/dashboard", admin)
        return bool(dashboard["gateway"]["rate_limiter"]["backend"] == "redis")

    recovery = await poll_until(limiter_on_redis, within=RECOVERY, interval=0.2)
    samples = await load.stop()

    errors = failed(samples)
    paused = [s for s in samples if paused_at <= s.started < unpaused_at]
    record(
        SUITE,
        "redis_container_paused",
        title=f"Compose: `docker pause` the Redis container for {PAUSE:g} s",
        guarantee="no 5xx: local rate limits at the gateway, L1 + PostgreSQL at the apiservers; Redis used again",
        samples=samples,
        failed=len(errors),
        recovery_s=recovery,
        extra={
            "requests_while_paused": len(paused),
            "ok_while_paused": sum(1 for s in paused if s.status == 200),
            "limiter_while_paused": during["gateway"]["rate_limiter"]["backend"],
            "failures": sorted({f"{s.status} {s.error[:100]}" for s in errors}),
        },
    )
    assert errors == [], f"{len(errors)} requests failed or were 5xx: {errors[:3]}"
    assert paused
    assert during["gateway"]["rate_limiter"]["backend"] == "local"
    assert recovery is not None, f"the gateway's limiter was not back on Redis within {RECOVERY:g} s"
