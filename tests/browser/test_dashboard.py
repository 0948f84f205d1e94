"""The admin dashboard in a real browser (Debian's Chromium via Playwright) against real processes:
gateway → balancer → two apiservers, PostgreSQL and Redis.

Each test drives the UI the way an operator would and checks the effect on the running system, not just the
page: a drained backend gets no traffic, a cleared cache has no keys left, a revoked key is refused.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Locator, Page, expect

from database.accounts import DEV_ADMIN, DEV_USER, DevAccount
from tests.browser.conftest import ROOT, screenshot
from tests.support.polling import wait_until
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

SECONDS = 1000  # Playwright timeouts are in milliseconds


async def sign_in(page: Page, stack: Stack, account: DevAccount) -> None:
    if not page.url.startswith(stack.gateway + "/dashboard/"):
        await page.goto(stack.gateway + "/dashboard/")
    await page.get_by_label("Email").fill(account.email)
    await page.get_by_label("Password").fill(account.password)
    await page.get_by_role("button", name="Sign in").click()


async def sign_in_live(page: Page, stack: Stack) -> None:
    await sign_in(page, stack, DEV_ADMIN)
    await expect(page.get_by_test_id("stream-status")).to_have_text("live", timeout=15 * SECONDS)


def backend_row(page: Page, url: str) -> Locator:
    return page.locator("tr[data-backend]", has_text=url)


async def login_token(http: aiohttp.ClientSession, stack: Stack, account: DevAccount) -> str:
    async with http.post(stack.gateway + "/api/v1/auth/login", json=account.login) as response:
        assert response.status == 200, await response.text()
        token: str = (await response.json())["token"]
    return token


async def traffic(stack: Stack, *, seconds: float, max_requests: int = 2000) -> dict[int, int]:
    """Bounded traffic as the free-tier user (whose small limit produces 429s); counts answers by status."""
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {await login_token(http, stack, DEV_USER)}"}
        deadline = asyncio.get_running_loop().time() + seconds
        sent = 0
        while asyncio.get_running_loop().time() < deadline and sent < max_requests:
            async with http.get(stack.gateway + "/api/v1/status", headers=headers) as response:
                statuses[response.status] = statuses.get(response.status, 0) + 1
            sent += 1
            await asyncio.sleep(0.01)
    return statuses


async def test_admin_signs_in_user_is_refused_and_sessions_end(stack: Stack, page: Page) -> None:
    await page.goto(stack.gateway + "/dashboard/")
    await screenshot(page, "login")
    await sign_in(page, stack, DEV_USER)
    await expect(page.get_by_role("heading", name="Admins only")).to_be_visible()
    await screenshot(page, "admins-only")
    await page.get_by_role("button", name="Sign out").click()

    await sign_in_live(page, stack)
    assert "token" not in page.url
    await page.reload()  # the session survives a reload (sessionStorage), still never in the URL
    await expect(page.get_by_test_id("stream-status")).to_have_text("live", timeout=10 * SECONDS)

    # The gateway goes away: the banner says the data is stale; it comes back: the view reconnects by itself.
    gateway = stack.gateways[0]
    gateway.stop()
    await expect(page.get_by_test_id("stale-banner")).to_contain_text("stale", timeout=15 * SECONDS)
    await screenshot(page, "stale")
    gateway.start()
    await expect(page.get_by_test_id("stale-banner")).to_be_hidden(timeout=30 * SECONDS)
    await expect(page.get_by_test_id("stream-status")).to_have_text("live")

    # An expired session (access and refresh token refused) returns to the login screen.
    await page.evaluate(
        """() => {
            const key = "scalable-api.dashboard.session";
            const session = JSON.parse(sessionStorage.getItem(key));
            sessionStorage.setItem(key, JSON.stringify({...session, token: "expired", refreshToken: "expired"}));
        }"""
    )
    await page.reload()
    await expect(page.get_by_text("Your session expired")).to_be_visible(timeout=10 * SECONDS)

    await sign_in_live(page, stack)
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_text("You are signed out.")).to_be_visible()


async def test_live_view_follows_traffic_failures_and_drains(stack: Stack, page: Page) -> None:
    await sign_in_live(page, stack)
    first, second = stack.apiservers
    for process in (first, second):
        await expect(backend_row(page, process.url)).to_have_attribute("data-healthy", "true", timeout=10 * SECONDS)
    requests = page.get_by_test_id("stat-requests")
    before = int(re.sub(r"\D", "", await requests.inner_text()) or "0")

    # Numbers move while traffic flows: request rate, 429s (the free tier's limit is 60/min here), totals.
    load = asyncio.create_task(traffic(stack, seconds=6))
    await expect(page.get_by_test_id("stat-rps")).not_to_have_text(re.compile(r"^(0/s|—)$"), timeout=8 * SECONDS)
    await expect(page.get_by_test_id("stat-429")).not_to_have_text(re.compile(r"^(0/s|—)$"), timeout=8 * SECONDS)
    statuses = await load
    assert statuses.get(200) == 60, statuses
    assert statuses.get(429, 0) > 0, statuses

    async def total_counted() -> bool:
        return int(re.sub(r"\D", "", await requests.inner_text()) or "0") >= before + sum(statuses.values())

    await wait_until(total_counted, within=5, interval=0.2)
    shot = await screenshot(page, "dashboard")
    await screenshot(page, "dashboard-full", full_page=True)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":  # refreshes the README's picture on demand only
        shutil.copyfile(shot, ROOT / "docs" / "dashboard.png")

    # Killing an apiserver turns its row unhealthy within seconds; restarting it turns it healthy again.
    second.kill()
    await expect(backend_row(page, second.url)).to_have_attribute("data-healthy", "false", timeout=5 * SECONDS)
    await expect(backend_row(page, second.url)).to_contain_text("unhealthy")
    await screenshot(page, "backend-down")
    second.start()
    await expect(backend_row(page, second.url)).to_have_attribute("data-healthy", "true", timeout=10 * SECONDS)

    # Draining from the UI takes the backend out of rotation: no request reaches it until it is enabled.
    row = backend_row(page, first.url)
    await row.get_by_role("button", name=re.compile("^Drain backend")).click()
    await expect(row).to_contain_text("draining", timeout=5 * SECONDS)
    served = await instances_serving(stack, 20)
    assert served == {second.env["INSTANCE_ID"]}, served
    await row.get_by_role("button", name=re.compile("^Enable backend")).click()
    await expect(row).to_contain_text("in rotation", timeout=5 * SECONDS)

    async def both_serve_again() -> bool:
        return len(await instances_serving(stack, 20)) == 2

    await wait_until(both_serve_again, within=10, interval=0.2)


async def instances_serving(stack: Stack, count: int) -> set[str]:
    seen: set[str] = set()
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {await login_token(http, stack, DEV_ADMIN)}"}
        for _ in range(count):
            async with http.get(stack.gateway + "/api/v1/status", headers=headers) as response:
                assert response.status == 200, await response.text()
                seen.add((await response.json())["instanceId"])
    return seen


async def cached_keys(redis_url: str) -> list[Any]:
    client = aioredis.from_url(redis_url)
    try:
        return [key async for key in client.scan_iter("cache:res:*")]
    finally:
        await client.aclose()


async def test_actions_cache_rate_limits_keys_and_tiers(stack: Stack, page: Page, redis_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        admin = {"Authorization": f"Bearer {await login_token(http, stack, DEV_ADMIN)}"}
        async with http.post(
            stack.gateway + "/api/v1/resources", json={"name": "cached", "type": "note"}, headers=admin
        ) as created:
            resource = (await created.json())["id"]
        for _ in range(3):
            async with http.get(f"{stack.gateway}/api/v1/resources/{resource}", headers=admin) as response:
                assert response.status == 200
    assert await cached_keys(redis_url)

    await sign_in_live(page, stack)
    await page.get_by_role("button", name="Clear cache…").click()
    dialog = page.get_by_role("dialog", name="Clear the whole cache?")
    await expect(dialog).to_be_visible()
    await screenshot(page, "confirm-cache-clear")
    await dialog.get_by_role("button", name="Clear cache").click()
    await expect(page.get_by_text("Cache cleared")).to_be_visible(timeout=5 * SECONDS)
    assert await cached_keys(redis_url) == []

    await page.get_by_label("User id, email or IP address").fill(DEV_USER.email)
    await page.get_by_role("button", name="Look up").click()
    await expect(page.locator("dl.facts")).to_contain_text("user:2")

    await page.get_by_label("New key name").fill("browser-test")
    await page.get_by_role("button", name="Create key").click()
    key = await page.get_by_label("New API key").input_value(timeout=5 * SECONDS)
    assert len(key) > 20
    await screenshot(page, "api-key-created")
    async with aiohttp.ClientSession() as http:

        async def me_with_key() -> int:
            async with http.get(stack.gateway + "/api/v1/me", headers={"X-API-Key": key}) as response:
                return response.status

        assert await me_with_key() == 200
        await page.get_by_role("button", name="Revoke key browser-test").click()
        await page.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
        await expect(page.get_by_text("Key “browser-test” revoked.")).to_be_visible()

        async def rejected() -> bool:
            return await me_with_key() == 401

        await wait_until(rejected, within=5, interval=0.2)

    await page.get_by_label(f"Tier of {DEV_USER.email}", exact=True).select_option("pro")
    await page.get_by_role("button", name=f"Save tier of {DEV_USER.email}").click()
    await expect(page.get_by_text(f"{DEV_USER.email} is now on the pro tier")).to_be_visible()
    await screenshot(page, "actions", full_page=True)

    await page.set_viewport_size({"width": 390, "height": 844})
    await page.evaluate("window.scrollTo(0, 0)")
    # Nothing sticks out sideways (wide tables scroll inside their own box); charts follow the new width.
    wide: list[str] = []

    async def fits_phone_width() -> bool:
        wide[:] = await page.evaluate(
            """() => [...document.querySelectorAll("body *")]
                .filter((el) => el.getBoundingClientRect().right > 391 && !el.closest(".table-scroll"))
                .map((el) => `${el.tagName}.${el.className} ${Math.round(el.getBoundingClientRect().right)}px`)"""
        )
        return not wide

    await wait_until(fits_phone_width, within=3, interval=0.1)
    await screenshot(page, "dashboard-phone")
