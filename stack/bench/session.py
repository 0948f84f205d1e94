"""Credentials for the benchmark's callers, obtained the way a client would: log in, create an API key."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from database.accounts import DEV_ADMIN, DEV_USER, DevAccount
from shared.identity import IDENTITY_HEADER, Identity, sign_identity
from shared.settings import DEV_INTERNAL_SECRET


@dataclass(frozen=True)
class Credentials:
    admin_jwt: str
    free_jwt: str
    api_key: str

    def header_for(self, auth: str) -> tuple[str, str] | None:
        if auth == "jwt":
            return "Authorization", f"Bearer {self.admin_jwt}"
        if auth == "jwt_free":
            return "Authorization", f"Bearer {self.free_jwt}"
        if auth == "api_key":
            return "X-API-Key", self.api_key
        if auth == "internal_admin":
            return IDENTITY_HEADER, admin_identity()
        return None


def admin_identity() -> str:
    """A signed admin identity for calling an apiserver directly (valid for five minutes)."""
    return sign_identity(Identity(user_id=1, role="admin", tier="enterprise", method="jwt"), DEV_INTERNAL_SECRET)


async def _login(session: aiohttp.ClientSession, gateway: str, account: DevAccount) -> str:
    async with session.post(f"{gateway}/api/v1/auth/login", json=account.login) as response:
        response.raise_for_status()
        return str((await response.json())["token"])


async def obtain_credentials(gateway: str) -> Credentials:
    async with aiohttp.ClientSession() as session:
        admin = await _login(session, gateway, DEV_ADMIN)
        free = await _login(session, gateway, DEV_USER)
        headers = {"Authorization": f"Bearer {admin}"}
        async with session.post(f"{gateway}/api/v1/keys", json={"name": "bench"}, headers=headers) as response:
            response.raise_for_status()
            key = str((await response.json())["key"])
    return Credentials(admin, free, key)


async def clear_cache(apiserver: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{apiserver}/internal/cache/clear", headers={IDENTITY_HEADER: admin_identity()}) as response,
    ):
        response.raise_for_status()


async def sweep(base_url: str, ids: int, *, workers: int = 32) -> int:
    """Read every id once (bounded by count, not time), so L1 and L2 start warm; returns non-2xx answers."""
    failures = 0
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(first: int) -> None:
            nonlocal failures
            for resource_id in range(first, ids + 1, workers):
                async with session.get(f"{base_url}/api/v1/resources/{resource_id}") as response:
                    await response.read()
                    failures += response.status >= 300

        await asyncio.gather(*(worker(first) for first in range(1, workers + 1)))
    return failures
