"""Rolling restart of the apiservers under ``scalable-api up``: one at a time, no request lost.

Asked for with SIGHUP to the ``up`` process (``scalable-api restart-apiservers`` sends it, finding the pid in
``<data dir>/up.pid``). For each apiserver in turn::

    POST {balancer}/lb/backends/127.0.0.1:{port}/drain?wait=S   no new requests from here on
    GET  {balancer}/lb/status until its in_flight is 0          (deadline; SIGTERM lets stragglers finish anyway)
    SIGTERM, wait for the exit                                   aiohttp completes requests still in flight
    start it again, GET /ready until 200                         (deadline)
    GET  {balancer}/lb/status until a check passed after ready   the balancer has seen the new process
    POST {balancer}/lb/backends/127.0.0.1:{port}/enable          back in rotation; on to the next one

Control calls carry ``X-Internal-Identity`` signed with ``INTERNAL_SECRET`` for a system admin (user 0), which
is what ``balancer.control`` requires. Without a balancer in the build each apiserver is simply stopped,
started and awaited on ``/ready``. When a step misses its deadline the restart stops there: the apiserver is
enabled again (the balancer's health checks still keep it out until it passes) and the others are left alone,
so a broken build never takes more than one replica out of service.

Why by hand: this is the product's own orchestration over its own control API; it runs inside the synchronous
supervisor loop, so it uses ``urllib`` and polls with deadlines on an injectable clock.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from shared.identity import IDENTITY_HEADER, Identity, sign_identity
from shared.settings import DEV_INTERNAL_SECRET

SYSTEM_ADMIN = Identity(user_id=0, role="admin", tier="enterprise", method="none")
PID_FILE = "up.pid"


class Process(Protocol):
    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...


class Supervised(Protocol):
    """What the restart needs of a supervised child (``stack.supervisor.Child`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def args(self) -> list[str]: ...

    @property
    def env(self) -> dict[str, str]: ...

    @property
    def port(self) -> int: ...

    @property
    def process(self) -> Process | None: ...

    def start(self) -> None: ...

    def stop(self, grace: float = ...) -> None: ...


class RestartFailed(RuntimeError):
    """A step of the rolling restart missed its deadline; the message says which apiserver and step."""


class RestartSignal:
    """The SIGHUP handler: remembers that a restart was asked for (the supervisor loop runs it)."""

    def __init__(self) -> None:
        self.pending = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.pending = True

    def take(self) -> bool:
        pending, self.pending = self.pending, False
        return pending

    def install(self) -> None:
        signal.signal(signal.SIGHUP, self)


@dataclass(frozen=True)
class RollingOptions:
    drain_timeout: float = 30.0
    ready_timeout: float = 30.0
    stop_grace: float = 10.0
    poll_interval: float = 0.05


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any


def http_call(method: str, url: str, headers: dict[str, str], timeout: float) -> Reply:
    """One request over ``urllib``; connection failures are a status 0 reply, not an exception."""
    request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310 - our own loopback URLs
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own loopback URLs
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, OSError):
        return Reply(0, None)
    try:
        return Reply(status, json.loads(raw) if raw else None)
    except ValueError:
        return Reply(status, None)


HttpCall = Callable[[str, str, dict[str, str], float], Reply]


class RollingRestart:
    def __init__(
        self,
        children: Sequence[Supervised],
        *,
        options: RollingOptions | None = None,
        http: HttpCall = http_call,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        say: Callable[[str], None] = print,
    ) -> None:
        self.apiservers = [child for child in children if child.args[:1] == ["apiserver"]]
        balancer = next((child for child in children if child.args[:1] == ["balancer"]), None)
        self.balancer_url = None if balancer is None else f"http://127.0.0.1:{balancer.port}"
        # The balancer verifies with the secret in its own environment.
        self._secret = (balancer.env.get("INTERNAL_SECRET") if balancer else None) or DEV_INTERNAL_SECRET
        self.options = options or RollingOptions()
        self._http = http
        self._clock = clock
        self._sleep = sleep
        self._say = say

    def run(self) -> None:
        """Restart every apiserver in turn; raises :class:`RestartFailed` (and stops) at the first failure."""
        started = self._clock()
        self._say(f"rolling restart of {len(self.apiservers)} apiservers begins")
        for child in self.apiservers:
            self.restart_one(child)
        self._say(f"rolling restart finished in {self._clock() - started:.1f}s")

    def restart_one(self, child: Supervised) -> None:
        backend = f"127.0.0.1:{child.port}"
        balanced = self.balancer_url is not None and self._in_balancer(backend)
        try:
            if balanced:
                self._drain(child, backend)
            old_pid = child.process.pid if child.process is not None else None
            child.stop(self.options.stop_grace)
            child.start()
            ready_at = self._wait_ready(child)
            if balanced:
                self._wait_seen_healthy(child, backend, ready_at)
        finally:
            if balanced:
                self._control(backend, "enable")
        new_pid = child.process.pid if child.process is not None else None
        self._say(f"{child.name} restarted (pid {old_pid} -> {new_pid})")

    def _in_balancer(self, backend: str) -> bool:
        return self._backend_status(backend) is not None

    def _drain(self, child: Supervised, backend: str) -> None:
        reply = self._control(backend, "drain", wait=self.options.drain_timeout)
        if reply.status not in (200, 202):
            raise RestartFailed(f"{child.name}: the balancer refused to drain it (status {reply.status})")
        if not self._poll(
            lambda: (self._backend_status(backend) or {}).get("in_flight") == 0, self.options.drain_timeout
        ):
            self._say(f"{child.name}: still busy after {self.options.drain_timeout}s; SIGTERM lets it finish")

    def _wait_ready(self, child: Supervised) -> float:
        url = f"http://127.0.0.1:{child.port}/ready"

        def ready() -> bool:
            if child.process is not None and child.process.poll() is not None:
                raise RestartFailed(f"{child.name} exited with {child.process.returncode} while starting")
            return self._http("GET", url, {}, 1.0).status == 200

        if not self._poll(ready, self.options.ready_timeout):
            raise RestartFailed(f"{child.name} was not ready within {self.options.ready_timeout}s")
        return self._clock()

    def _wait_seen_healthy(self, child: Supervised, backend: str, ready_at: float) -> None:
        """Until the balancer reports a passing check made after the new process was ready."""

        def seen() -> bool:
            entry = self._backend_status(backend)
            if entry is None or not entry.get("healthy") or entry.get("last_check_error") is not None:
                return False
            ago = entry.get("last_check_ago_s")
            return isinstance(ago, int | float) and self._clock() - ago >= ready_at

        if not self._poll(seen, self.options.ready_timeout):
            raise RestartFailed(
                f"{child.name}: the balancer did not report it healthy within {self.options.ready_timeout}s"
            )

    def _backend_status(self, backend: str) -> dict[str, Any] | None:
        reply = self._http("GET", f"{self.balancer_url}/lb/status", {}, 2.0)
        if reply.status != 200 or not isinstance(reply.body, dict):
            return None
        return next((item for item in reply.body.get("backends", []) if item.get("id") == backend), None)

    def _control(self, backend: str, action: str, *, wait: float | None = None) -> Reply:
        url = f"{self.balancer_url}/lb/backends/{backend}/{action}"
        if wait is not None:
            url += f"?wait={wait:g}"
        headers = {IDENTITY_HEADER: sign_identity(SYSTEM_ADMIN, self._secret)}
        return self._http("POST", url, headers, (wait or 0) + 5.0)

    def _poll(self, condition: Callable[[], bool], within: float) -> bool:
        deadline = self._clock() + within
        while True:
            if condition():
                return True
            if self._clock() >= deadline:
                return False
            self._sleep(self.options.poll_interval)


def write_pid_file(data_dir: str | Path) -> Path:
    """Record this ``up`` process's pid where ``scalable-api restart-apiservers`` looks for it."""
    path = Path(data_dir) / PID_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")
    return path


def remove_pid_file(path: Path) -> None:
    """Remove ``path`` if it still names this process (a newer ``up`` may have replaced it)."""
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass


def signal_up(data_dir: str | Path) -> int:
    """Send SIGHUP to the ``up`` whose pid file is in ``data_dir``; its pid, or ``RestartFailed`` naming why not."""
    path = Path(data_dir) / PID_FILE
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        raise RestartFailed(f"no running `scalable-api up` found ({path} is missing or unreadable)") from None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise RestartFailed(f"`scalable-api up` (pid {pid} in {path}) is not running") from None
    return pid
