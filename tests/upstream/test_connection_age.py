"""A pool with ``max_age`` closes a connection after its lifetime, so connections re-spread behind one address."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestServer

from shared.upstream import Upstream

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]


async def _peer_port(request: web.Request) -> web.Response:
    """The client's port: one per connection the pool opened."""
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return web.Response(text=str(peer[1]) if peer else "")


async def _exchanges(aiohttp_server: ServerFactory, max_age: float, pauses: list[float]) -> tuple[list[str], list[int]]:
    """Each exchange's client port, and how many connections the pool held open right after its release."""
    app = web.Application()
    app.router.add_get("/", _peer_port)
    server = await aiohttp_server(app)
    upstream = Upstream(str(server.make_url("")), max_age=max_age)
    ports: list[str] = []
    open_after: list[int] = []
    try:
        for pause in pauses:
            await asyncio.sleep(pause)
            response = await upstream.send("GET", "/", {})
            body = b""
            while chunk := await response.read():
                body += chunk
            response.release()
            ports.append(body.decode())
            open_after.append(upstream.open_connections)
    finally:
        await upstream.close()
    return ports, open_after


async def test_without_max_age_one_connection_carries_every_exchange(aiohttp_server: ServerFactory) -> None:
    ports, open_after = await _exchanges(aiohttp_server, 0.0, [0, 0, 0.4, 0])
    assert len(set(ports)) == 1
    assert open_after == [1, 1, 1, 1]


async def test_a_connection_past_its_age_is_not_reused_and_a_new_one_is_opened(aiohttp_server: ServerFactory) -> None:
    # Lifetimes are drawn from 75-100 % of max_age: 0.3-0.4 s. Back to back, the first connection carries on;
    # idle beyond its age, it is closed instead of being taken again.
    ports, open_after = await _exchanges(aiohttp_server, 0.4, [0, 0, 0.45, 0, 0])
    assert ports[0] == ports[1]
    assert ports[2] == ports[3] == ports[4] != ports[1]
    assert max(open_after) == 1, "the old connection is closed, not left beside the new one"


async def test_a_busy_connection_is_closed_on_release_once_past_its_age(aiohttp_server: ServerFactory) -> None:
    # Never idle for long (an exchange every 20 ms for 0.6 s), a connection still lives at most 0.2 s.
    # Whether a connection passes its age during an exchange (closed on that release: none open after it) or
    # during a pause (not taken again: a new one carries the next exchange) is timing; either way, never two.
    ports, open_after = await _exchanges(aiohttp_server, 0.2, [0.02] * 30)
    runs = [port for index, port in enumerate(ports) if index == 0 or port != ports[index - 1]]
    assert len(runs) >= 3, ports
    assert len(set(runs)) == len(runs), "each connection carries one stretch of exchanges, then is gone"
    assert max(open_after) == 1, open_after
