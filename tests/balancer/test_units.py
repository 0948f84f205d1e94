"""Unit tests: picking, the retry budget, health rise/fall, client addresses. No sockets."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from dataclasses import dataclass

import pytest

from balancer.backend import HealthState
from balancer.picking import LeastConnections, PowerOfTwoChoices, RoundRobin, make_picker
from balancer.picking.base import Picker
from balancer.retry import RetryBudget
from balancer.settings import BalancerSettings
from shared.netaddr import append_forwarded_for, client_address
from shared.settings import SettingsError


@dataclass
class Node:
    id: str
    weight: float = 1.0
    in_flight: int = 0


ALGORITHMS = ["p2c", "round_robin", "least_connections"]


def spread(picker: Picker, nodes: list[Node], picks: int) -> Counter[str]:
    return Counter(picker.pick(nodes).id for _ in range(picks))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_sequential_traffic_spreads_evenly(algorithm: str) -> None:
    nodes = [Node("a"), Node("b"), Node("c")]
    result = spread(make_picker(algorithm, rng=random.Random(7)), nodes, 300)
    assert all(90 <= result[node.id] <= 110 for node in nodes), result


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_weights_split_sequential_traffic_proportionally(algorithm: str) -> None:
    nodes = [Node("a", weight=3), Node("b", weight=1)]
    result = spread(make_picker(algorithm, rng=random.Random(7)), nodes, 400)
    assert 280 <= result["a"] <= 320, result


@pytest.mark.parametrize("picker", [PowerOfTwoChoices(rng=random.Random(1)), LeastConnections()])
def test_load_aware_pickers_avoid_the_busy_backend(picker: Picker) -> None:
    nodes = [Node("a", in_flight=10), Node("b"), Node("c")]
    assert "a" not in spread(picker, nodes, 100)


@pytest.mark.parametrize("seed", range(5))
def test_p2c_sends_sequential_requests_round_every_backend_from_the_first(seed: int) -> None:
    nodes = [Node("a"), Node("b"), Node("c")]
    picker = PowerOfTwoChoices(rng=random.Random(seed))
    picks = [picker.pick(nodes).id for _ in range(12)]
    for start in range(0, 12, 3):
        assert sorted(picks[start : start + 3]) == ["a", "b", "c"], picks


def test_round_robin_rotates() -> None:
    nodes = [Node("a"), Node("b"), Node("c")]
    picker = RoundRobin()
    assert [picker.pick(nodes).id for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_rejoining_backend_gets_its_share_not_a_burst(algorithm: str) -> None:
    picker = make_picker(algorithm, rng=random.Random(3))
    a, b, c = Node("a"), Node("b"), Node("c")
    spread(picker, [a, b], 200)
    result = spread(picker, [a, b, c], 30)
    assert result["c"] <= 12, result


def test_retry_budget_caps_retries_to_a_fraction_of_requests_in_flight() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrency=1)
    for _ in range(20):
        budget.request_started()
    assert [budget.try_acquire() for _ in range(5)] == [True, True, True, True, False]
    budget.release()
    assert budget.try_acquire()
    assert budget.refused == 1


def test_retry_budget_floor_lets_a_lone_client_retry() -> None:
    budget = RetryBudget(ratio=0.2, min_concurrency=3)
    budget.request_started()
    assert budget.try_acquire()


def is_up(health: HealthState) -> bool:
    return health.up


def test_health_rise_and_fall() -> None:
    health = HealthState(rise=2, fall=3)
    assert is_up(health)
    assert not health.record(True, 1.0)
    assert not health.record(False, 2.0, "timeout")
    assert not health.record(False, 4.0, "timeout")
    assert health.record(False, 6.0, "timeout")
    assert not is_up(health)
    assert health.last_error == "timeout"
    assert health.last_check == 6.0
    assert not health.record(True, 8.0)
    assert not is_up(health)
    assert health.record(True, 10.0)
    assert is_up(health)


def test_first_failed_check_takes_a_backend_down_at_once() -> None:
    health = HealthState(rise=2, fall=3)
    assert health.record(False, 1.0, "connect")
    assert not is_up(health)


def test_a_backend_failing_only_while_starting_is_in_rotation_at_its_first_pass() -> None:
    health = HealthState(rise=2, fall=3)
    assert not health.passed
    assert health.record(False, 1.0, "connect", starting=True)  # not listening yet: out of rotation, quietly
    assert not health.record(False, 1.1, "connect", starting=True)
    assert health.record(True, 1.2)  # no ``rise`` wait: it was never seen down
    assert (is_up(health), health.passed) == (True, True)


def test_a_backend_seen_down_needs_rise_passes_again() -> None:
    health = HealthState(rise=2, fall=3)
    assert health.record(False, 1.0, "connect")  # failed outside its start-up grace
    assert not health.record(True, 2.0)
    assert health.record(True, 3.0)
    for now in (4.0, 5.0, 6.0):
        health.record(False, now, "timeout")
    assert not is_up(health)
    assert not health.record(True, 7.0)  # rise applies again
    assert health.record(True, 8.0)


TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.2", "1.2.3.4", "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4, 10.0.0.1", "1.2.3.4"),  # forged left part never read
        ("10.0.0.2", "10.0.0.7, 10.0.0.1", "10.0.0.7"),  # all trusted: the left-most
        ("10.0.0.2", "garbage, 1.2.3.4", "1.2.3.4"),
        ("10.0.0.2", "1.2.3.4, garbage", "10.0.0.2"),
        ("::1", "[2001:db8::1]:443", "2001:db8::1"),
        ("10.0.0.2", None, "10.0.0.2"),
    ],
)
def test_client_address(peer: str, forwarded: str | None, expected: str) -> None:
    assert client_address(peer, forwarded, TRUSTED) == expected


def test_append_forwarded_for() -> None:
    assert append_forwarded_for(None, "10.0.0.1") == "10.0.0.1"
    assert append_forwarded_for("1.2.3.4", "10.0.0.1") == "1.2.3.4, 10.0.0.1"


def test_settings_parse_weights_and_refuse_garbage() -> None:
    settings = BalancerSettings.from_env({"BALANCER_BACKENDS": "http://a:1;weight=2, http://b:2"})
    assert [(spec.id, spec.weight) for spec in settings.backends] == [("a:1", 2.0), ("b:2", 1.0)]
    with pytest.raises(SettingsError, match="BALANCER_BACKENDS"):
        BalancerSettings.from_env({"BALANCER_BACKENDS": "ftp://a"})
    with pytest.raises(SettingsError, match="BALANCER_ALGORITHM"):
        BalancerSettings.from_env({"BALANCER_BACKENDS": "http://a:1", "BALANCER_ALGORITHM": "random"})
