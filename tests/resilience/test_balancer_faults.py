"""Balancer faults under load through the gateway: the balancer restarted, and a backend that hangs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from database.accounts import DEV_USER
from tests.resilience.conftest import prepare
from tests.resilience.load import LoadRun, MixedLoad, poll_until
from tests.resilience.report import percentile, record
from tests.support.processes import start_test_backend
from tests.support.stack import UNLIMITED, backend_id, running_stack

pytestmark = pytest.mark.e2e
SUITE = "resilience"
FAST = 0.5  # seconds: what "answers 503 fast" means while the balancer is gone
BALANCER_TIMEOUT = 1.0


async def test_balancer_restart_gateway_answers_503_fast_then_recovers(
    tmp_path: Path, database_url: str, redis_url: str, http: aiohttp.ClientSession
) -> None:
    with running_stack(tmp_path, database_url, redis_url, rate_limits=UNLIMITED) as cluster:
        data = await prepare(http, cluster)
        mix = MixedLoad(cluster.gateway, data.auth, data.read_ids, data.own_ids, writes=False)
        load = LoadRun(http, mix.pick, concurrency=6, budget=20_000, deadline=40, pace=0.005).start()
        await load.more(200)

        stopped_at = time.monotonic()
        await asyncio.to_thread(cluster.balancer.kill)
        await load.more(300)
        restarting_at = time.monotonic()
        await cluster.restart(cluster.balancer)
        back_at = time.monotonic()

        async def served() -> bool:
            recent = load.since(time.monotonic() - 0.3)
            return len(recent) >= 20 and all(sample.status == 200 for sample in recent[-20:])

        await poll_until(served, within=10)
        recovery = next((s.started - restarting_at for s in load.since(restarting_at) if s.status == 200), None)
        samples = await load.stop()

    gone = [s for s in samples if stopped_at + 0.1 <= s.started < back_at - 0.1]
    refused = [s for s in gone if s.status == 503]
    not_503 = [s for s in gone if s.status != 503 or s.retry_after is None]
    slow = percentile((s.latency for s in refused), 0.99)
    record(
        SUITE,
        "balancer_restart",
        title="Balancer killed and restarted",
        guarantee=f"gateway answers 503 + Retry-After within {FAST:g} s while it is gone; then recovers",
        samples=samples,
        failed=len(not_503),
        recovery_s=recovery,
        latency_of=refused,
        extra={
            "requests_while_gone": len(gone),
            "answered_503": len(refused),
            "seconds_gone": round(back_at - stopped_at, 2),
            "seconds_to_start": round(back_at - restarting_at, 2),
            "in_flight_at_kill_502": sum(1 for s in samples if s.status == 502),
        },
    )
    assert gone
    assert not_503 == [], f"{len(not_503)} requests were not a 503 + Retry-After: {not_503[:3]}"
    assert slow is not None
    assert slow < FAST, f"p99 of the 503s was {slow:.3f} s"
    assert recovery is not None


async def test_hanging_backend_times_out_with_504_and_its_breaker_opens(
    tmp_path: Path, database_url: str, redis_url: str, http: aiohttp.ClientSession
) -> None:
    hanging = start_test_backend(tmp_path)
    # Round robin keeps sending the hanging backend its share (p2c would learn to avoid it before its breaker
    # saw enough failures), so the breaker's own behaviour is what is measured.
    balancer_env = {
        "BALANCER_TIMEOUT": str(BALANCER_TIMEOUT),
        "BALANCER_BREAKER_RESET": "30",
        "BALANCER_ALGORITHM": "round_robin",
    }
    with running_stack(
        tmp_path,
        database_url,
        redis_url,
        apiservers=1,
        extra_backends=[hanging],
        balancer_env=balancer_env,
        rate_limits=UNLIMITED,
    ) as cluster:
        async with http.post(hanging.url + "/_control?delay=60") as response:
            assert response.status == 200
        auth = await cluster.bearer(http, DEV_USER.login)

        def pick(number: int) -> object:
            from tests.resilience.load import Call

            return Call("status", "GET", f"{cluster.gateway}/api/v1/status", auth)

        load = LoadRun(http, pick, concurrency=4, budget=2_000, deadline=20)  # type: ignore[arg-type]
        load.start()

        async def breaker_open() -> bool:
            backend = await cluster.backend(http, hanging)
            return str(backend["breaker"]["state"]) == "open"

        opened = await poll_until(breaker_open, within=15, interval=0.1)
        opened_at = time.monotonic()
        await load.more(100)
        samples = await load.stop()
        backend = await cluster.backend(http, hanging)

    timeouts = [s for s in samples if s.status == 504]
    other = [s for s in samples if s.status not in (200, 504)]
    after = [s for s in samples if s.started >= opened_at]
    record(
        SUITE,
        "hanging_backend",
        title=f"A backend that never answers (balancer timeout {BALANCER_TIMEOUT:g} s)",
        guarantee="504 at the timeout; the backend's breaker opens; then no request waits for it",
        samples=samples,
        failed=len(other) + sum(1 for s in after if s.status != 200),
        recovery_s=opened,
        latency_of=timeouts,
        extra={
            "backend": backend_id(hanging),
            "breaker": backend["breaker"]["state"],
            "timeouts_504": len(timeouts),
            "p99_after_breaker_open_ms": round((percentile((s.latency for s in after), 0.99) or 0) * 1000, 1),
        },
    )
    assert timeouts, "no request timed out on the hanging backend"
    assert all(BALANCER_TIMEOUT - 0.05 <= s.latency <= BALANCER_TIMEOUT + 1.0 for s in timeouts), timeouts[:3]
    assert opened is not None, "the hanging backend's breaker never opened"
    assert other == [], other[:3]
    assert after
    assert all(s.status == 200 for s in after), "requests still failed after the breaker opened"
