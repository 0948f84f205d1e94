"""A bounded load generator for fault scenarios: aiohttp clients in the test, 127.0.0.1 only.

Every run has a request budget and a deadline, so a wedged system fails a scenario instead of hanging it.
:class:`MixedLoad` builds the usual mix through the gateway (reads by id, list pages, status, idempotent PUTs
carrying an ``Idempotency-Key``, and plain POSTs, the only non-idempotent request) and remembers every write
that was acknowledged, so a scenario can look for it in PostgreSQL afterwards. With ``keyed_posts`` the POSTs
carry a key too: :meth:`MixedLoad.confirm` then resends every unconfirmed one with its key until it is answered.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from tests.resilience.report import Sample


@dataclass(frozen=True, slots=True)
class Call:
    """One request to send: ``name`` groups it in reports; ``idempotent`` says whether a retry is safe."""

    name: str
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    idempotent: bool = True


Picker = Callable[[int], Call]
Observer = Callable[[Call, int, bytes], None]


def loopback_only(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load is only ever sent to loopback, not {host!r}")


def session(*, connections: int = 100, timeout: float = 10.0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, force_close=False),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def send(http: aiohttp.ClientSession, call: Call) -> tuple[Sample, bytes]:
    """Send ``call`` and read the whole answer; a transport failure is status 0."""
    loopback_only(call.url)
    started = time.monotonic()
    try:
        async with http.request(call.method, call.url, headers=call.headers, json=call.json) as response:
            body = await response.read()
            status = response.status
            error = body[:300].decode(errors="replace") if status >= 500 else ""
            retry_after = response.headers.get("Retry-After")
    except (aiohttp.ClientError, TimeoutError) as exc:
        body, status, error, retry_after = b"", 0, type(exc).__name__, None
    sample = Sample(call.name, status, time.monotonic() - started, started, call.idempotent, error, retry_after)
    return sample, body


@dataclass
class LoadRun:
    """``concurrency`` closed-loop workers sending ``pick(n)`` until the budget, the deadline or :meth:`stop`.

    ``pace`` (seconds) spaces each worker's requests so a long fault window does not burn the budget early.
    """

    http: aiohttp.ClientSession
    pick: Picker
    concurrency: int = 8
    budget: int = 20_000
    deadline: float = 60.0
    pace: float = 0.0
    observe: Observer | None = None
    samples: list[Sample] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> LoadRun:
        self._task = asyncio.create_task(self.run())
        return self

    async def run(self) -> None:
        counter = itertools.count()
        ends = time.monotonic() + self.deadline

        async def worker() -> None:
            while not self._stop.is_set() and time.monotonic() < ends:
                number = next(counter)
                if number >= self.budget:
                    return
                call = self.pick(number)
                sample, body = await send(self.http, call)
                self.samples.append(sample)
                if self.observe is not None:
                    self.observe(call, sample.status, body)
                if self.pace:
                    await asyncio.sleep(self.pace)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def stop(self) -> list[Sample]:
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.samples

    async def more(self, count: int, *, within: float = 10.0) -> None:
        """Wait (bounded) until ``count`` more requests have been answered from now on."""
        target = len(self.samples) + count

        async def enough() -> bool:
            return len(self.samples) >= target

        await poll_until(enough, within=within)

    def since(self, moment: float) -> list[Sample]:
        return [sample for sample in self.samples if sample.started >= moment]

    def count(self, predicate: Callable[[Sample], bool]) -> int:
        return sum(1 for sample in self.samples if predicate(sample))


@dataclass
class MixedLoad:
    """The request mix of a read-heavy API, over resources created beforehand.

    Out of every 20 requests: 12 reads by id, 3 list pages, 2 status, 2 idempotent PUTs (own resource,
    ``Idempotency-Key``), 1 POST. Writes are by the user that owns ``own_ids``.
    """

    base: str
    auth: dict[str, str]
    read_ids: Sequence[int]
    own_ids: Sequence[int]
    writes: bool = True
    acknowledged: dict[str, int] = field(default_factory=dict)
    refused: list[tuple[str, int, bytes]] = field(default_factory=list)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    # POSTs with an Idempotency-Key: safe to replay, so retried by the balancer and by confirm().
    keyed_posts: bool = False
    unconfirmed: dict[str, Call] = field(default_factory=dict)

    def pick(self, number: int) -> Call:
        slot = number % 20
        read_id = self.read_ids[number % len(self.read_ids)]
        if slot < 12 or (not self.writes and slot >= 17):
            return Call("read", "GET", f"{self.base}/api/v1/resources/{read_id}", dict(self.auth))
        if slot < 15:
            return Call("list", "GET", f"{self.base}/api/v1/resources?limit=10", dict(self.auth))
        if slot < 17:
            return Call("status", "GET", f"{self.base}/api/v1/status", dict(self.auth))
        if slot < 19:
            own = self.own_ids[number % len(self.own_ids)]
            headers = {**self.auth, "Idempotency-Key": f"{self.tag}-{number}"}
            body = {"name": f"put {number}", "type": "load", "data": {"n": number}}
            return Call("put", "PUT", f"{self.base}/api/v1/resources/{own}", headers, body)
        body = {"name": f"load {self.tag} {number}", "type": "load"}
        url = f"{self.base}/api/v1/resources"
        headers = dict(self.auth)
        if self.keyed_posts:
            headers["Idempotency-Key"] = f"{self.tag}-post-{number}"
        # Even keyed, a POST stays out of failed(idempotent_only=True): the balancer's retry budget may refuse its
        # replay during a fault; its guarantee is that confirm() gets it answered and it is never written twice.
        return Call("post", "POST", url, headers, body, idempotent=False)

    def observe(self, call: Call, status: int, body: bytes) -> None:
        if call.method != "POST":
            return
        name = str(call.json["name"])
        if status == 201:
            self.acknowledged[name] = int(orjson.loads(body)["id"])
            self.unconfirmed.pop(name, None)
        else:
            self.refused.append((name, status, body))
            if self.keyed_posts:
                self.unconfirmed[name] = call

    async def confirm(self, http: aiohttp.ClientSession, *, within: float = 15.0) -> dict[str, int]:
        """Resend each unconfirmed keyed POST with its own key until it is answered 201 (a replay when the first
        attempt had committed); returns the statuses of those still unconfirmed at the deadline."""
        last: dict[str, int] = {}

        async def all_confirmed() -> bool:
            for name, call in list(self.unconfirmed.items()):
                sample, body = await send(http, call)
                last[name] = sample.status
                if sample.status == 201:
                    self.acknowledged[name] = int(orjson.loads(body)["id"])
                    del self.unconfirmed[name]
            return not self.unconfirmed

        await poll_until(all_confirmed, within=within, interval=0.2)
        return {name: last.get(name, 0) for name in self.unconfirmed}


def failed(samples: Sequence[Sample], *, idempotent_only: bool = False) -> list[Sample]:
    """Requests that got no answer or a 5xx."""
    return [s for s in samples if (s.status == 0 or s.status >= 500) and (s.idempotent or not idempotent_only)]


async def poll_until(
    condition: Callable[[], Awaitable[bool]], *, within: float, interval: float = 0.05
) -> float | None:
    """Seconds until ``condition`` held, or None at the deadline (the caller asserts, with its figures saved)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await condition():
            return time.monotonic() - started
        await asyncio.sleep(interval)
    return None
