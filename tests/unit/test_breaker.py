"""The async circuit breaker: open, half-open with exactly one trial, close — driven by an injected clock."""

from __future__ import annotations

import pytest

from shared.breaker import CLOSED, HALF_OPEN, OPEN, AsyncCircuitBreaker, BreakerOpen
from tests.support.clock import ManualClock


def make(clock: ManualClock, transitions: list[tuple[str, str]] | None = None) -> AsyncCircuitBreaker:
    def record(_: AsyncCircuitBreaker, old: str, new: str) -> None:
        if transitions is not None:
            transitions.append((old, new))

    return AsyncCircuitBreaker(
        "dep", fail_max=3, reset_timeout=10.0, max_reset_timeout=40.0, clock=clock, on_state_change=record
    )


def fail(breaker: AsyncCircuitBreaker) -> None:
    breaker.record_failure(breaker.acquire(), RuntimeError("boom"))


def test_opens_after_consecutive_failures_and_refuses_fast() -> None:
    clock = ManualClock()
    transitions: list[tuple[str, str]] = []
    breaker = make(clock, transitions)
    fail(breaker)
    fail(breaker)
    breaker.record_success(breaker.acquire())  # a success resets the consecutive count
    fail(breaker)
    fail(breaker)
    assert breaker.state == CLOSED
    fail(breaker)
    assert breaker.state == OPEN
    assert transitions == [(CLOSED, OPEN)]
    with pytest.raises(BreakerOpen) as refused:
        breaker.acquire()
    assert refused.value.retry_after == pytest.approx(10.0)


def test_half_open_lets_exactly_one_trial_through_and_success_closes() -> None:
    clock = ManualClock()
    transitions: list[tuple[str, str]] = []
    breaker = make(clock, transitions)
    for _ in range(3):
        fail(breaker)
    clock.advance(10.0)
    trial = breaker.acquire()
    assert breaker.state == HALF_OPEN
    for _ in range(5):
        with pytest.raises(BreakerOpen):
            breaker.acquire()
    breaker.record_success(trial)
    assert breaker.state == CLOSED
    assert transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    breaker.record_success(breaker.acquire())
    assert breaker.failures == 0


def test_failed_trial_reopens_with_a_doubled_capped_timeout() -> None:
    clock = ManualClock()
    breaker = make(clock)
    for _ in range(3):
        fail(breaker)
    timeouts = []
    for _ in range(4):
        timeouts.append(breaker.current_timeout)
        clock.advance(breaker.current_timeout)
        fail(breaker)  # the single trial fails
        assert breaker.state == OPEN
    assert timeouts == [10.0, 20.0, 40.0, 40.0]
    with pytest.raises(BreakerOpen):
        breaker.acquire()


def test_outcomes_of_calls_started_before_opening_do_not_count() -> None:
    clock = ManualClock()
    breaker = make(clock)
    early = breaker.acquire()
    for _ in range(3):
        fail(breaker)
    breaker.record_success(early)  # began while closed, ended while open: ignored
    assert breaker.state == OPEN


def test_cancelled_trial_frees_the_slot() -> None:
    clock = ManualClock()
    breaker = make(clock)
    for _ in range(3):
        fail(breaker)
    clock.advance(10.0)
    trial = breaker.acquire()
    breaker.release(trial)
    assert breaker.state == HALF_OPEN
    second = breaker.acquire()
    assert second.trial
    breaker.record_success(second)
    assert breaker.state == CLOSED


async def test_guard_records_the_outcome_after_the_await() -> None:
    clock = ManualClock()
    breaker = make(clock)
    for _ in range(3):
        with pytest.raises(ValueError, match="x"):
            async with breaker.guard():
                raise ValueError("x")
    assert breaker.state == OPEN
    clock.advance(10.0)
    async with breaker.guard() as permit:
        assert permit.trial
        assert breaker.state == HALF_OPEN
    assert breaker.state == CLOSED


def test_operator_reset_closes_and_forgets_history() -> None:
    clock = ManualClock()
    breaker = make(clock)
    for _ in range(3):
        fail(breaker)
    breaker.reset()
    assert breaker.state == CLOSED
    assert breaker.current_timeout == 10.0
    assert breaker.snapshot()["total_opens"] == 1
