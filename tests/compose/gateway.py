"""Talking to a Compose stack through its one published port, 127.0.0.1:8080, as a user would."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from tests.compose.project import GATEWAY
from tests.resilience.load import poll_until

__all__ = ["bearer", "get_json", "instances_answering", "wait_for_instances"]


async def bearer(http: aiohttp.ClientSession, login: Mapping[str, str]) -> dict[str, str]:
    async with http.post(GATEWAY + "/api/v1/auth/login", json=dict(login)) as response:
        assert response.status == 200, await response.text()
        return {"Authorization": f"Bearer {(await response.json())['token']}"}


async def get_json(http: aiohttp.ClientSession, path: str, headers: Mapping[str, str] | None = None) -> Any:
    async with http.get(GATEWAY + path, headers=dict(headers or {})) as response:
        assert response.status == 200, f"GET {path}: {response.status} {await response.text()}"
        return await response.json()


async def instances_answering(http: aiohttp.ClientSession, auth: Mapping[str, str], *, requests: int) -> set[str]:
    """The apiserver instances that answered ``requests`` GET /api/v1/status through the gateway."""
    seen: set[str] = set()
    for _ in range(requests):
        try:
            async with http.get(GATEWAY + "/api/v1/status", headers=dict(auth)) as response:
                if response.status == 200:
                    seen.add(str((await response.json())["instanceId"]))
        except aiohttp.ClientError:
            continue
    return seen


async def wait_for_instances(
    http: aiohttp.ClientSession, auth: Mapping[str, str], count: int, *, within: float = 60.0
) -> tuple[set[str], float | None]:
    """Poll until ``count`` distinct apiservers answer through the gateway: (the last set seen, seconds or None)."""
    seen: set[str] = set()
    started = time.monotonic()

    async def enough() -> bool:
        seen.clear()
        seen.update(await instances_answering(http, auth, requests=8 * count))
        return len(seen) >= count

    waited = await poll_until(enough, within=within, interval=0.5)
    return seen, None if waited is None else round(time.monotonic() - started, 2)
