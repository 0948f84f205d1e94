"""Power of two choices: sample two distinct backends (by weight), send to the less loaded one.

Comparing two random backends instead of scanning all of them avoids the herd that least-connections causes
when many balancers share one stale view, while still steering away from a slow backend (its in-flight count
grows). When the two sampled carry the same load (sequential traffic: nothing in flight anywhere), the pick is the
lowest stride pass among *every* candidate carrying that load, not just the two: sequential requests then go round
every backend in turn from the first one, where comparing only the sampled pair would repeat one now and then.
The scan happens only on a tie and never picks a more loaded backend than the pair would have.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from balancer.picking.base import P, Stride, load


class PowerOfTwoChoices:
    name = "p2c"

    def __init__(self, *, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._stride = Stride()

    def pick(self, candidates: Sequence[P]) -> P:
        if len(candidates) == 1:
            chosen = candidates[0]
        else:
            first, second = self._sample_two(candidates)
            key = self._stride.key
            level = load(first)
            if level == load(second):
                chosen = min((c for c in candidates if load(c) == level), key=key)
            else:
                chosen = first if level < load(second) else second
        self._stride.charge(chosen)
        return chosen

    def forget(self, backend_id: str) -> None:
        self._stride.forget(backend_id)

    def _sample_two(self, candidates: Sequence[P]) -> tuple[P, P]:
        rng = self._rng
        weights = [backend.weight for backend in candidates]
        if min(weights) == max(weights):
            first, second = rng.sample(range(len(candidates)), 2)
            return candidates[first], candidates[second]
        first = rng.choices(range(len(candidates)), weights)[0]
        rest = [index for index in range(len(candidates)) if index != first]
        second = rng.choices(rest, [weights[index] for index in rest])[0]
        return candidates[first], candidates[second]
