"""``GET /api/v1/admin/stream``: the dashboard snapshot as server-sent events, one every ``ADMIN_STREAM_INTERVAL``.

Each event is ``event: snapshot`` with the JSON of ``/api/v1/admin/dashboard``; a comment line is sent first so
proxies flush the headers at once. The first event's ``fleet.history`` holds the gateway fleet's last 15 minutes
(kept in Redis, so a reload, or a page served by another gateway, opens on the same charts), later ones its last
few seconds. The loop ends when the client goes away (the write fails) or on shutdown (the handler is
cancelled); ``max_events`` (query, 1 to 1,000,000, anything else a 422) bounds a stream for tests and scripts.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiohttp import web

from gateway.admin.routes import dashboard_snapshot
from gateway.fleet import HISTORY_SECONDS, RECENT_SECONDS
from gateway.http import query_int
from gateway.keys import PRINCIPAL, RATE_HEADERS, SETTINGS
from shared.authz import require_admin
from shared.spans import untraced

MAX_EVENTS = 1_000_000


async def stream(request: web.Request) -> web.StreamResponse:
    identity = require_admin(request[PRINCIPAL].identity)
    interval = request.app[SETTINGS].stream_interval
    max_events = (
        query_int(request.query, "max_events", default=0, low=1, high=MAX_EVENTS)
        if "max_events" in request.query
        else None
    )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            **request.get(RATE_HEADERS, {}),
        }
    )
    await response.prepare(request)
    await response.write(b": snapshots follow\n\n")
    sent = 0
    with contextlib.suppress(ConnectionError):
        while max_events is None or sent < max_events:
            history = HISTORY_SECONDS if sent == 0 else RECENT_SECONDS
            # A sampled stream's trace holds its first snapshot's calls, not one more round every second for hours.
            with contextlib.nullcontext() if sent == 0 else untraced():
                snapshot = await dashboard_snapshot(request.app, identity, history=history)
            await response.write(b"event: snapshot\ndata: " + orjson.dumps(snapshot) + b"\n\n")
            sent += 1
            if max_events is not None and sent >= max_events:
                break
            await asyncio.sleep(interval)
        await response.write_eof()
    return response


def add_stream_route(app: web.Application) -> None:
    app.router.add_get("/api/v1/admin/stream", stream)
