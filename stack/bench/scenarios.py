"""The benchmark scenarios: which tier is hit, as whom, with which id distribution and write share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Target = Literal["apiserver", "balancer", "gateway"]
Auth = Literal["none", "jwt", "api_key", "internal_admin", "jwt_free"]
Prepare = Literal["none", "clear_cache"]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    target: Target
    auth: Auth = "none"
    exponent: float = 1.0  # Zipf exponent; 0 means uniform ids
    write_percent: int = 0
    prepare: Prepare = "none"
    expect_status_errors: bool = False  # the 429 scenario: non-2xx answers are the point


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("direct", "cached GET, Zipf ids, apiserver direct", "apiserver"),
    Scenario("balancer", "cached GET, Zipf ids, through the balancer", "balancer"),
    Scenario("chain_anonymous", "cached GET, Zipf ids, gateway → balancer → apiserver, anonymous", "gateway"),
    Scenario("chain_jwt", "cached GET, Zipf ids, full chain with a JWT", "gateway", auth="jwt"),
    Scenario("chain_api_key", "cached GET, Zipf ids, full chain with an API key", "gateway", auth="api_key"),
    Scenario(
        "mixed_95_5", "95 % cached GET / 5 % PATCH, full chain with a JWT", "gateway", auth="jwt", write_percent=5,
    ),
    Scenario(
        "rate_limited", "a free-tier caller far past its limit: the 429 path", "gateway", auth="jwt_free",
        expect_status_errors=True,
    ),
    # Last: it clears the cache, which would otherwise cool every scenario after it.
    Scenario(
        "cache_miss", "uniform ids over the whole table after a cache clear, apiserver direct", "apiserver",
        exponent=0.0, prepare="clear_cache",
    ),
)  # fmt: skip


def select(names: tuple[str, ...] | None) -> list[Scenario]:
    """The scenarios asked for, in their run order (all by default)."""
    return [scenario for scenario in SCENARIOS if names is None or scenario.name in names]
