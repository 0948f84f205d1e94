"""Start real apiserver, balancer and gateway processes for the end-to-end tests."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from stack.services.ports import free_port
from tests.processes import SuiteProcess, start_process, suite_env


def has_balancer() -> bool:
    return importlib.util.find_spec("balancer.__main__") is not None


@dataclass
class Stack:
    apiservers: list[SuiteProcess] = field(default_factory=list)
    balancer: SuiteProcess | None = None
    gateways: list[SuiteProcess] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return self.gateways[0].url

    def stop(self) -> None:
        for process in [*self.gateways, *([self.balancer] if self.balancer else []), *self.apiservers]:
            process.stop()


def _start_apiserver(tmp: Path, base: dict[str, str]) -> SuiteProcess:
    port = free_port()
    env = suite_env(**base, INSTANCE_ID=f"apiserver-{port}", HEARTBEAT_INTERVAL="0.2")
    return start_process("apiserver", port, tmp, env)


def start_stack(
    tmp: Path,
    database_url: str,
    redis_url: str,
    *,
    apiservers: int = 2,
    gateways: int = 1,
    gateway_redis_url: str | None = None,
    **gateway_env: str,
) -> Stack:
    """Apiservers, then the balancer in front of them (when this build has one; else the gateway talks to the
    first apiserver directly, the balancer being just another hop), then the gateways."""
    stack = Stack()
    try:
        base = {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
        stack.apiservers.extend(_start_apiserver(tmp, base) for _ in range(apiservers))
        upstream = stack.apiservers[0].url
        if has_balancer():
            backends = ",".join(process.url for process in stack.apiservers)
            env = suite_env(
                **base, INSTANCE_ID="balancer-1", BALANCER_BACKENDS=backends, BALANCER_HEALTH_INTERVAL="0.1"
            )
            stack.balancer = start_process("balancer", free_port(), tmp, env)
            upstream = stack.balancer.url
        for index in range(gateways):
            env = suite_env(
                **base,
                INSTANCE_ID=f"gateway-{index + 1}",
                BALANCER_URL=upstream,
                APISERVER_URLS="" if has_balancer() else ",".join(p.url for p in stack.apiservers),
                **gateway_env,
            )
            if gateway_redis_url is not None:
                env["REDIS_URL"] = gateway_redis_url
            stack.gateways.append(start_process("gateway", free_port(), tmp, env))
    except BaseException:
        stack.stop()
        raise
    return stack
