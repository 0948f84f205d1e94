"""A page on another origin calls the API from Chromium with fetch: CORS as a browser enforces it.

Two tiny pages are served from other ports of 127.0.0.1 (other origins than the gateway's): one listed in the
gateway's CORS_ALLOW_ORIGINS, one not. The listed page reads bodies and the exposed headers (rate limits, ETag,
X-Request-ID, Location), signs in and writes (preflighted requests); the other one is blocked by the browser.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Page

from database.accounts import DEV_USER
from database.seed import seed
from stack.services.ports import free_port
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

PAGE_HTML = "<!doctype html><html><head><title>another origin</title></head><body>another origin</body></html>"

# Runs in the page, so the browser applies CORS; returns what the page's code could see.
CALL = """
async ([url, init]) => {
  try {
    const response = await fetch(url, init);
    const headers = {};
    for (const name of ["etag", "x-ratelimit-remaining", "ratelimit", "x-request-id", "location",
                        "cache-control", "x-cache"]) {
      headers[name] = response.headers.get(name);
    }
    const text = await response.text();
    return {status: response.status, headers, body: text ? JSON.parse(text) : null};
  } catch (error) {
    return {error: String(error)};
  }
}
"""


@pytest.fixture
def origins() -> tuple[int, int]:
    """The ports of the allowed page and of the refused one."""
    return free_port(), free_port()


@pytest.fixture
async def cors_stack(
    tmp_path: Path, database_url: str, redis_url: str, origins: tuple[int, int]
) -> AsyncIterator[Stack]:
    await seed(database_url, resources=3)
    with running_stack(
        tmp_path,
        database_url,
        redis_url,
        apiservers=1,
        CORS_ALLOW_ORIGINS=f"http://127.0.0.1:{origins[0]}",
        RATE_LIMIT_ANONYMOUS="10000",
    ) as stack:
        stack.gateways[0].wait_healthy()
        yield stack


async def _serve_page(port: int) -> web.AppRunner:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE_HTML, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.fixture
async def pages(origins: tuple[int, int]) -> AsyncIterator[tuple[str, str]]:
    runners = [await _serve_page(port) for port in origins]
    try:
        yield f"http://127.0.0.1:{origins[0]}/", f"http://127.0.0.1:{origins[1]}/"
    finally:
        for runner in runners:
            await runner.cleanup()


async def call(page: Page, url: str, init: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(CALL, [url, init or {}])
    return result


async def test_a_listed_origin_reads_bodies_and_exposed_headers(
    cors_stack: Stack, pages: tuple[str, str], page: Page
) -> None:
    api = cors_stack.gateway + "/api/v1"
    await page.goto(pages[0])
    read = await call(page, api + "/resources/1")
    assert "error" not in read, read
    assert read["status"] == 200
    assert read["body"]["id"] == 1
    headers = read["headers"]
    assert headers["etag"].startswith('"')
    assert int(headers["x-ratelimit-remaining"]) >= 0
    assert headers["ratelimit"].startswith('"anonymous"')
    assert headers["x-request-id"]
    assert headers["cache-control"].startswith("public, ")  # CORS-safelisted: always readable
    assert headers["x-cache"] is None  # not exposed: the page sees only what the gateway lists

    # JSON bodies and Authorization make these preflighted requests.
    login = await call(
        page,
        api + "/auth/login",
        {"method": "POST", "headers": {"Content-Type": "application/json"}, "body": _json(DEV_USER.login)},
    )
    assert login.get("status") == 200, login
    auth = {"Authorization": f"Bearer {login['body']['token']}"}
    created = await call(
        page,
        api + "/resources",
        {
            "method": "POST",
            "headers": {**auth, "Content-Type": "application/json", "Idempotency-Key": "browser-1"},
            "body": _json({"name": "from another origin", "type": "note"}),
        },
    )
    assert created.get("status") == 201, created
    location = created["headers"]["location"]
    assert location == f"/api/v1/resources/{created['body']['id']}"
    mine = await call(page, cors_stack.gateway + location, {"headers": auth})
    assert mine["status"] == 200
    assert mine["headers"]["cache-control"].startswith("private")
    etag = mine["headers"]["etag"]
    unchanged = await call(page, cors_stack.gateway + location, {"headers": {**auth, "If-None-Match": etag}})
    assert unchanged["status"] == 304
    refused = await call(page, api + "/resources/999999")
    assert refused["status"] == 404  # an allowed page reads errors too
    assert refused["body"]["status"] == 404


async def test_another_origin_is_blocked_by_the_browser(cors_stack: Stack, pages: tuple[str, str], page: Page) -> None:
    api = cors_stack.gateway + "/api/v1"
    await page.goto(pages[1])
    simple = await call(page, api + "/resources/1")
    assert "Failed to fetch" in simple.get("error", ""), simple
    preflighted = await call(
        page,
        api + "/auth/login",
        {"method": "POST", "headers": {"Content-Type": "application/json"}, "body": _json(DEV_USER.login)},
    )
    assert "Failed to fetch" in preflighted.get("error", ""), preflighted


def _json(value: object) -> str:
    return json.dumps(value)
