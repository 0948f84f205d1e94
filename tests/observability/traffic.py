"""The traffic the observability tests look at, and what the clients saw of it.

For a few seconds, rounds of requests go through the gateway:

    a free-tier user      GET every resource and the list   ─► cached reads: L1 hits, and L2 hits where the
                                                               other apiserver filled Redis first
    the enterprise admin  PATCH one resource every few rounds ─► invalidations, so L1 and L2 misses keep happening
    anonymous clients     GET /api/v1/status, twice a round   ─► past the (small) anonymous limit: 429s

The balancer's pool also holds a backend that answers 500 to everything but its health probes, so its circuit
breaker opens (and stays open: the stack's reset timeout is long) while the apiservers keep serving.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from database.accounts import DEV_ADMIN, DEV_USER
from tests.support.stack import Stack, operator_headers

__all__ = ["ANONYMOUS_LIMIT", "RESOURCES", "Traffic", "create_resources", "drive"]

ANONYMOUS_LIMIT = 20  # anonymous requests per minute (RATE_LIMIT_ANONYMOUS): a few rounds spend it
RESOURCES = 6
WRITE_EVERY = 4  # rounds between two PATCHes: most reads stay cache hits
ANONYMOUS_PER_ROUND = 2
PACE = 0.1  # seconds between rounds: keeps the load light on two cores; the rounds are not waiting for a state


@dataclass
class Traffic:
    """What the clients were answered: (who, route template, status) -> count."""

    rounds: int = 0
    answers: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    def count(self, *, who: str | None = None, status: int | None = None) -> int:
        return sum(
            n
            for (sender, _, answered), n in self.answers.items()
            if who in (None, sender) and status in (None, answered)
        )


async def create_resources(http: aiohttp.ClientSession, stack: Stack, count: int) -> list[int]:
    """Created on the first apiserver directly (as the gateway would forward the admin), not through the
    balancer, whose pool holds the failing backend."""
    ids = []
    for index in range(count):
        body = {"name": f"observed {index}", "type": "observed", "data": {"i": index}}
        url = stack.apiservers[0].url + "/api/v1/resources"
        async with http.post(url, json=body, headers=operator_headers()) as response:
            assert response.status == 201, await response.text()
            ids.append(int((await response.json())["id"]))
    return ids


async def drive(http: aiohttp.ClientSession, stack: Stack, ids: list[int], *, seconds: float) -> Traffic:
    """Rounds of the traffic above for ``seconds``."""
    traffic = Traffic()
    admin = await stack.bearer(http, DEV_ADMIN.login)
    user = await stack.bearer(http, DEV_USER.login)

    async def send(who: str, method: str, route: str, path: str, auth: dict[str, str] | None, body: object) -> None:
        async with http.request(method, stack.gateway + path, headers=auth, json=body) as response:
            await response.read()
            traffic.answers[(who, route, response.status)] += 1

    started = time.monotonic()
    while time.monotonic() - started < seconds:
        calls = [send("user", "GET", "/api/v1/resources/{id}", f"/api/v1/resources/{i}", user, None) for i in ids]
        calls.append(send("user", "GET", "/api/v1/resources", "/api/v1/resources", user, None))
        calls += [
            send("anonymous", "GET", "/api/v1/status", "/api/v1/status", None, None) for _ in range(ANONYMOUS_PER_ROUND)
        ]
        if traffic.rounds % WRITE_EVERY == 0:
            changed = ids[traffic.rounds // WRITE_EVERY % len(ids)]
            body = {"data": {"round": traffic.rounds}}
            calls.append(send("admin", "PATCH", "/api/v1/resources/{id}", f"/api/v1/resources/{changed}", admin, body))
        await asyncio.gather(*calls)
        traffic.rounds += 1
        await asyncio.sleep(PACE)
    return traffic
