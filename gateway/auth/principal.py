"""Who is calling: the authenticated identity plus what the rate limiter and logout need to know about it."""

from __future__ import annotations

from dataclasses import dataclass

from shared.identity import ANONYMOUS, Identity

# Redis keys read by the rate-limit script (one round trip) and written by logout / key revocation.
REVOKED_TOKEN_PREFIX = "auth:revoked:jti:"  # noqa: S105 - a Redis key prefix, not a secret
REVOKED_FAMILY_PREFIX = "auth:revoked:fam:"
REVOKED_KEY_PREFIX = "auth:revoked:key:"


@dataclass(frozen=True, slots=True)
class Principal:
    identity: Identity
    client_address: str
    token_id: str | None = None
    family_id: str | None = None
    expires_at: int | None = None
    key_id: int | None = None

    @property
    def limit_key(self) -> str:
        """Users are limited per account whatever credential they use; anonymous callers per client address."""
        if self.identity.user_id is not None:
            return f"user:{self.identity.user_id}"
        return f"ip:{self.client_address}"

    @property
    def revocation_keys(self) -> tuple[str, ...]:
        """Markers that, when present in Redis, make this credential invalid before its expiry."""
        keys: list[str] = []
        if self.token_id is not None:
            keys.append(REVOKED_TOKEN_PREFIX + self.token_id)
        if self.family_id is not None:
            keys.append(REVOKED_FAMILY_PREFIX + self.family_id)
        if self.key_id is not None:
            keys.append(REVOKED_KEY_PREFIX + str(self.key_id))
        return tuple(keys)


def anonymous(client_address: str) -> Principal:
    return Principal(identity=ANONYMOUS, client_address=client_address)
