"""Password hashing with argon2id.

argon2-cffi is the reference binding, so nothing here is hand-written cryptography: this module only fixes the
algorithm (argon2id, explicitly, so a library default change cannot silently weaken it) and turns the
library's exceptions into plain booleans, because a login handler must answer "wrong password" the same way
whether the password was wrong or the stored hash was damaged.

Hashing costs tens of milliseconds of CPU by design; async callers should run it in a thread
(`asyncio.to_thread(hash_password, ...)`) so the event loop keeps serving other requests.

`DUMMY_HASH` exists for equal-time login failures: when the email is unknown, verify the password against it
anyway so the response time does not reveal which emails have accounts. It is computed on first use, not at
import, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["DUMMY_HASH", "dummy_hash", "hash_password", "needs_rehash", "verify_password"]

_HASHER = PasswordHasher(type=Type.ID)

# Declared for type checkers; the value is produced lazily by the module-level __getattr__ below.
DUMMY_HASH: str


def hash_password(password: str) -> str:
    """Return an argon2id PHC string (`$argon2id$v=19$m=...`) with a fresh random salt."""
    return _HASHER.hash(password)


def verify_password(hash: str, password: str) -> bool:
    """Tell whether `password` matches `hash`; a malformed or foreign hash is a mismatch, never an
    exception."""
    try:
        return _HASHER.verify(hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(hash: str) -> bool:
    """Tell whether a stored hash should be replaced after a successful login (weaker parameters or
    unreadable)."""
    try:
        return _HASHER.check_needs_rehash(hash)
    except (InvalidHashError, ValueError):
        return True


@functools.cache
def dummy_hash() -> str:
    """Return a process-wide hash of a random password, for verifying against when no account exists."""
    return hash_password(secrets.token_urlsafe(32))


def __getattr__(name: str) -> str:
    """Compute `DUMMY_HASH` on first access (PEP 562) so importing the module does no hashing."""
    if name == "DUMMY_HASH":
        return dummy_hash()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
