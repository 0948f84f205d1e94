"""The rolling restart's steps and order against fake children and a fake balancer (time is a fake clock).

The real thing under load is ``tests/e2e/test_rolling_restart.py``; this pins the sequence and what happens when
a replica does not come back.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from shared.identity import IDENTITY_HEADER, verify_identity
from shared.settings import DEV_INTERNAL_SECRET
from stack.rolling import Reply, RestartFailed, RollingOptions, RollingRestart

_pids = itertools.count(100)


@dataclass
class FakeProcess:
    pid: int = field(default_factory=lambda: next(_pids))
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class FakeChild:
    name: str
    args: list[str]
    port: int
    events: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: FakeProcess | None = field(default_factory=FakeProcess)

    def start(self) -> None:
        self.events.append(f"start {self.port}")
        self.process = FakeProcess()

    def stop(self, grace: float = 10.0) -> None:
        self.events.append(f"stop {self.port}")


class FakeStack:
    """Answers the balancer and apiserver calls; ``broken`` ports never become ready again."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.now = 0.0
        self.broken: set[int] = set()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def http(self, method: str, url: str, headers: dict[str, str], timeout: float) -> Reply:
        if url.endswith("/ready"):
            port = int(url.split(":")[2].split("/")[0])
            return Reply(503 if port in self.broken else 200, None)
        if url.endswith("/lb/status"):
            backends = [
                {"id": f"127.0.0.1:{port}", "in_flight": 0, "healthy": True, "last_check_ago_s": 0.0} for port in (1, 2)
            ]
            return Reply(200, {"backends": backends})
        assert method == "POST"
        identity = verify_identity(headers.get(IDENTITY_HEADER), DEV_INTERNAL_SECRET)
        assert identity.is_admin, "control calls must carry a signed admin identity"
        action = url.split("/lb/backends/")[1].split("?")[0]
        self.events.append(action)
        return Reply(200, {})


def fixture(events: list[str]) -> tuple[FakeStack, list[FakeChild]]:
    children = [
        FakeChild("apiserver-1", ["apiserver", "--port", "1"], 1, events),
        FakeChild("apiserver-2", ["apiserver", "--port", "2"], 2, events),
        FakeChild("balancer", ["balancer", "--port", "9"], 9, events),
    ]
    return FakeStack(events), children


def rolling(stack: FakeStack, children: list[FakeChild]) -> RollingRestart:
    options = RollingOptions(ready_timeout=5.0, drain_timeout=5.0)
    return RollingRestart(
        children, options=options, http=stack.http, clock=stack.clock, sleep=stack.sleep, say=lambda _: None
    )


def test_each_apiserver_is_drained_restarted_and_enabled_before_the_next() -> None:
    events: list[str] = []
    stack, children = fixture(events)
    old = [child.process.pid for child in children[:2] if child.process]
    rolling(stack, children).run()
    assert events == [
        "127.0.0.1:1/drain",
        "stop 1",
        "start 1",
        "127.0.0.1:1/enable",
        "127.0.0.1:2/drain",
        "stop 2",
        "start 2",
        "127.0.0.1:2/enable",
    ]
    assert all(child.process and child.process.pid not in old for child in children[:2])


def test_a_replica_that_does_not_come_back_stops_the_roll_and_is_re_enabled() -> None:
    events: list[str] = []
    stack, children = fixture(events)
    stack.broken.add(1)
    with pytest.raises(RestartFailed, match=r"apiserver-1 was not ready within 5\.0s"):
        rolling(stack, children).run()
    assert events == ["127.0.0.1:1/drain", "stop 1", "start 1", "127.0.0.1:1/enable"], "apiserver-2 untouched"
