"""The other workers of this balancer: an operator's drain or enable reaches all of them.

With several workers (:mod:`shared.workers`) each has its own pool, health checks and breakers, like separate
replicas, but ``POST /lb/backends/{id}/drain|enable`` (and ``/lb/breakers/{id}/reset``) reaches one worker at
random. That worker applies it, relays the same request to each sibling over the sibling's Unix socket in the
parent's runtime directory, and answers for all of them::

    POST /lb/backends/B/drain?wait=S ──► worker i: B leaves rotation here ─┬─ wait until B is idle here (≤ S)
                                                                            └─ the same POST to every worker j ≠ i
                                                                               over <run>/balancer-w<j>.sock (j
                                                                               drains and waits likewise)
                                     ◄── 200 "drained" once B is idle on every worker that answered, else 202;
                                         "in_flight" is the sum over them; "workers": {"count", "answered"}

A request that arrived over a Unix socket is a relay (no TCP client can send one): it is applied where it
arrived and relayed no further. The receiving worker also records the drained set in ``<run>/balancer-drained
.json`` (under a file lock); a worker reads it when it starts, so one restarted after a crash comes back with
the operator's drains applied. A sibling that does not answer (restarting) is counted out of ``answered``.
``GET /lb/status`` stays per worker and names the worker that answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web

from shared.settings import CommonSettings
from shared.workers import worker_sockets

RECORD_NAME = "balancer-drained.json"
FORWARDED_HEADERS = ("X-Internal-Identity", "X-Request-ID", "traceparent")
_log = structlog.get_logger("balancer.siblings")


@dataclass(frozen=True, slots=True)
class Answer:
    """A sibling's reply to a relayed request: its status and JSON body."""

    status: int
    body: Mapping[str, Any]


class Siblings:
    def __init__(self, sockets: tuple[Path, ...] = (), record: Path | None = None, *, count: int = 1) -> None:
        self.sockets = sockets
        self.count = count
        self._record = record
        self.drained: set[str] = set()  # the recorded drains, as this worker last read or wrote them

    @classmethod
    def of(cls, common: CommonSettings) -> Siblings:
        """This worker's siblings, or none at all when it is the only process of the balancer."""
        _, sockets = worker_sockets(common, "balancer")
        if common.runtime_dir is None or not sockets:
            return cls()
        return cls(sockets, Path(common.runtime_dir) / RECORD_NAME, count=common.workers)

    @staticmethod
    def is_relay(request: web.Request) -> bool:
        transport = request.transport
        return transport is not None and isinstance(transport.get_extra_info("sockname"), str)

    async def relay(self, request: web.Request, *, within: float) -> list[Answer | None]:
        """The request, again, to every sibling at once: each answer, or None where a sibling did not answer
        within ``within`` seconds."""
        if self.is_relay(request) or not self.sockets:
            return []
        headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
        target = request.rel_url.path_qs
        asks = (self._ask(socket, request.method, target, headers, within) for socket in self.sockets)
        return list(await asyncio.gather(*asks))

    async def _ask(
        self, socket: Path, method: str, target: str, headers: Mapping[str, str], within: float
    ) -> Answer | None:
        try:
            async with (
                aiohttp.ClientSession(
                    connector=aiohttp.UnixConnector(path=str(socket)), timeout=aiohttp.ClientTimeout(total=within)
                ) as session,
                session.request(method, "http://balancer" + target, headers=headers) as response,
            ):
                body = orjson.loads(await response.read() or b"{}")
                return Answer(response.status, body if isinstance(body, dict) else {})
        except (aiohttp.ClientError, OSError, TimeoutError, orjson.JSONDecodeError) as exc:
            _log.warning("sibling_unreachable", socket=socket.name, error=type(exc).__name__)
            return None

    def load(self) -> None:
        """Read the recorded drains (at start: a restarted worker takes up its siblings' drains)."""
        if self._record is not None:
            self.drained = _read(self._record)

    def remember(self, request: web.Request, backend_id: str, *, draining: bool) -> None:
        """Note a drain or an enable; the worker that received it from the operator also records it for workers
        that start later."""
        if draining:
            self.drained.add(backend_id)
        else:
            self.drained.discard(backend_id)
        if self._record is None or self.is_relay(request):
            return
        with _locked(self._record.with_suffix(".lock")):
            drained = _read(self._record)
            if draining:
                drained.add(backend_id)
            else:
                drained.discard(backend_id)
            partial = self._record.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(orjson.dumps(sorted(drained)))
            partial.replace(self._record)
        self.drained = drained


def _read(record: Path) -> set[str]:
    try:
        items = orjson.loads(record.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return set()
    return {item for item in items if isinstance(item, str)} if isinstance(items, list) else set()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
