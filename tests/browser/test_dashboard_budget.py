"""The console during an incident: the operator's address has spent its anonymous API budget (the gateway
answers its anonymous API calls with 429), yet the dashboard still loads in a real browser, and a signed-in
admin's console reloads and goes live (its files skip the API's limits; its API calls run on the admin's
tier)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, Response, expect

from tests.browser.conftest import screenshot
from tests.browser.test_dashboard import SECONDS, sign_in_live
from tests.resilience.report import Sample, record
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

ANONYMOUS_BUDGET = 20


@pytest.fixture
def stack(tmp_path: Path, database_url: str, redis_url: str, dashboard_dist: Path) -> Iterator[Stack]:
    """The browser suite's stack with a small anonymous budget, so a test can spend it in a moment."""
    with running_stack(
        tmp_path,
        database_url,
        redis_url,
        DASHBOARD_DIR=str(dashboard_dist),
        RATE_LIMIT_ANONYMOUS=str(ANONYMOUS_BUDGET),
        ADMIN_STREAM_INTERVAL="0.5",
    ) as running:
        yield running


async def spend_anonymous_budget(stack: Stack) -> None:
    """Anonymous API calls from this address (the browser's too: both are 127.0.0.1) until the gateway refuses."""
    async with aiohttp.ClientSession() as http:
        for _ in range(ANONYMOUS_BUDGET + 1):
            async with http.get(stack.gateway + "/api/v1/status") as response:
                if response.status == 429:
                    return
                assert response.status == 200, await response.text()
    pytest.fail(f"{ANONYMOUS_BUDGET + 1} anonymous calls were all admitted")


async def anonymous_api_status(stack: Stack) -> int:
    async with aiohttp.ClientSession() as http, http.get(stack.gateway + "/api/v1/status") as response:
        return response.status


def dashboard_files(page: Page, stack: Stack) -> list[Response]:
    """Every answer the page gets for the dashboard's own files, collected as it loads."""
    seen: list[Response] = []
    prefix = stack.gateway + "/dashboard"

    def on_response(response: Response) -> None:
        if response.url.startswith(prefix):
            seen.append(response)

    page.on("response", on_response)
    return seen


async def test_console_loads_and_stays_live_while_the_anonymous_budget_is_spent(stack: Stack, page: Page) -> None:
    await page.goto(stack.gateway + "/dashboard/")
    await sign_in_live(page, stack)
    await spend_anonymous_budget(stack)

    files = dashboard_files(page, stack)
    await page.reload()
    await expect(page.get_by_test_id("stream-status")).to_have_text("live", timeout=15 * SECONDS)
    await screenshot(page, "budget-spent-live")
    assert files, "the reload fetched no dashboard file"
    assert all(response.status < 400 for response in files), [(r.url, r.status) for r in files]

    # A fresh browser (no session, nothing cached) gets the whole console, not a 429 problem.
    assert page.context.browser is not None
    fresh = await page.context.browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        signed_out = await fresh.new_page()
        cold = dashboard_files(signed_out, stack)
        document = await signed_out.goto(stack.gateway + "/dashboard/")
        assert document is not None
        assert document.status == 200
        await expect(signed_out.get_by_label("Email")).to_be_visible(timeout=10 * SECONDS)
        await expect(signed_out.get_by_role("button", name="Sign in")).to_be_visible()
        assert len(cold) >= 3, [r.url for r in cold]  # index.html, its script and its stylesheet
        assert all(response.status == 200 for response in cold), [(r.url, r.status) for r in cold]
    finally:
        await fresh.close()

    # The API's limit held throughout: the same address is still refused anonymously.
    api_status = await anonymous_api_status(stack)
    served = [Sample(response.url.removeprefix(stack.gateway), response.status, 0.0, 0.0) for response in files + cold]
    record(
        "resilience",
        "dashboard_budget_spent",
        title="The console from an address whose anonymous API budget is spent",
        guarantee="every dashboard file 2xx/3xx, the console goes live; that address's anonymous API calls stay 429",
        samples=[*served, Sample("anonymous GET /api/v1/status", api_status, 0.0, 0.0)],
        failed=sum(sample.status >= 400 for sample in served) + (api_status != 429),
    )
    assert api_status == 429
    await expect(page.get_by_test_id("stream-status")).to_have_text("live")
