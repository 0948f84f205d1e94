"""The development accounts: the one place their logins are written.

The seed creates them, `scalable-api up` prints them, the README's curl examples use them, the tests and the bench
log in with them, and the gateway refuses to start in production while any of them still has its seeded password.
Their roles and tiers are typed with the account vocabulary of :mod:`shared.identity` (the users table's CHECKs).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.identity import AccountRole, AccountTier

__all__ = ["DEV_ACCOUNTS", "DEV_ADMIN", "DEV_USER", "DevAccount"]


@dataclass(frozen=True)
class DevAccount:
    """A seeded login, printed by `scalable-api up` and used by the README examples."""

    email: str
    password: str
    role: AccountRole
    tier: AccountTier

    @property
    def login(self) -> dict[str, str]:
        """The body of `POST /api/v1/auth/login` for this account."""
        return {"email": self.email, "password": self.password}


DEV_ADMIN = DevAccount("admin@example.com", "admin123", "admin", "enterprise")
DEV_USER = DevAccount("user@example.com", "user123", "user", "free")
DEV_ACCOUNTS: tuple[DevAccount, ...] = (DEV_ADMIN, DEV_USER)
