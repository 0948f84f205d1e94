"""Access tokens: short-lived JWTs, signed and verified with PyJWT under one pinned algorithm.

Verification accepts only the configured algorithm (so ``alg: none`` and HS/RS confusion fail), requires every
claim the gateway relies on (``iss``, ``aud``, ``exp``, ``iat``, ``jti``, ``sub``, ``role``, ``tier``), checks
issuer and audience, and then checks the custom claims' values (``role`` and ``tier`` against the account
vocabulary of :mod:`shared.identity`); any failure is :class:`InvalidToken` (401).
``fid`` names the refresh family the token was issued from, so logout (or a detected refresh-token reuse)
can revoke every access token of that login at once.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.settings import JwtSettings
from shared.identity import ACCOUNT_ROLES, ACCOUNT_TIERS, AccountRole, AccountTier, one_of

_REQUIRED = ["iss", "aud", "exp", "iat", "jti", "sub", "role", "tier"]
LEEWAY = 5.0


class InvalidToken(Exception):
    """The token is malformed, forged, expired or lacks a claim; the message says which, for logs only."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    role: AccountRole
    tier: AccountTier
    token_id: str
    family_id: str | None
    expires_at: int


class AccessTokens:
    def __init__(self, settings: JwtSettings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock

    @property
    def ttl(self) -> int:
        return self._settings.access_ttl

    def now(self) -> float:
        return self._clock()

    def issue(
        self, *, user_id: int, role: AccountRole, tier: AccountTier, family_id: str | None
    ) -> tuple[str, AccessClaims]:
        now = int(self._clock())
        claims = AccessClaims(
            user_id=user_id,
            role=role,
            tier=tier,
            token_id=secrets.token_urlsafe(16),
            family_id=family_id,
            expires_at=now + self._settings.access_ttl,
        )
        payload: dict[str, Any] = {
            "iss": self._settings.issuer,
            "aud": self._settings.audience,
            "sub": str(user_id),
            "iat": now,
            "nbf": now,
            "exp": claims.expires_at,
            "jti": claims.token_id,
            "role": role,
            "tier": tier,
        }
        if family_id is not None:
            payload["fid"] = family_id
        token = jwt.encode(payload, self._settings.signing_key, algorithm=self._settings.algorithm)
        return token, claims

    def verify(self, token: str) -> AccessClaims:
        settings = self._settings
        try:
            payload = jwt.decode(
                token,
                settings.verifying_key,
                algorithms=[settings.algorithm],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=LEEWAY,
                options={"require": _REQUIRED, "verify_signature": True},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from None
        return _claims(payload)


def _claims(payload: dict[str, Any]) -> AccessClaims:
    sub, role, tier, jti = payload["sub"], payload["role"], payload["tier"], payload["jti"]
    family = payload.get("fid")
    if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and len(sub) < 19):
        raise InvalidToken("sub is not a user id")
    if not (one_of(role, ACCOUNT_ROLES) and one_of(tier, ACCOUNT_TIERS)):
        raise InvalidToken("unknown role or tier")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 64:
        raise InvalidToken("bad jti")
    if family is not None and (not isinstance(family, str) or len(family) > 64):
        raise InvalidToken("bad fid")
    return AccessClaims(
        user_id=int(sub),
        role=role,
        tier=tier,
        token_id=jti,
        family_id=family,
        expires_at=int(payload["exp"]),
    )
