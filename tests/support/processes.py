"""Start real processes from tests (``python -m <module>``), wait for them, stop or kill them.

A process runs with the environment the caller builds (``suite_env``: the test's own, minus pytest's settings,
plus overrides) and writes its output to a log file, so a failing test can show what the process said.
:class:`ChildProcess` is any such child (``stack.cli up`` in the rolling-restart test); :class:`SuiteProcess`
is one that serves HTTP on ``--port`` and answers ``/health``, which ``wait_healthy`` polls with a deadline.
Ports come from ``stack.services.ports.free_port``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from stack.services.ports import free_port

__all__ = ["ChildProcess", "SuiteProcess", "start_process", "start_test_backend", "suite_env"]

_OUTPUT_TAIL = 4000


def suite_env(**overrides: str) -> dict[str, str]:
    """The parent's environment without settings that would leak into the child, plus ``overrides``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "COV_"))}
    env.setdefault("LOG_LEVEL", "warning")
    env.update(overrides)
    return env


class ChildProcess:
    """One child of a test: ``python -m <module> <args>``, its output appended to ``log_path``."""

    def __init__(self, module: str, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.module = module
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.module} was never started"
        return self.process.pid

    def spawn(self) -> None:
        """Start the process (again, after a stop or kill) without waiting for anything."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self, tail: int | None = _OUTPUT_TAIL) -> str:
        """What the process wrote so far: the last ``tail`` characters, or all of it with ``tail=None``."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text if tail is None else text[-tail:]

    def stop(self, timeout: float = 15.0, *, before_kill: Callable[[], None] | None = None) -> None:
        """SIGTERM, then SIGKILL if the process has not exited within ``timeout`` (after ``before_kill``, which
        can still see the process's own children)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                if before_kill is not None:
                    before_kill()
                self.process.kill()
                self.process.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up (fault tests)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class SuiteProcess(ChildProcess):
    """A process serving HTTP on 127.0.0.1:``port`` (``--port`` is passed), healthy when ``/health`` says 200."""

    def __init__(
        self, package: str, port: int, env: Mapping[str, str], log_path: Path, *, args: Sequence[str] = ()
    ) -> None:
        super().__init__(package, ["--port", str(port), *args], env, log_path)
        self.package = package
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> SuiteProcess:
        self.spawn()
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0, path: str = "/health") -> None:
        """Poll ``path`` until it answers 200; fail with the process's output if it exits or the deadline passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.package} exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=1) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.package} on port {self.port} not healthy after {timeout}s:\n{self.output()}")


def start_process(
    package: str, port: int, tmp_dir: Path, env: Mapping[str, str], *, args: Sequence[str] = ()
) -> SuiteProcess:
    """Start ``package`` on ``port``, logging to ``tmp_dir/<package>-<port>.log``, and wait until it is healthy."""
    return SuiteProcess(package, port, env, tmp_dir / f"{package}-{port}.log", args=args).start()


def start_test_backend(tmp_dir: Path) -> SuiteProcess:
    """The controllable backend of the balancer tests (``POST /_control?delay=S`` makes it hang)."""
    return start_process("tests.balancer.backend_app", free_port(), tmp_dir, suite_env())
