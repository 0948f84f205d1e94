"""The authenticated identity forwarded from the gateway to the apiservers, signed so it cannot be forged.

The gateway removes any client-sent ``X-Internal-Identity`` header, authenticates the caller, and sends::

    X-Internal-Identity: v1.<user_id>.<role>.<tier>.<method>.<issued_at>.<hmac-sha256 hex>

The HMAC covers everything before it, keyed with ``INTERNAL_SECRET``. An apiserver trusts an identity only when
the signature verifies and ``issued_at`` is within ``max_age`` seconds; anything else is treated as anonymous.
Fields are plain tokens (no dots), so the format needs no escaping and parses with one ``split``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Literal

IDENTITY_HEADER = "X-Internal-Identity"
_VERSION = "v1"
_ROLES = frozenset({"anonymous", "user", "admin"})
_TIERS = frozenset({"anonymous", "free", "pro", "enterprise"})
_METHODS = frozenset({"none", "jwt", "api_key"})
DEFAULT_MAX_AGE = 300.0

Role = Literal["anonymous", "user", "admin"]


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: int | None
    role: str
    tier: str
    method: str

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


ANONYMOUS = Identity(user_id=None, role="anonymous", tier="anonymous", method="none")


def _mac(secret: bytes, payload: str) -> str:
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def sign_identity(identity: Identity, secret: str, *, now: float | None = None) -> str:
    issued_at = int(time.time() if now is None else now)
    user = "-" if identity.user_id is None else str(identity.user_id)
    payload = f"{_VERSION}.{user}.{identity.role}.{identity.tier}.{identity.method}.{issued_at}"
    return f"{payload}.{_mac(secret.encode(), payload)}"


def verify_identity(
    header: str | None, secret: str, *, now: float | None = None, max_age: float = DEFAULT_MAX_AGE
) -> Identity:
    """The identity in ``header`` if it is authentic and fresh, else :data:`ANONYMOUS`."""
    if not header or len(header) > 256:
        return ANONYMOUS
    payload, _, mac = header.rpartition(".")
    if not hmac.compare_digest(mac, _mac(secret.encode(), payload)):
        return ANONYMOUS
    parts = payload.split(".")
    if len(parts) != 6 or parts[0] != _VERSION:
        return ANONYMOUS
    _, user, role, tier, method, issued_at = parts
    try:
        age = (time.time() if now is None else now) - int(issued_at)
        user_id = None if user == "-" else int(user)
    except ValueError:
        return ANONYMOUS
    if abs(age) > max_age or role not in _ROLES or tier not in _TIERS or method not in _METHODS:
        return ANONYMOUS
    return Identity(user_id=user_id, role=role, tier=tier, method=method)
