"""A real gateway → balancer → apiservers stack for fault and attack scenarios, built on ``tests.gateway.stack``.

``start_cluster`` is ``start_stack`` with the knobs fault scenarios need (balancer settings, extra backends
such as a hanging one); :class:`Cluster` adds the operations scenarios perform on it: log in, seed resources,
kill/restart an apiserver or the balancer on the same port, drain and enable a backend through the balancer's
control API, and reset PostgreSQL/Redis state when one stack is shared by a module.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis

from database.seed import seed
from shared.identity import IDENTITY_HEADER, Identity, sign_identity
from shared.settings import DEV_INTERNAL_SECRET
from stack.services.ports import free_port
from tests.gateway.stack import Stack, _start_apiserver
from tests.processes import SuiteProcess, start_process, suite_env

ADMIN_LOGIN = {"email": "admin@example.com", "password": "admin123"}
USER_LOGIN = {"email": "user@example.com", "password": "user123"}
# Rate limits out of the way unless a scenario is about them.
UNLIMITED = {f"RATE_LIMIT_{tier}": "100000000" for tier in ("ANONYMOUS", "FREE", "PRO", "ENTERPRISE")}
_TABLES = "resources, api_keys, refresh_tokens, users"
_OPERATOR = Identity(user_id=1, role="admin", tier="enterprise", method="jwt")


@dataclass
class Cluster:
    tmp: Path
    database_url: str
    redis_url: str
    stack: Stack
    extra_backends: list[SuiteProcess] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return self.stack.gateway

    @property
    def balancer(self) -> SuiteProcess:
        assert self.stack.balancer is not None
        return self.stack.balancer

    @property
    def apiservers(self) -> list[SuiteProcess]:
        return self.stack.apiservers

    def stop(self) -> None:
        self.stack.stop()
        for process in self.extra_backends:
            process.stop()

    # -- sessions and data -----------------------------------------------------------------------------------

    async def login(self, http: aiohttp.ClientSession, account: dict[str, str]) -> dict[str, Any]:
        async with http.post(self.gateway + "/api/v1/auth/login", json=account) as response:
            assert response.status == 200, await response.text()
            session: dict[str, Any] = await response.json()
            return session

    async def bearer(self, http: aiohttp.ClientSession, account: dict[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {(await self.login(http, account))['token']}"}

    async def create(
        self, http: aiohttp.ClientSession, auth: dict[str, str], count: int, *, type_: str = "seed"
    ) -> list[int]:
        async def one(index: int) -> int:
            body = {"name": f"{type_} {index}", "type": type_, "data": {"i": index}}
            async with http.post(self.gateway + "/api/v1/resources", json=body, headers=auth) as response:
                assert response.status == 201, await response.text()
                return int((await response.json())["id"])

        return list(await asyncio.gather(*(one(index) for index in range(count))))

    async def every_apiserver_serves(self, http: aiohttp.ClientSession) -> bool:
        """Through the gateway, every apiserver shows up among the instances that answer."""
        seen: set[str] = set()
        for _ in range(8 * len(self.apiservers)):
            try:
                async with http.get(self.gateway + "/api/v1/status") as response:
                    if response.status == 200:
                        seen.add(str((await response.json())["instanceId"]))
            except aiohttp.ClientError:
                return False
        return len(seen) == len(self.apiservers)

    # -- processes -------------------------------------------------------------------------------------------

    async def lb_status(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(self.balancer.url + "/lb/status") as response:
            assert response.status == 200, await response.text()
            status: dict[str, Any] = await response.json()
            return status

    async def backend(self, http: aiohttp.ClientSession, process: SuiteProcess) -> dict[str, Any]:
        for backend in (await self.lb_status(http))["backends"]:
            if backend["id"] == backend_id(process):
                found: dict[str, Any] = backend
                return found
        raise AssertionError(f"{backend_id(process)} is not in the balancer's pool")

    async def control(self, http: aiohttp.ClientSession, process: SuiteProcess, action: str) -> int:
        """Drain or enable ``process`` through ``POST /lb/backends/{id}/{action}`` as a signed operator."""
        headers = operator_headers()
        url = f"{self.balancer.url}/lb/backends/{backend_id(process)}/{action}"
        query = "?wait=15" if action == "drain" else ""
        async with http.post(url + query, headers=headers) as response:
            await response.read()
            return response.status

    @staticmethod
    async def restart(process: SuiteProcess) -> None:
        """Start a stopped or killed process again on its own port (so the balancer's pool still names it)."""
        await asyncio.to_thread(process.start)


def operator_headers() -> dict[str, str]:
    """The signed admin identity the gateway's admin API would send to internal endpoints."""
    return {IDENTITY_HEADER: sign_identity(_OPERATOR, DEV_INTERNAL_SECRET)}


def backend_id(process: SuiteProcess) -> str:
    return f"127.0.0.1:{process.port}"


def start_cluster(
    tmp: Path,
    database_url: str,
    redis_url: str,
    *,
    apiservers: int = 2,
    gateways: int = 1,
    extra_backends: list[SuiteProcess] | None = None,
    balancer_env: dict[str, str] | None = None,
    apiserver_env: dict[str, str] | None = None,
    **gateway_env: str,
) -> Cluster:
    """Like ``tests.gateway.stack.start_stack`` (same :class:`Stack`), plus balancer settings and extra backends
    listed after the apiservers. The rate limits are lifted unless ``gateway_env`` sets them."""
    stack = Stack()
    extras = list(extra_backends or [])
    try:
        base = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
        stack.apiservers.extend(_start_apiserver(tmp, {**base, **(apiserver_env or {})}) for _ in range(apiservers))
        backends = ",".join(process.url for process in [*stack.apiservers, *extras])
        env = suite_env(
            **base,
            INSTANCE_ID="balancer-1",
            BALANCER_BACKENDS=backends,
            BALANCER_HEALTH_INTERVAL="0.1",
            **(balancer_env or {}),
        )
        stack.balancer = start_process("balancer", free_port(), tmp, env)
        for index in range(gateways):
            env = suite_env(
                **{
                    **base,
                    **UNLIMITED,
                    "INSTANCE_ID": f"gateway-{index + 1}",
                    "BALANCER_URL": stack.balancer.url,
                    **gateway_env,
                }
            )
            stack.gateways.append(start_process("gateway", free_port(), tmp, env))
    except BaseException:
        stack.stop()
        for process in extras:
            process.stop()
        raise
    return Cluster(tmp, database_url, redis_url, stack, extras)


@contextmanager
def running_cluster(tmp: Path, database_url: str, redis_url: str, **options: Any) -> Iterator[Cluster]:
    cluster = start_cluster(tmp, database_url, redis_url, **options)
    try:
        yield cluster
    finally:
        cluster.stop()


def start_test_backend(tmp: Path) -> SuiteProcess:
    """The controllable backend of the balancer tests (``POST /_control?delay=S`` makes it hang)."""
    return start_process("tests.balancer.backend_app", free_port(), tmp, suite_env())


async def reset_state(database_url: str, redis_url: str) -> None:
    """Empty PostgreSQL (back to the two dev accounts) and Redis, as the function-scoped fixtures do, for a
    stack that one module shares."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()
    await seed(database_url, resources=0)
    client = aioredis.from_url(redis_url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
