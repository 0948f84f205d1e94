"""Fixtures for the browser suite: the real stack (tests/support/stack.py) serving the built dashboard, and
Debian's Chromium driven by Playwright (never a downloaded browser).

The suite skips, saying why, when ``frontend/dist`` is not built (``make frontend``) or ``/usr/bin/chromium``
is missing (``make chromium`` installs it as root); ``make test`` does both first.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

from tests.support.stack import Stack, start_stack

ROOT = Path(__file__).resolve().parents[2]
DIST = ROOT / "frontend" / "dist"
SCREENSHOTS = ROOT / "reports" / "screenshots"
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def dashboard_dist() -> Path:
    if not (DIST / "index.html").is_file():
        pytest.skip("frontend/dist is not built: run `make frontend` (needs npm) to run the browser suite")
    return DIST


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: `make chromium` (root + apt-get) installs Debian's chromium")
    return CHROMIUM


@pytest.fixture
def stack(tmp_path: Path, database_url: str, redis_url: str, dashboard_dist: Path) -> Iterator[Stack]:
    running = start_stack(
        tmp_path,
        database_url,
        redis_url,
        DASHBOARD_DIR=str(dashboard_dist),
        RATE_LIMIT_FREE="60",
        RATE_LIMIT_ANONYMOUS="10000",
        ADMIN_STREAM_INTERVAL="0.5",
    )
    # A free-tier user gets 429s quickly (60/min), so the charts have something to show; the dashboard's own
    # asset loads (anonymous) are never limited during the suite; snapshots arrive twice a second.
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser context at laptop width; fails the test on any uncaught script error or CSP violation."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            problems.append(message.text)

    def on_page_error(error: Error) -> None:
        problems.append(f"uncaught: {error}")

    opened.on("console", on_console)
    opened.on("pageerror", on_page_error)
    try:
        yield opened
    finally:
        await context.close()
    assert problems == [], problems


async def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path
