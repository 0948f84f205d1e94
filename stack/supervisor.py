"""``scalable-api up``: the whole stack on one machine, for development and demos.

Order of start: PostgreSQL and Redis (embedded unless ``DATABASE_URL`` / ``REDIS_URL`` are set) → migrations →
development seed (once) → apiserver replicas on consecutive ports → balancer → gateway, each with ``--workers``
worker processes (default 1; more make each child a worker parent, see :mod:`shared.workers`). A child that dies is
restarted with a growing back-off. SIGINT/SIGTERM stops the children first (SIGTERM, then SIGKILL after a grace
period) and the embedded servers last. SIGHUP (or ``scalable-api restart-apiservers``, via ``<data dir>/up.pid``)
restarts the apiservers one by one behind the balancer without failing a request (:mod:`stack.rolling`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from stack.rolling import (
    RestartFailed,
    RestartSignal,
    RollingRestart,
    http_call,
    remove_pid_file,
    write_pid_file,
)

STOP_GRACE = 10.0
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class StackOptions:
    apiservers: int = 3
    apiserver_port: int = 3001
    balancer_port: int = 3000
    gateway_port: int = 8080
    data_dir: str = ".data"
    resources: int = 1000
    pg_port: int = 54329
    redis_port: int = 63790
    workers: str = "1"  # per tier (WORKERS: a number or auto); 1 means no worker parent at all


@dataclass
class Child:
    name: str
    args: list[str]
    env: dict[str, str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    log_path: Path | None = None  # None: the child writes to our stdout
    cpus: str | None = None  # pinned to these CPUs (``taskset -c``, which execs: the pid is the child's own)

    def start(self) -> None:
        command = [*(["taskset", "-c", self.cpus] if self.cpus else []), sys.executable, "-m", *self.args]
        if self.log_path is None:
            self.process = subprocess.Popen(command, env=self.env)
            return
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self, grace: float = STOP_GRACE) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _say(message: str) -> None:
    print(f"[scalable-api up] {message}", flush=True)


def wait_healthy(children: list[Child], timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for child in children:
        url = f"http://127.0.0.1:{child.port}/health"
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} did not become healthy on port {child.port}")
            time.sleep(0.1)


def wait_serving(children: list[Child], timeout: float = READY_TIMEOUT) -> None:
    """Return once a request through the gateway has reached every apiserver started; else name the ones that
    were never reached. The balancer's own view is polled first (free), so the requests through the gateway,
    which count against the caller's anonymous rate limit, are few: one or two per apiserver."""
    apiservers = {child.name for child in children if child.name.startswith("apiserver")}
    balancer = next(child for child in children if child.name == "balancer")
    gateway = next(child for child in children if child.name == "gateway")
    deadline = time.monotonic() + timeout
    reached: set[str] = set()
    while time.monotonic() < deadline:
        status = http_call("GET", f"http://127.0.0.1:{balancer.port}/lb/status", {}, timeout=2).body
        backends = status.get("backends", []) if isinstance(status, dict) else []
        if sum(1 for backend in backends if backend.get("in_rotation")) >= len(apiservers):
            for _ in range(2 * len(apiservers)):
                answer = http_call("GET", f"http://127.0.0.1:{gateway.port}/api/v1/status", {}, timeout=2).body
                instance = str(answer.get("instanceId", "")) if isinstance(answer, dict) else ""
                reached.update(name for name in apiservers if instance == name or instance.startswith(name + "-w"))
                if reached == apiservers:
                    return
        time.sleep(0.1)
    missing = ", ".join(sorted(apiservers - reached))
    raise RuntimeError(f"not serving through the gateway after {timeout:g} s: {missing}")


def start_data_services(options: StackOptions, stack: ExitStack) -> tuple[str, str]:
    from stack.services.postgres import EmbeddedPostgres
    from stack.services.redis import EmbeddedRedis

    data_dir = Path(options.data_dir).resolve()
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if not database_url:
        postgres = stack.enter_context(EmbeddedPostgres(data_dir / "postgres", options.pg_port))
        database_url = postgres.url
        _say(f"PostgreSQL (embedded)  {database_url}   data in {data_dir / 'postgres'}")
    else:
        _say("PostgreSQL             DATABASE_URL from the environment")
    if not redis_url:
        redis = stack.enter_context(EmbeddedRedis(data_dir / "redis", options.redis_port))
        redis_url = redis.url
        _say(f"Redis (embedded)       {redis_url}")
    else:
        _say("Redis                  REDIS_URL from the environment")
    return database_url, redis_url


def prepare_database(database_url: str, resources: int) -> None:
    from database.accounts import DEV_ACCOUNTS
    from database.migrate import run_migrations
    from database.seed import seed

    applied = asyncio.run(run_migrations(database_url))
    _say(f"migrations applied: {', '.join(applied) if applied else 'none needed'}")
    result = asyncio.run(seed(database_url, resources=resources, only_if_empty=True))
    _say(f"seed: {result.users_created} users and {result.resources_created} resources created")
    for account in DEV_ACCOUNTS:
        _say(f"  development login: {account.email} / {account.password} ({account.role}, {account.tier})")


def plan_children(options: StackOptions, database_url: str, redis_url: str) -> list[Child]:
    # WORKERS is always set: an operator's WORKERS in the shell does not multiply the local stack unasked.
    base = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "WORKERS": options.workers}
    ports = [options.apiserver_port + index for index in range(options.apiservers)]
    children = [
        Child(
            f"apiserver-{port}",
            ["apiserver", "--port", str(port)],
            {**base, "INSTANCE_ID": f"apiserver-{port}"},
            port,
        )
        for port in ports
    ]
    backends = ",".join(f"http://127.0.0.1:{port}" for port in ports)
    balancer_env = {**base, "INSTANCE_ID": "balancer-1", "BALANCER_BACKENDS": backends}
    gateway_env = {**base, "INSTANCE_ID": "gateway-1", "BALANCER_URL": f"http://127.0.0.1:{options.balancer_port}"}
    return [
        *children,
        Child("balancer", ["balancer", "--port", str(options.balancer_port)], balancer_env, options.balancer_port),
        Child("gateway", ["gateway", "--port", str(options.gateway_port)], gateway_env, options.gateway_port),
    ]


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _supervise(children: list[Child], restart: RestartSignal | None = None) -> None:
    """Restart children that exit, with back-off (1 s doubling to 30 s), and roll the apiservers on SIGHUP."""
    while True:
        if restart is not None and restart.take():
            try:
                RollingRestart(children, say=_say).run()
            except RestartFailed as exc:
                _say(f"rolling restart stopped: {exc}")
        now = time.monotonic()
        for child in children:
            process = child.process
            if process is not None and process.poll() is not None:
                child.restarts += 1
                delay = min(2 ** (child.restarts - 1), 30)
                _say(f"{child.name} exited with {process.returncode}; restarting in {delay}s")
                child.process = None
                child.next_start = now + delay
            if child.process is None and now >= child.next_start:
                child.start()
        time.sleep(0.2)


def run_stack(options: StackOptions) -> int:
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    restart = RestartSignal()
    restart.install()
    children: list[Child] = []
    with ExitStack() as stack:
        stack.callback(remove_pid_file, write_pid_file(options.data_dir))
        try:
            database_url, redis_url = start_data_services(options, stack)
            prepare_database(database_url, options.resources)
            children = plan_children(options, database_url, redis_url)
            for child in children:
                child.start()
            wait_healthy(children)
            wait_serving(children)
            for child in children:
                _say(f"{child.name:<16} http://127.0.0.1:{child.port}")
            _say("ready. Ctrl-C stops everything; SIGHUP (scalable-api restart-apiservers) rolls the apiservers.")
            _supervise(children, restart)
        except _Stop:
            _say("stopping")
        finally:
            for child in reversed(children):
                child.stop()
    return 0
