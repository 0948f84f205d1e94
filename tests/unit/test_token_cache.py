"""The verified-token cache: a verified token is not decoded again until it expires; failures never stick."""

from __future__ import annotations

import pytest

from gateway.auth.token_cache import VerifiedTokenCache
from gateway.auth.tokens import LEEWAY, AccessClaims, InvalidToken
from tests.support.clock import ManualClock


class CountingVerifier:
    def __init__(self) -> None:
        self.calls = 0

    def verify(self, token: str) -> AccessClaims:
        self.calls += 1
        if token.startswith("bad"):
            raise InvalidToken("signature")
        return AccessClaims(user_id=1, role="user", tier="free", token_id=token, family_id=None, expires_at=1000)


def test_a_verified_token_is_not_decoded_again() -> None:
    verifier, clock = CountingVerifier(), ManualClock(900.0)
    cache = VerifiedTokenCache(verifier, clock=clock)
    assert cache.verify("token-a").token_id == "token-a"
    assert cache.verify("token-a").token_id == "token-a"
    assert verifier.calls == 1


def test_an_expired_entry_is_verified_again() -> None:
    verifier, clock = CountingVerifier(), ManualClock(900.0)
    cache = VerifiedTokenCache(verifier, clock=clock)
    cache.verify("token-a")
    clock.advance_to(1000 + LEEWAY + 1)
    cache.verify("token-a")
    assert verifier.calls == 2


def test_failures_are_never_cached() -> None:
    verifier = CountingVerifier()
    cache = VerifiedTokenCache(verifier, clock=ManualClock(900.0))
    for _ in range(3):
        with pytest.raises(InvalidToken):
            cache.verify("bad-token")
    assert verifier.calls == 3
    assert len(cache) == 0


def test_bounded_oldest_first() -> None:
    verifier = CountingVerifier()
    cache = VerifiedTokenCache(verifier, max_entries=2, clock=ManualClock(900.0))
    for token in ("t1", "t2", "t3"):
        cache.verify(token)
    assert len(cache) == 2
    cache.verify("t1")
    assert verifier.calls == 4
