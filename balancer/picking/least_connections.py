"""Least connections: the fewest requests in flight per unit of weight; ties broken by stride fairness."""

from __future__ import annotations

from collections.abc import Sequence

from balancer.picking.base import P, Stride, load


class LeastConnections:
    name = "least_connections"

    def __init__(self) -> None:
        self._stride = Stride()

    def pick(self, candidates: Sequence[P]) -> P:
        key = self._stride.key
        chosen = min(candidates, key=lambda backend: (load(backend), key(backend)))
        self._stride.charge(chosen)
        return chosen

    def forget(self, backend_id: str) -> None:
        self._stride.forget(backend_id)
