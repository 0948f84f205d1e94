"""Weighted round robin: the lowest stride pass wins, so picks rotate in exact proportion to the weights."""

from __future__ import annotations

from collections.abc import Sequence

from balancer.picking.base import P, Stride


class RoundRobin:
    name = "round_robin"

    def __init__(self) -> None:
        self._stride = Stride()

    def pick(self, candidates: Sequence[P]) -> P:
        chosen = min(candidates, key=self._stride.key)
        self._stride.charge(chosen)
        return chosen

    def forget(self, backend_id: str) -> None:
        self._stride.forget(backend_id)
