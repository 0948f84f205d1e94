"""The dashboard's fleet view in a real browser: two gateways in front of one balancer, traffic sent to each,
and the page (served by either gateway) showing the fleet's total, a row per gateway, and charts that open on
the last 15 minutes kept in Redis (a reload no longer blanks them).

``UPDATE_DOCS_SCREENSHOT=1`` also refreshes the README's picture of the fleet view (docs/dashboard-fleet.png).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Locator, Page, expect

from database.accounts import DEV_ADMIN, DEV_USER
from shared.keys import GATEWAY_SLOT_PREFIX
from tests.browser.conftest import ROOT, screenshot
from tests.browser.test_dashboard import SECONDS
from tests.support.polling import wait_until
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path, database_url: str, redis_url: str, dashboard_dist: Path) -> Iterator[Stack]:
    """Two gateways (gateway-1, gateway-2) sharing Redis, in front of one balancer and two apiservers."""
    with running_stack(
        tmp_path,
        database_url,
        redis_url,
        gateways=2,
        DASHBOARD_DIR=str(dashboard_dist),
        RATE_LIMIT_FREE="60",  # one budget across the fleet (Redis): the 429 chart has something to show
        RATE_LIMIT_ANONYMOUS="10000",
        ADMIN_STREAM_INTERVAL="0.5",
    ) as running:
        yield running


async def traffic(base: str, *, requests: int) -> dict[int, int]:
    """``requests`` API calls to one gateway as the free-tier user; answers counted by status."""
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/api/v1/auth/login", json=DEV_USER.login) as response:
            assert response.status == 200, await response.text()
            headers = {"Authorization": f"Bearer {(await response.json())['token']}"}
        for _ in range(requests):
            async with http.get(base + "/api/v1/status", headers=headers) as response:
                statuses[response.status] = statuses.get(response.status, 0) + 1
            await asyncio.sleep(0.02)
    return statuses


async def steady(bases: list[str], stop: asyncio.Event) -> None:
    """A steady trickle to every gateway as the admin (never limited), so the charts draw a line, not dots."""
    async with aiohttp.ClientSession() as http:
        async with http.post(bases[0] + "/api/v1/auth/login", json=DEV_ADMIN.login) as response:
            headers = {"Authorization": f"Bearer {(await response.json())['token']}"}
        while not stop.is_set():
            for base in bases:
                async with http.get(base + "/api/v1/resources?limit=5", headers=headers) as response:
                    await response.read()
            await asyncio.sleep(0.1)


async def sign_in_live(page: Page, base: str) -> None:
    await page.goto(base + "/dashboard/")
    await page.get_by_label("Email").fill(DEV_ADMIN.email)
    await page.get_by_label("Password").fill(DEV_ADMIN.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_test_id("stream-status")).to_have_text("live", timeout=15 * SECONDS)


async def count(locator: Locator) -> int:
    return int(re.sub(r"\D", "", await locator.inner_text()) or "0")


def gateway_row(page: Page, instance: str) -> Locator:
    return page.locator(f'tr[data-gateway="{instance}"]')


async def chart_history(page: Page) -> tuple[int, float]:
    """How many seconds the request-rate chart draws, and the first one (epoch seconds)."""
    chart = page.get_by_test_id("chart-requests")
    points = await chart.get_attribute("data-points")
    first = await chart.get_attribute("data-first")
    return int(points or 0), float(first or "inf")


async def test_traffic_to_either_gateway_shows_in_the_fleet_and_charts_survive_a_reload(
    stack: Stack, page: Page
) -> None:
    first, second = (gateway.url for gateway in stack.gateways)
    stop = asyncio.Event()
    trickle = asyncio.create_task(steady([first, second], stop))
    try:
        started = await _traffic_to_both_shows_in_the_total(page, first, second)
        # The page served by the other gateway opens on the same charts: the history is the fleet's, in Redis.
        await sign_in_live(page, second)
        await wait_until(lambda: _charts_start_before(page, started), within=5, interval=0.1)
        await expect(gateway_row(page, "gateway-1")).to_have_attribute("data-state", "up")
        await expect(gateway_row(page, "gateway-2")).to_contain_text("serves this page")
        await page.set_viewport_size({"width": 1280, "height": 1180})
        if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":  # refreshes the README's picture on demand only
            await _a_minute_of_traffic(page, first, second)
            shutil.copyfile(await screenshot(page, "dashboard-fleet"), ROOT / "docs" / "dashboard-fleet.png")
        else:
            await screenshot(page, "dashboard-fleet")
    finally:
        stop.set()
        await trickle
    await _a_reload_opens_on_fifteen_minutes(page, stack.redis_url)


async def _traffic_to_both_shows_in_the_total(page: Page, first: str, second: str) -> float:
    """Signed in on gateway-1, traffic to both gateways; returns when it started (epoch seconds)."""
    await sign_in_live(page, first)
    for instance in ("gateway-1", "gateway-2"):
        await expect(gateway_row(page, instance)).to_have_attribute("data-state", "up", timeout=10 * SECONDS)
    await expect(page.get_by_test_id("stat-gateways")).to_have_text("2 live")
    total = page.get_by_test_id("stat-requests")
    on_second = gateway_row(page, "gateway-2").get_by_test_id("gateway-requests")
    total_before, second_before = await count(total), await count(on_second)

    started = time.time()
    sent = await asyncio.gather(traffic(first, requests=60), traffic(second, requests=90))
    answered = [sum(statuses.values()) for statuses in sent]
    assert sum(statuses.get(200, 0) for statuses in sent) == 60, sent  # one free-tier budget for the fleet
    assert sum(statuses.get(429, 0) for statuses in sent) == 90, sent

    # The page is served by gateway-1; what gateway-2 answered shows in its own row and in the fleet's total.
    async def fleet_counted() -> bool:
        second_counted = await count(on_second) >= second_before + answered[1]
        return second_counted and await count(total) >= total_before + sum(answered)

    await wait_until(fleet_counted, within=10, interval=0.2)
    await expect(page.get_by_test_id("stat-429")).not_to_have_text(re.compile(r"^—$"))
    return started


async def _a_minute_of_traffic(page: Page, first: str, second: str) -> None:
    """For the README's picture: the charts over about a minute, with a second burst of limited traffic."""

    async def drawn(seconds: int) -> bool:
        return (await chart_history(page))[0] >= seconds

    await wait_until(lambda: drawn(30), within=60, interval=0.5)
    await asyncio.gather(traffic(first, requests=80), traffic(second, requests=120))
    await wait_until(lambda: drawn(60), within=60, interval=0.5)


async def _a_reload_opens_on_fifteen_minutes(page: Page, redis_url: str) -> None:
    """A second from ten minutes ago, put in Redis while the page is open, is on the charts after a reload: a
    reload opens on the history kept server-side, not on what the page had gathered."""
    points, first_drawn = await chart_history(page)
    assert points >= 3
    old = int(first_drawn) - 600
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.hset(f"{GATEWAY_SLOT_PREFIX}{old}", mapping={"g": 2, "n": 1200})
    finally:
        await client.aclose()
    await page.reload()
    await expect(page.get_by_test_id("stream-status")).to_have_text("live", timeout=10 * SECONDS)
    await expect(page.get_by_test_id("chart-requests")).to_have_attribute("data-first", str(old), timeout=5 * SECONDS)
    await wait_until(lambda: _charts_start_before(page, first_drawn), within=5, interval=0.1)


async def _charts_start_before(page: Page, moment: float) -> bool:
    points, first = await chart_history(page)
    return points >= 3 and first <= moment
