"""Who may do what: the one place the "401 or 403" rule is written, for all three processes.

Each process finds out who is calling its own way and hands the resulting :class:`~shared.identity.Identity`
here: the gateway from the credential it authenticated (its ``Principal``), the apiserver and the balancer from
the HMAC-signed internal identity header (:func:`~shared.identity.verify_identity`), so a client that reaches
them directly is anonymous. Then::

    no identity            -> 401 problem (with a ``Bearer`` challenge where the caller can sign in)
    signed in, not admin   -> 403 problem            (require_admin only)
    otherwise              -> the identity, for the handler to act as

The wording has defaults that fit the public API; the balancer, whose callers are operators' tools holding a
signed header rather than bearer-token clients, passes its own and no challenge.
"""

from __future__ import annotations

from shared.errors import Problem
from shared.identity import Identity

SIGN_IN = "Sign in or send an API key to do this."
ADMINS_ONLY = "Only admins may do this."


def require_user(identity: Identity, *, detail: str = SIGN_IN, challenge: str | None = "Bearer") -> Identity:
    """``identity`` if it is signed in, else a 401 problem."""
    if not identity.authenticated:
        headers = None if challenge is None else {"WWW-Authenticate": challenge}
        raise Problem(401, "Unauthorized", detail, headers=headers)
    return identity


def require_admin(
    identity: Identity,
    *,
    unauthenticated: str = SIGN_IN,
    forbidden: str = ADMINS_ONLY,
    challenge: str | None = "Bearer",
) -> Identity:
    """``identity`` if it is an admin; a 401 problem when anonymous, a 403 when signed in without the role."""
    require_user(identity, detail=unauthenticated, challenge=challenge)
    if not identity.is_admin:
        raise Problem(403, "Forbidden", forbidden)
    return identity
