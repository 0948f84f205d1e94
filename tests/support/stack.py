"""A real gateway → balancer → apiservers stack (suite processes on free ports) and what scenarios do on it.

    start_stack():  apiservers ─► the balancer in front of them (plus any extra backends, such as the balancer
                    tests' controllable one) ─► gateways pointed at the balancer
    Stack:          log in, seed resources, read and drive the balancer's pool (drain/enable as a signed
                    operator), restart a killed process on its own port, stop everything

The gateway, end-to-end, browser, resilience and security suites all run on it. Rate limits are the gateway's
defaults unless the caller lifts them (``rate_limits=UNLIMITED``) or sets them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from shared.identity import IDENTITY_HEADER, Identity, sign_identity
from shared.settings import DEV_INTERNAL_SECRET
from stack.services.ports import free_port
from tests.support.processes import SuiteProcess, start_process, suite_env

__all__ = ["UNLIMITED", "Stack", "backend_id", "operator_headers", "running_stack", "start_stack"]

# Rate limits out of the way unless a scenario is about them.
UNLIMITED = {f"RATE_LIMIT_{tier}": "100000000" for tier in ("ANONYMOUS", "FREE", "PRO", "ENTERPRISE")}
_OPERATOR = Identity(user_id=1, role="admin", tier="enterprise", method="jwt")


@dataclass
class Stack:
    tmp: Path
    database_url: str
    redis_url: str
    apiservers: list[SuiteProcess]
    balancer: SuiteProcess
    gateways: list[SuiteProcess]
    extra_backends: list[SuiteProcess] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return self.gateways[0].url

    def stop(self) -> None:
        for process in [*self.gateways, self.balancer, *self.apiservers, *self.extra_backends]:
            process.stop()

    # -- sessions and data -----------------------------------------------------------------------------------

    async def login(self, http: aiohttp.ClientSession, login: Mapping[str, str]) -> dict[str, Any]:
        """``login`` is the body of ``POST /api/v1/auth/login`` (``DEV_USER.login``, ...)."""
        async with http.post(self.gateway + "/api/v1/auth/login", json=dict(login)) as response:
            assert response.status == 200, await response.text()
            session: dict[str, Any] = await response.json()
            return session

    async def bearer(self, http: aiohttp.ClientSession, login: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {(await self.login(http, login))['token']}"}

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
        url = f"{self.balancer.url}/lb/backends/{backend_id(process)}/{action}"
        query = "?wait=15" if action == "drain" else ""
        async with http.post(url + query, headers=operator_headers()) as response:
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


def start_stack(
    tmp: Path,
    database_url: str,
    redis_url: str,
    *,
    apiservers: int = 2,
    gateways: int = 1,
    extra_backends: list[SuiteProcess] | None = None,
    balancer_env: Mapping[str, str] | None = None,
    apiserver_env: Mapping[str, str] | None = None,
    rate_limits: Mapping[str, str] | None = None,
    **gateway_env: str,
) -> Stack:
    """Start the stack; ``extra_backends`` (already running) are listed after the apiservers in the balancer's
    pool and stopped with the stack. ``rate_limits`` (``UNLIMITED`` lifts them) go to the gateways, and
    ``gateway_env`` overrides any gateway setting, those and ``REDIS_URL`` included."""
    extras = list(extra_backends or [])
    started: list[SuiteProcess] = []
    base = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    try:
        for _ in range(apiservers):
            port = free_port()
            env = {**base, "INSTANCE_ID": f"apiserver-{port}", "HEARTBEAT_INTERVAL": "0.2", **(apiserver_env or {})}
            started.append(start_process("apiserver", port, tmp, suite_env(**env)))
        backends = ",".join(process.url for process in [*started, *extras])
        env = {**base, "INSTANCE_ID": "balancer-1", "BALANCER_BACKENDS": backends, "BALANCER_HEALTH_INTERVAL": "0.1"}
        balancer = start_process("balancer", free_port(), tmp, suite_env(**{**env, **(balancer_env or {})}))
        started.append(balancer)
        for index in range(gateways):
            env = {**base, "INSTANCE_ID": f"gateway-{index + 1}", "BALANCER_URL": balancer.url, "APISERVER_URLS": ""}
            env.update({**(rate_limits or {}), **gateway_env})
            started.append(start_process("gateway", free_port(), tmp, suite_env(**env)))
    except BaseException:
        for process in [*reversed(started), *extras]:
            process.stop()
        raise
    apiserver_processes, gateway_processes = started[:apiservers], started[apiservers + 1 :]
    return Stack(tmp, database_url, redis_url, apiserver_processes, balancer, gateway_processes, extras)


@contextmanager
def running_stack(tmp: Path, database_url: str, redis_url: str, **options: Any) -> Iterator[Stack]:
    """``start_stack`` for a ``with`` block: the stack is stopped when the block ends, however it ends."""
    stack = start_stack(tmp, database_url, redis_url, **options)
    try:
        yield stack
    finally:
        stack.stop()
