"""An embedded Redis Sentinel, for the failover tests: it watches a primary and promotes a replica when the
primary stops answering.

Sentinel rewrites its configuration file as it learns the topology, so each one gets its own file in its
data directory. The same binary serves (``redis-server``/``valkey-server --sentinel``).
"""

from __future__ import annotations

from pathlib import Path

from stack.services.redis import EmbeddedRedis, find_redis_server


class EmbeddedSentinel(EmbeddedRedis):
    _name = "Redis Sentinel"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        service: str,
        primary_host: str,
        primary_port: int,
        down_after_ms: int = 1000,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(data_dir, port, host=host)
        self.service = service
        self.primary = (primary_host, primary_port)
        self.down_after_ms = down_after_ms

    @property
    def config_path(self) -> Path:
        return self.data_dir / "sentinel.conf"

    def start(self, timeout: float = 30) -> None:
        if self.is_running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            host, port = self.primary
            self.config_path.write_text(
                f"port {self.port}\n"
                f"bind {self.host}\n"
                f"dir {self.data_dir}\n"
                f"logfile {self.log_path}\n"
                f"sentinel monitor {self.service} {host} {port} 1\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} 5000\n"
                f"sentinel parallel-syncs {self.service} 1\n"
            )
        args = [str(find_redis_server()), str(self.config_path), "--sentinel"]
        with self.log_path.open("ab") as log:
            self._spawn(args, log, cwd=str(self.data_dir))
        self._wait_ready(timeout, self._answers_ping)
