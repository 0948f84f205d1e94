"""Remembering verified access tokens, so a client's repeated requests do not pay for JWT decoding each time.

A token string's signature and claims never change, so once a token verified it stays valid until it
expires. Revocation (logout, refresh-family reuse) is not decided here: the rate-limit script checks the
token's ``jti`` against the revocation list in Redis on every request. Only successful verifications are
kept; a bad token is decoded (and refused) every time. The cache is bounded and drops its oldest entries
first; an entry is used only while ``now`` is within the token's expiry (plus the same leeway the decoder
allows).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from gateway.auth.tokens import LEEWAY, AccessClaims


class TokenVerifier(Protocol):
    def verify(self, token: str) -> AccessClaims: ...


class VerifiedTokenCache:
    def __init__(
        self, verifier: TokenVerifier, *, max_entries: int = 10_000, clock: Callable[[], float] = time.time
    ) -> None:
        self._verifier = verifier
        self._max_entries = max_entries
        self._clock = clock
        self._verified: dict[str, AccessClaims] = {}

    def verify(self, token: str) -> AccessClaims:
        claims = self._verified.get(token)
        if claims is not None:
            if self._clock() <= claims.expires_at + LEEWAY:
                return claims
            del self._verified[token]
        claims = self._verifier.verify(token)  # raises InvalidToken; failures are never cached
        if len(self._verified) >= self._max_entries:
            # dicts keep insertion order: drop the oldest verifications first
            del self._verified[next(iter(self._verified))]
        self._verified[token] = claims
        return claims

    def __len__(self) -> int:
        return len(self._verified)
