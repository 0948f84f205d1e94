"""An asyncio circuit breaker: pybreaker's state machine, driven from async code.

pybreaker has no native asyncio, and its ``calling()`` context manager records success *before* the block
runs, so it cannot wrap an ``await``. This adapter keeps pybreaker as the state machine (named states,
counters, listeners) and adds what async callers need::

    permit = breaker.acquire()          # closed: pass | open: BreakerOpen, or half-open once the timeout passed
    try:                                #  half-open: exactly one trial permit; everyone else gets BreakerOpen
        result = await call()
    except Exception as exc:
        breaker.record_failure(permit, exc)      # the outcome is recorded after the await
        raise
    breaker.record_success(permit)

or simply ``async with breaker.guard(): ...``. Time comes from an injectable clock (monotonic seconds), so tests
never sleep: pybreaker's own wall-clock timeout is set so high it never fires, and this class decides when an
open breaker may try again. Each consecutive opening doubles the reset timeout, up to ``max_reset_timeout``.
Transitions are reported to ``on_state_change`` (metrics, logs).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import pybreaker

CLOSED = pybreaker.STATE_CLOSED
OPEN = pybreaker.STATE_OPEN
HALF_OPEN = pybreaker.STATE_HALF_OPEN
STATE_CODES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}
_NEVER = 10.0**12  # pybreaker's own reset timeout: this adapter owns timing

Clock = Callable[[], float]
StateChange = Callable[["AsyncCircuitBreaker", str, str], None]


class BreakerOpen(Exception):
    """The breaker refused the call; ``retry_after`` says when it may let one through."""

    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit breaker {name!r} is open")
        self.name = name
        self.retry_after = retry_after


@dataclass(slots=True)
class Permit:
    trial: bool
    settled: bool = False


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: AsyncCircuitBreaker) -> None:
        self._owner = owner

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self._owner._on_transition(old_state.name if old_state else CLOSED, new_state.name)


def _succeed() -> None:
    return None


def _fail(exc: BaseException) -> None:
    raise exc


class AsyncCircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        max_reset_timeout: float = 300.0,
        clock: Clock = time.monotonic,
        on_state_change: StateChange | None = None,
    ) -> None:
        self.name = name
        self.reset_timeout = reset_timeout
        self.max_reset_timeout = max(max_reset_timeout, reset_timeout)
        self._clock = clock
        self._on_state_change = on_state_change
        self._opened_at: float | None = None
        self._consecutive_opens = 0
        self._trial_in_flight = False
        self.total_opens = 0
        self._cb = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=_NEVER,
            name=name,
            listeners=[_Listener(self)],
            throw_new_error_on_trip=False,
        )

    @property
    def state(self) -> str:
        return str(self._cb.current_state)

    @property
    def failures(self) -> int:
        return int(self._cb.fail_counter)

    @property
    def current_timeout(self) -> float:
        """The reset timeout of the current opening: doubled per consecutive opening, capped."""
        growth = 2 ** max(self._consecutive_opens - 1, 0)
        return float(min(self.reset_timeout * growth, self.max_reset_timeout))

    def retry_after(self) -> float:
        if self.state == CLOSED or self._opened_at is None:
            return 0.0
        return max(self._opened_at + self.current_timeout - self._clock(), 0.0)

    def would_allow(self) -> bool:
        """Whether ``acquire`` would succeed now, without taking a permit (for pickers)."""
        state = self.state
        if state == CLOSED:
            return True
        if state == OPEN:
            return self.retry_after() <= 0
        return not self._trial_in_flight

    def acquire(self) -> Permit:
        state = self.state
        if state == CLOSED:
            return Permit(trial=False)
        if state == OPEN:
            remaining = self.retry_after()
            if remaining > 0:
                raise BreakerOpen(self.name, remaining)
            self._cb.half_open()
        if self._trial_in_flight:
            raise BreakerOpen(self.name, min(self.reset_timeout, 1.0))
        self._trial_in_flight = True
        return Permit(trial=True)

    def record_success(self, permit: Permit) -> None:
        if self._settle(permit):
            self._cb.call(_succeed)

    def record_failure(self, permit: Permit, exc: BaseException | None = None) -> None:
        if self._settle(permit):
            with suppress(BaseException):  # pybreaker re-raises the failure (or CircuitBreakerError) by design
                self._cb.call(_fail, exc or RuntimeError("failure"))

    def release(self, permit: Permit) -> None:
        """Give back a permit without a verdict (the caller was cancelled); frees the half-open trial."""
        self._settle(permit)

    def reset(self) -> None:
        """Operator reset: close now and forget the opening history."""
        self._trial_in_flight = False
        self._consecutive_opens = 0
        self._cb.close()

    def force_open(self) -> None:
        self._cb.open()

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[Permit]:
        permit = self.acquire()
        try:
            yield permit
        except Exception as exc:
            self.record_failure(permit, exc)
            raise
        except BaseException:
            self.release(permit)
            raise
        self.record_success(permit)

    def snapshot(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state,
            "failures": self.failures,
            "fail_max": self._cb.fail_max,
            "reset_timeout": self.current_timeout,
            "retry_after": round(self.retry_after(), 3),
            "total_opens": self.total_opens,
        }

    def _settle(self, permit: Permit) -> bool:
        """Mark the permit used; True when its outcome should move the state machine.

        While open, no outcome counts (those calls began before it opened); while half-open, only the trial's.
        """
        if permit.settled:
            return False
        permit.settled = True
        state = self.state
        if permit.trial:
            self._trial_in_flight = False
        if state == OPEN:
            return False
        return permit.trial or state == CLOSED

    def _on_transition(self, old: str, new: str) -> None:
        if new == OPEN:
            self._opened_at = self._clock()
            self._consecutive_opens += 1
            self.total_opens += 1
        elif new == CLOSED:
            self._opened_at = None
            self._consecutive_opens = 0
        if new != HALF_OPEN:
            self._trial_in_flight = False
        if self._on_state_change is not None:
            self._on_state_change(self, old, new)
