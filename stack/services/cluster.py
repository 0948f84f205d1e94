"""An embedded Redis Cluster for the Cluster tests: N masters, each with its replicas, on loopback.

Every node is an :class:`EmbeddedRedis` started with ``--cluster-enabled yes`` and its own nodes file. The cluster
is formed the way ``redis-cli --cluster create`` does it, but over plain commands so no CLI binary is needed::

    start every node ─► CLUSTER MEET each node to the first ─► CLUSTER ADDSLOTSRANGE: 16384 slots split evenly
    over the masters ─► wait until every node knows every other ─► CLUSTER REPLICATE <master id> on each replica
    ─► wait until every node reports cluster_state:ok and every replica is linked to its master

A short ``cluster-node-timeout`` lets a replica take over within seconds when a test kills its master.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from stack.services.ports import free_port
from stack.services.process import EmbeddedServerError
from stack.services.redis import EmbeddedRedis

__all__ = ["SLOTS", "EmbeddedCluster"]

SLOTS = 16384
_POLL = 0.05


class EmbeddedCluster:
    """``masters`` masters with ``replicas`` replicas each; :attr:`url` is a ``redis+cluster://`` URL."""

    def __init__(self, data_dir: Path, *, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000) -> None:
        if masters < 3:
            raise ValueError("a Redis Cluster needs at least 3 masters to fail over")
        self.data_dir = Path(data_dir).absolute()
        self.node_timeout_ms = node_timeout_ms
        self.masters: list[EmbeddedRedis] = [self._node(f"master-{index}") for index in range(masters)]
        self.replicas: list[EmbeddedRedis] = [
            self._node(f"replica-{index}-{copy}") for index in range(masters) for copy in range(replicas)
        ]
        self._replicas_per_master = replicas
        self._stack = ExitStack()

    @property
    def nodes(self) -> list[EmbeddedRedis]:
        return [*self.masters, *self.replicas]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{node.host}:{node.port}" for node in self.masters)

    def start(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            self._stack.enter_context(node)
        first = self.masters[0]
        for node in self.nodes[1:]:
            self._call(node, "CLUSTER", "MEET", first.host, first.port)
        share = SLOTS // len(self.masters)
        for index, master in enumerate(self.masters):
            last = SLOTS - 1 if index == len(self.masters) - 1 else (index + 1) * share - 1
            self._call(master, "CLUSTER", "ADDSLOTSRANGE", index * share, last)
        self._wait(deadline, "every node to know every other", self._everyone_met)
        for index, master in enumerate(self.masters):
            master_id = str(self._call(master, "CLUSTER", "MYID"))
            first_replica = index * self._replicas_per_master
            for replica in self.replicas[first_replica : first_replica + self._replicas_per_master]:
                self._call(replica, "CLUSTER", "REPLICATE", master_id)
        self._wait(deadline, "cluster_state:ok with every replica in sync", self._healthy)

    def stop(self) -> None:
        self._stack.close()

    def kill(self, node: EmbeddedRedis) -> None:
        """SIGKILL one node, as a crash would."""
        node.kill()

    def restart_killed(self, timeout: float = 30) -> None:
        """Start every killed node again (with its nodes file it rejoins, as a replica of whoever took over) and
        wait until the cluster is healthy."""
        for node in self.nodes:
            if not node.is_running():
                node.start()
        self.wait_until_healthy(timeout)

    def primary_of_slot(self, slot: int) -> EmbeddedRedis:
        """The node currently serving ``slot`` as master, asked of any live node."""
        for node in self.nodes:
            if not node.is_running():
                continue
            ranges = self._call(node, "CLUSTER", "SLOTS")
            assert isinstance(ranges, list)
            for start, end, primary, *_ in ranges:
                if start <= slot <= end:
                    port = int(primary[1])
                    return next(candidate for candidate in self.nodes if candidate.port == port)
        raise EmbeddedServerError(f"no live node serves slot {slot}")

    def wait_until_healthy(self, timeout: float = 30) -> None:
        self._wait(time.monotonic() + timeout, "cluster_state:ok", self._healthy)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _node(self, name: str) -> EmbeddedRedis:
        port = free_port()
        # The cluster bus listens on port + 10000: pick again until that one is free too (rarely needed).
        while port + 10000 > 65535:
            port = free_port()
        return EmbeddedRedis(
            self.data_dir / name,
            port,
            extra_args=[
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.data_dir / name / "nodes.conf"),
                "--cluster-node-timeout", str(self.node_timeout_ms),
                "--cluster-replica-validity-factor", "0",  # a replica may always take over in these tests
            ],
        )  # fmt: skip

    @staticmethod
    def _call(node: EmbeddedRedis, *args: str | int) -> Any:
        with redis.Redis(host=node.host, port=node.port, socket_timeout=2, decode_responses=True) as client:
            return client.execute_command(*args)

    def _everyone_met(self) -> bool:
        expected = len(self.nodes)
        for node in self.nodes:
            known = str(self._call(node, "CLUSTER", "NODES")).strip().splitlines()
            if len(known) != expected or any("handshake" in line for line in known):
                return False
        return True

    def _healthy(self) -> bool:
        for node in self.nodes:
            if not node.is_running():
                continue
            info = str(self._call(node, "CLUSTER", "INFO"))
            if "cluster_state:ok" not in info:
                return False
        for replica in self.replicas:
            if replica.is_running():
                role = self._call(replica, "ROLE")
                if isinstance(role, list) and role[0] == "slave" and role[3] != "connected":
                    return False
        return True

    @staticmethod
    def _wait(deadline: float, what: str, done: Callable[[], bool]) -> None:
        while time.monotonic() < deadline:
            try:
                if done():
                    return
            except redis.RedisError:
                pass  # a node still settling
            time.sleep(_POLL)
        raise EmbeddedServerError(f"the cluster did not reach {what} in time")
