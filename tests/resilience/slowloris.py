"""A slowloris attacker in a process of its own, for ``tests/resilience/test_slow_clients.py``.

It opens ``connections`` connections from one address (127.0.0.2) to 127.0.0.1:``port`` at a steady rate over
``seconds`` (at most :data:`OPENERS` connects in flight), sends half a request head on each, then a header line on
every open one each :data:`TRICKLE_EVERY` seconds, never finishing a head; it notes when each connection opened and
when the server closed it, waits (bounded) for the last close and reports as JSON on stdout. A process of its own
at the lowest CPU priority (SCHED_IDLE), so that its work neither sits in the event loop that times the normal
clients nor takes the CPU from the stack it attacks (in life the attacker's CPU is another machine's).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

__all__ = ["ATTACKER", "HALF_HEAD", "Attack", "Attacker"]

ATTACKER = "127.0.0.2"  # one client address, not the normal clients' 127.0.0.1
HALF_HEAD = b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
TRICKLE_EVERY = 0.5
OPENERS = 256  # connects in flight at once
REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    """``python -m tests.resilience.slowloris '{"port": P, "connections": N, "seconds": S, "header_timeout": T}'``:
    one line ``ready F`` when the attack starts (F: its open-file limit), then one JSON object: per connection, when
    it opened (seconds from the start) and how long the server kept it open."""
    options = json.loads(sys.argv[1])
    connections = int(options["connections"])
    # In life the attacker's CPU is another machine's; here it shares the cores of the stack it attacks, and the
    # normal clients' latency should not measure that: it runs only when a core would otherwise be idle.
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        os.nice(19)
    open_files = _raise_open_files(connections)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(f"ready {open_files}", flush=True)
    port, seconds, header_timeout = int(options["port"]), float(options["seconds"]), float(options["header_timeout"])
    result = asyncio.run(_attack(port, connections, seconds, header_timeout))
    print(json.dumps(result), flush=True)


def _raise_open_files(connections: int) -> int:
    """Raise this process's open-file limit so that it could hold every connection at once (root with
    CAP_SYS_RESOURCE may raise the hard limit), and return it. A gateway that caps holds a few hundred of them, so
    the attacker needs far fewer: the headroom only makes a gateway that does not cap fail on its own limit rather
    than on the attacker's. Where the limit cannot be raised that far, the attack still opens every connection;
    stderr says so."""
    wanted = connections + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((wanted, max(hard, wanted)), (hard, hard)):
        if soft >= wanted:
            break
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < wanted:
        print(f"attacker: open-file limit {soft}, not {wanted}: enough only while the gateway caps", file=sys.stderr)
    return soft


class _Slow(asyncio.Protocol):
    """One slow connection: half a head on arrival, then whatever the trickler adds; when it opened and closed."""

    def __init__(
        self, index: int, times: list[list[float]], live: dict[int, asyncio.WriteTransport], gone: asyncio.Event
    ) -> None:
        self.index, self.times, self.live, self.gone = index, times, live, gone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.times[self.index][0] = time.monotonic()
        stream = cast(asyncio.WriteTransport, transport)  # uvloop's transports do not subclass asyncio's
        self.live[self.index] = stream
        stream.write(HALF_HEAD)

    def connection_lost(self, exc: Exception | None) -> None:
        self.times[self.index][1] = time.monotonic()
        self.live.pop(self.index, None)
        if not self.live:
            self.gone.set()


async def _attack(port: int, connections: int, seconds: float, header_timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    times = [[0.0, 0.0] for _ in range(connections)]
    live: dict[int, asyncio.WriteTransport] = {}
    errors: list[str] = []
    gone = asyncio.Event()  # set whenever the last live connection closes
    started = time.monotonic()

    async def opener(first: int) -> None:
        for index in range(first, connections, OPENERS):
            await asyncio.sleep(max(0.0, started + index * seconds / connections - time.monotonic()))
            try:
                factory = functools.partial(_Slow, index, times, live, gone)
                await loop.create_connection(factory, "127.0.0.1", port, local_addr=(ATTACKER, 0))
            except OSError as exc:
                errors.append(type(exc).__name__)

    async def trickle() -> None:
        for line in itertools.count():
            await asyncio.sleep(TRICKLE_EVERY)
            for transport in list(live.values()):
                transport.write(b"X-Slow-%d: a\r\n" % line)

    trickler = asyncio.create_task(trickle())
    await asyncio.gather(*(opener(first) for first in range(OPENERS)))
    opened = time.monotonic() - started
    gone.clear()
    if live:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone.wait(), header_timeout + 3)
    trickler.cancel()
    for transport in list(live.values()):
        transport.abort()
    return {"times": [[a - started, b - a if b else None] for a, b in times if a], "errors": errors, "opened": opened}


@dataclass
class Attack:
    """What the attacker saw: per connection, when it opened and how long it lived (None: still open at its end)."""

    header_timeout: float
    opened_at: list[float]
    lifetimes: list[float | None]
    errors: list[str]
    open_files: int
    seconds: float  # from the first connection to the last one opened

    @property
    def held(self) -> int:
        """Connections the gateway admitted: those it did not close on arrival."""
        return sum(1 for life in self.lifetimes if life is not None and life > self.header_timeout / 2)

    @property
    def unclosed(self) -> int:
        return sum(1 for life in self.lifetimes if life is None)

    @property
    def longest(self) -> float:
        return max((life for life in self.lifetimes if life is not None), default=0.0)


class Attacker:
    """The attacker's process, started by :meth:`start` (once it has begun): :meth:`result` waits for its end."""

    def __init__(self, process: asyncio.subprocess.Process, open_files: int, header_timeout: float) -> None:
        self.process, self.open_files, self.header_timeout = process, open_files, header_timeout

    @classmethod
    async def start(cls, port: int, *, connections: int, seconds: float, header_timeout: float) -> Attacker:
        options = {"port": port, "connections": connections, "seconds": seconds, "header_timeout": header_timeout}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", __name__, json.dumps(options), cwd=REPO, stdout=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None
        ready = await asyncio.wait_for(process.stdout.readline(), 30)
        assert ready.startswith(b"ready "), ready
        return cls(process, int(ready.split()[1]), header_timeout)

    async def result(self, within: float) -> Attack:
        assert self.process.stdout is not None
        output = await asyncio.wait_for(self.process.stdout.read(), within)
        assert await self.process.wait() == 0
        result = json.loads(output)
        opened_at = [float(start) for start, _ in result["times"]]
        lifetimes = [None if life is None else float(life) for _, life in result["times"]]
        errors = list(result["errors"])
        return Attack(self.header_timeout, opened_at, lifetimes, errors, self.open_files, float(result["opened"]))


if __name__ == "__main__":
    main()
