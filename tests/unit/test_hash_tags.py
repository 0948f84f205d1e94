"""Every multi-key script call of the gateway touches one Redis Cluster slot: a rate-limit decision's buckets and
the revocation markers it reads share the caller's hash tag, and the writers name the markers the reader reads."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from gateway.auth.principal import API_KEY, FAMILY, TOKEN, Principal, anonymous, revocation_marker, user_limit_key
from gateway.ratelimit.redis import bucket_key
from shared.identity import Identity


def _script_keys(principal: Principal) -> list[str]:
    """The keys RedisRateLimiter passes to the script for this caller."""
    return [bucket_key(principal.limit_key), *principal.revocation_keys]


def _user(user_id: int, **credential: str | int) -> Principal:
    identity = Identity(user_id=user_id, role="user", tier="free", method="jwt")
    return Principal(identity=identity, client_address="203.0.113.9", **credential)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "principal",
    [
        anonymous("203.0.113.9"),
        anonymous("2001:db8::1"),
        _user(42, token_id="3f1c", family_id="a0b1-c2d3", expires_at=1_900_000_000),
        _user(7, key_id=12),
        _user(987654321, token_id="t", family_id="f", key_id=3),
    ],
    ids=["anonymous-v4", "anonymous-v6", "jwt", "api-key", "all-markers"],
)
def test_a_decision_touches_one_slot(principal: Principal) -> None:
    keys = _script_keys(principal)
    assert len({key_slot(key.encode()) for key in keys}) == 1, keys


def test_different_callers_spread_over_slots() -> None:
    slots = {key_slot(_script_keys(_user(user_id))[0].encode()) for user_id in range(1, 200)}
    assert len(slots) > 150  # the tag is the caller, not a constant: the fleet's keys spread over the cluster


def test_writers_name_the_markers_the_script_reads() -> None:
    principal = _user(42, token_id="jti-1", family_id="fam-1", key_id=5)
    owner = user_limit_key(42)
    written = {
        revocation_marker(owner, TOKEN, "jti-1"),
        revocation_marker(owner, FAMILY, "fam-1"),
        revocation_marker(owner, API_KEY, 5),
    }
    assert set(principal.revocation_keys) == written
    assert all(key.startswith("auth:revoked:{user:42}:") for key in written)
