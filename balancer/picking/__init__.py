"""Backend picking algorithms: a :class:`~balancer.picking.base.Picker` protocol and one module per algorithm."""

from __future__ import annotations

import random

from balancer.picking.base import Pickable, Picker
from balancer.picking.least_connections import LeastConnections
from balancer.picking.p2c import PowerOfTwoChoices
from balancer.picking.round_robin import RoundRobin

__all__ = ["LeastConnections", "Pickable", "Picker", "PowerOfTwoChoices", "RoundRobin", "make_picker"]


def make_picker(algorithm: str, *, rng: random.Random | None = None) -> Picker:
    if algorithm == "p2c":
        return PowerOfTwoChoices(rng=rng)
    if algorithm == "round_robin":
        return RoundRobin()
    if algorithm == "least_connections":
        return LeastConnections()
    raise ValueError(f"unknown balancing algorithm {algorithm!r}")
