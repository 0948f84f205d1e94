"""Writing the revocation markers the rate-limit script reads (``auth:revoked:*``), each expiring when the
credential it blocks would have expired anyway, so the set never grows beyond the live tokens."""

from __future__ import annotations

import time

from gateway.auth.principal import FAMILY, TOKEN, revocation_marker, user_limit_key
from shared.keys import RedisClient


async def revoke_access_tokens(
    redis: RedisClient,
    *,
    user_id: int,
    token_id: str | None = None,
    token_expires_at: int | None = None,
    family_id: str | None = None,
    access_ttl: int,
) -> None:
    """Block one access token until it expires, and/or every access token of a refresh family (none outlives
    ``access_ttl`` from now)."""
    owner = user_limit_key(user_id)
    pipe = redis.pipeline(transaction=False)
    if token_id is not None:
        remaining = access_ttl if token_expires_at is None else int(token_expires_at - time.time()) + 1
        pipe.set(revocation_marker(owner, TOKEN, token_id), b"1", ex=max(remaining, 1))
    if family_id is not None:
        pipe.set(revocation_marker(owner, FAMILY, family_id), b"1", ex=access_ttl + 5)
    await pipe.execute()
