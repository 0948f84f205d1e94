"""``/metrics`` renders off the event loop: requests in flight are served while a slow render runs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from shared.metrics import Metrics, metrics_handler

Client = TestClient[web.Request, web.Application]
ClientFactory = Callable[[web.Application], Awaitable[Client]]


async def test_a_request_is_answered_while_a_render_is_still_running(
    aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = Metrics("test")
    started, finish = threading.Event(), threading.Event()

    def slow_render() -> bytes:  # pure Python, holding the interpreter as a big registry's render does
        started.set()
        deadline = time.perf_counter() + 10  # until the test lets it finish: no race with a fixed duration
        while not finish.is_set() and time.perf_counter() < deadline:
            pass
        return b"# rendered\n"

    monkeypatch.setattr(metrics, "render", slow_render)

    async def ping(request: web.Request) -> web.Response:
        return web.Response(text="pong")

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(metrics))
    app.router.add_get("/ping", ping)
    client = await aiohttp_client(app)

    scrape = asyncio.create_task(client.get("/metrics"))
    assert await asyncio.to_thread(started.wait, 5), "the render began"
    try:
        # A render on the event loop would hold /ping until its 10-s cap, and the scrape would be done first.
        answered = await asyncio.wait_for(client.get("/ping"), 5)
        assert await answered.text() == "pong"
        assert not scrape.done(), "/ping was answered while the render ran"
    finally:
        finish.set()
    assert await (await scrape).read() == b"# rendered\n"
