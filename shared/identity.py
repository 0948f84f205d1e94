"""Who is calling: the vocabulary of roles, tiers and auth methods, and the signed identity the gateway forwards.

**The vocabulary is defined here and nowhere else.** ``Role``, ``Tier`` and ``Method`` are ``Literal`` types, so
a value *is* its wire string (JWT claims, JSON bodies, SQL parameters and the header below need no conversion)
and mypy (strict equality) refuses a misspelt one at every use. The tuples are the same facts at run time, read
from the types. Accounts (the ``users`` table) have only the ``Account*`` subsets: ``anonymous`` is what a caller
without a credential is, never what an account holds. The copies that cannot import this module, the migration's
CHECK constraints and the OpenAPI enums, are compared with it by ``tests/unit/test_vocabulary.py``.

The identity header: the gateway removes any client-sent ``X-Internal-Identity`` header, authenticates the
caller, and sends::

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
from typing import Literal, TypeGuard, TypeVar, get_args

AccountRole = Literal["user", "admin"]
Role = Literal["anonymous", AccountRole]
AccountTier = Literal["free", "pro", "enterprise"]
Tier = Literal["anonymous", AccountTier]
Method = Literal["none", "jwt", "api_key"]

ACCOUNT_ROLES: tuple[AccountRole, ...] = get_args(AccountRole)
ROLES: tuple[Role, ...] = get_args(Role)
ACCOUNT_TIERS: tuple[AccountTier, ...] = get_args(AccountTier)
TIERS: tuple[Tier, ...] = get_args(Tier)
METHODS: tuple[Method, ...] = get_args(Method)

_T = TypeVar("_T")


def one_of(value: object, allowed: tuple[_T, ...]) -> TypeGuard[_T]:
    """Whether ``value`` (a claim, a header field, a JSON value of any type) is one of ``allowed``."""
    return value in allowed


IDENTITY_HEADER = "X-Internal-Identity"
_VERSION = "v1"
DEFAULT_MAX_AGE = 300.0


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: int | None
    role: Role
    tier: Tier
    method: Method

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
    if not header or len(header) > 256 or not header.isascii():  # compare_digest and encode() need ASCII
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
    if abs(age) > max_age or not (one_of(role, ROLES) and one_of(tier, TIERS) and one_of(method, METHODS)):
        return ANONYMOUS
    return Identity(user_id=user_id, role=role, tier=tier, method=method)
