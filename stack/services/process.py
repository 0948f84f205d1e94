"""The child-process bookkeeping every embedded server shares (PostgreSQL, Redis, Sentinel).

Each launcher is synchronous and owns exactly one child process (the postmaster / the redis server), so a
supervisor or a pytest fixture can start it, kill it for fault tests and always reap it. Launchers start the
server binary directly instead of `pg_ctl start` because a daemonised server is a process nobody waits for.
Servers run in their own session (`start_new_session=True`) so a Ctrl-C aimed at the supervisor does not reach
them before the supervisor shuts them down in order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

__all__ = ["EmbeddedServerError", "RunAs", "ServerProcess", "popen_kwargs", "tail"]

_POLL_INTERVAL = 0.05


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be found, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class RunAs:
    """The unprivileged OS account PostgreSQL runs as when we are root."""

    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        # extra_groups=[] drops root's supplementary groups, which Popen would otherwise keep.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def popen_kwargs(run_as: RunAs | None) -> dict[str, Any]:
    return run_as.popen_kwargs() if run_as else {}


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ServerProcess:
    """One child server process in its own session: start/stop/kill/restart bookkeeping shared by both
    servers."""

    _stop_signal = signal.SIGTERM
    _name = "server"

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def start(self, timeout: float = 30) -> None:
        raise NotImplementedError

    def is_running(self) -> bool:
        """Tell whether our child process is alive (it may still be starting up)."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.is_running() and self._process else None

    def stop(self, timeout: float = 30) -> None:
        """Ask the server to shut down cleanly; SIGKILL its process group if it has not exited in time."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(self._stop_signal)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group(process)
        self._process = None

    def kill(self) -> None:
        """SIGKILL the server and every process it started, as a crash would; for fault tests."""
        if self._process is not None:
            self._kill_group(self._process)
            self._process = None

    def restart(self, timeout: float = 60) -> None:
        """Stop (cleanly, if still running) and start again on the same port and data."""
        self.stop()
        self.start(timeout)

    def _kill_group(self, process: subprocess.Popen[bytes]) -> None:
        # Only while the leader is unreaped: its zombie keeps the pid (and so the group id) from being reused.
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def _spawn(self, args: list[str], log: IO[bytes], **kwargs: Any) -> None:
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **kwargs,
        )

    def _wait_ready(self, timeout: float, is_ready: Callable[[], bool]) -> None:
        """Poll `is_ready()` until true; on exit or timeout, kill what we started and raise with the log
        tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                self.kill()
                raise EmbeddedServerError(f"{self._name} exited during start-up:\n{tail(self.log_path)}")
            if is_ready():
                return
            time.sleep(_POLL_INTERVAL)
        self.kill()
        raise EmbeddedServerError(f"{self._name} not ready after {timeout}s:\n{tail(self.log_path)}")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
