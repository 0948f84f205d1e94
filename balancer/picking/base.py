"""What a picker sees of a backend, the picker protocol, and the weighted fairness every picker breaks ties with.

Ties are the trap: with sequential traffic every backend has zero requests in flight, and a picker that breaks
ties toward the first candidate sends *everything* to it. Every picker here breaks ties by stride scheduling::

    each backend has a pass; picking it advances its pass by 1/weight
    among tied candidates the lowest pass wins  →  sequential traffic splits exactly by weight
    a backend that (re)joins starts at the current virtual time, not at 0, so it gets its share
    from now on instead of a catch-up burst of all the traffic it "missed"
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


class Pickable(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def weight(self) -> float: ...

    @property
    def in_flight(self) -> int: ...


P = TypeVar("P", bound=Pickable)


class Picker(Protocol):
    name: str

    def pick(self, candidates: Sequence[P]) -> P:
        """One of ``candidates`` (never empty); the pick is charged to it."""
        ...

    def forget(self, backend_id: str) -> None:
        """Drop what is remembered about a backend that left the pool."""
        ...


class Stride:
    """Weighted fairness by stride scheduling (see the module docstring)."""

    def __init__(self) -> None:
        self._pass: dict[str, float] = {}
        self._virtual = 0.0

    def key(self, backend: Pickable) -> float:
        current = self._pass.get(backend.id, 0.0)
        return current if current > self._virtual else self._virtual

    def charge(self, backend: Pickable) -> None:
        start = self.key(backend)
        self._virtual = start
        self._pass[backend.id] = start + 1.0 / backend.weight

    def forget(self, backend_id: str) -> None:
        self._pass.pop(backend_id, None)


def load(backend: Pickable) -> float:
    """Requests in flight per unit of weight: what the load-aware pickers compare."""
    return backend.in_flight / backend.weight
