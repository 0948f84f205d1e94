"""Who is calling: the authenticated identity plus what the rate limiter and logout need to know about it.

Redis keys of one caller share a hash tag, the caller's limit key in braces (``{user:42}``, ``{ip:203.0.113.9}``):
the limiter's buckets ``rl:{user:42}`` and every revocation marker the same decision reads,
``auth:revoked:{user:42}:jti:<token id>``, ``…:fam:<refresh family>``, ``…:key:<API key id>``. One script call then
touches one Redis Cluster slot, as the cluster requires of a multi-key script.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.identity import ANONYMOUS, Identity

REVOKED_PREFIX = "auth:revoked:"
# The kinds of revocation marker read by the rate-limit script (one round trip) and written by logout / key revocation.
TOKEN, FAMILY, API_KEY = "jti", "fam", "key"


def user_limit_key(user_id: int) -> str:
    return f"user:{user_id}"


def hash_tag(limit_key: str) -> str:
    """The Redis Cluster hash tag every key of this caller carries."""
    return "{" + limit_key + "}"


def revocation_marker(limit_key: str, kind: str, value: str | int) -> str:
    """The Redis key that, while it exists, revokes one credential (``kind``: TOKEN, FAMILY or API_KEY)."""
    return f"{REVOKED_PREFIX}{hash_tag(limit_key)}:{kind}:{value}"


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
            return user_limit_key(self.identity.user_id)
        return f"ip:{self.client_address}"

    @property
    def revocation_keys(self) -> tuple[str, ...]:
        """Markers that, when present in Redis, make this credential invalid before its expiry."""
        owner = self.limit_key
        keys: list[str] = []
        if self.token_id is not None:
            keys.append(revocation_marker(owner, TOKEN, self.token_id))
        if self.family_id is not None:
            keys.append(revocation_marker(owner, FAMILY, self.family_id))
        if self.key_id is not None:
            keys.append(revocation_marker(owner, API_KEY, self.key_id))
        return tuple(keys)


def anonymous(client_address: str) -> Principal:
    return Principal(identity=ANONYMOUS, client_address=client_address)
