"""The limiter's own scenario: how many decisions one Redis makes per second, and its CPU per decision.

Drives the gateway's real ``RedisRateLimiter`` (the Lua script through the auto-pipelined connection) from this
process over ``identities`` distinct callers picked uniformly, each decision with one revocation marker to check,
as a JWT request makes. Redis's CPU comes from /proc, so the figure is what a fleet of gateways would cost the
shared Redis per decision, whatever the driver's own speed.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import redis.asyncio as aioredis

from gateway.auth.principal import TOKEN, revocation_marker
from gateway.ratelimit.base import WindowConfig
from gateway.ratelimit.redis import RedisRateLimiter
from stack.bench.probes import sample

TARGET_DECISIONS_PER_SECOND = 40_000


async def _drive(redis_url: str, identities: int, seconds: float, concurrency: int) -> tuple[int, int]:
    client = aioredis.from_url(redis_url)
    limiter = RedisRateLimiter(client, WindowConfig())
    deadline = time.monotonic() + seconds
    decisions = refused = 0

    async def caller(seed: int) -> None:
        nonlocal decisions, refused
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            for _ in range(100):  # the clock is read once per 100 decisions
                identity = rng.randrange(identities)
                decision = await limiter.hit(
                    f"bench:{identity}",
                    1000,
                    revocation_keys=(revocation_marker(f"bench:{identity}", TOKEN, identity),),
                )
                decisions += 1
                refused += not decision.allowed

    try:
        await asyncio.gather(*(caller(seed) for seed in range(concurrency)))
    finally:
        await limiter.close()
        await client.aclose()
    return decisions, refused


def measure_limiter(redis_url: str, redis_pid: int, *, identities: int, seconds: float) -> dict[str, Any]:
    before = sample([redis_pid]).cpu_seconds
    started = time.perf_counter()
    decisions, refused = asyncio.run(_drive(redis_url, identities, seconds, concurrency=256))
    elapsed = time.perf_counter() - started
    redis_cpu = sample([redis_pid]).cpu_seconds - before
    rate = decisions / elapsed
    return {
        "scenario": "limiter",
        "description": f"rate-limit decisions over {identities:,} identities, one Redis",
        "decisions": decisions,
        "refused": refused,
        "decisions_per_second": round(rate, 1),
        "redis_cpu_ms_per_decision": round(1000 * redis_cpu / max(decisions, 1), 4),
        # What one fully busy Redis core would decide at this CPU per decision.
        "redis_core_capacity_per_second": round(decisions / redis_cpu) if redis_cpu > 0 else None,
        "target_decisions_per_second": TARGET_DECISIONS_PER_SECOND,
    }
