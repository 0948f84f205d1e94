"""Login brute force against a gateway with the default limits: the account locks after 5 failures (even the
right password is then refused), and one address is stopped after 20 failures across accounts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from database.accounts import DEV_USER
from stack.services.ports import free_port
from tests.resilience.report import Sample, record
from tests.support.processes import SuiteProcess, start_process, suite_env
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def strict_gateway(stack: Stack, tmp_path: Path) -> Iterator[SuiteProcess]:
    env = suite_env(
        DATABASE_URL=stack.database_url,
        REDIS_URL=stack.redis_url,
        BALANCER_URL=stack.balancer.url,
        INSTANCE_ID="gateway-strict",
    )
    process = start_process("gateway", free_port(), tmp_path, env)
    try:
        yield process
    finally:
        process.stop()


async def _forget_failures(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter("auth:login:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_password_guessing_is_locked_out(
    stack: Stack, strict_gateway: SuiteProcess, http: aiohttp.ClientSession
) -> None:
    await _forget_failures(stack.redis_url)
    url = strict_gateway.url + "/api/v1/auth/login"
    samples: list[Sample] = []

    async def attempt(email: str, password: str) -> tuple[int, str | None]:
        async with http.post(url, json={"email": email, "password": password}) as response:
            await response.read()
            samples.append(Sample("login", response.status, 0.0, 0.0))
            return response.status, response.headers.get("Retry-After")

    try:
        guesses = [await attempt(DEV_USER.email, f"guess-{n}") for n in range(8)]
        right_password_while_locked = await attempt(DEV_USER.email, DEV_USER.password)
        spray = [await attempt(f"nobody{n}@example.com", "password1") for n in range(20)]
    finally:
        await _forget_failures(stack.redis_url)
    record(
        "security",
        "login_bruteforce",
        title="Login brute force (8 guesses on one account, then a 20-account spray)",
        guarantee="429 + Retry-After after 5 failures per account / 20 per address, even for the right password",
        samples=samples,
        failed=sum(1 for status, _ in guesses[5:] + spray[-3:] if status != 429),
        extra={"statuses_per_phase": {"guesses": [s for s, _ in guesses], "spray": dict(Counter(s for s, _ in spray))}},
    )
    assert [status for status, _ in guesses] == [401] * 5 + [429] * 3
    assert all(retry_after is not None and int(retry_after) > 0 for _, retry_after in guesses[5:])
    assert right_password_while_locked[0] == 429
    # 20 failures from one address: the address is blocked, whatever account it tries next.
    assert spray[-1][0] == 429
    assert Counter(status for status, _ in spray)[401] <= 20 - 5
