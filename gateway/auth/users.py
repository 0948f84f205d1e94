"""Accounts in PostgreSQL: look-ups for login and ``/me``, and the admin's role and tier changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from shared import queries
from shared.identity import AccountRole, AccountTier

_COLUMNS = "id, email, password_hash, role, tier, disabled, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    password_hash: str
    role: AccountRole
    tier: AccountTier
    disabled: bool
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, object]:
        """What the API shows about an account: never the hash."""
        return {
            "id": self.id,
            "email": self.email,
            "role": self.role,
            "tier": self.tier,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
        }


def _user(row: asyncpg.Record | None) -> User | None:
    return None if row is None else User(**dict(row.items()))


class UserRepository:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def by_email(self, email: str) -> User | None:
        row = await queries.fetchrow(self._pool, f"SELECT {_COLUMNS} FROM users WHERE lower(email) = lower($1)", email)  # noqa: S608 - constant column list
        return _user(row)

    async def by_id(self, user_id: int) -> User | None:
        row = await queries.fetchrow(self._pool, f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)  # noqa: S608 - constant column list
        return _user(row)

    async def page(self, *, after: int, limit: int) -> list[User]:
        rows = await queries.fetch(
            self._pool,
            f"SELECT {_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2",  # noqa: S608 - constant column list
            after,
            limit,
        )
        return [User(**dict(row.items())) for row in rows]

    async def update(
        self, user_id: int, *, role: AccountRole | None, tier: AccountTier | None, disabled: bool | None
    ) -> User | None:
        row = await queries.fetchrow(
            self._pool,
            f"UPDATE users SET role = coalesce($2, role), tier = coalesce($3, tier), "  # noqa: S608 - constant column list
            f"disabled = coalesce($4, disabled), updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
            user_id,
            role,
            tier,
            disabled,
        )
        return _user(row)

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        await queries.execute(self._pool, "UPDATE users SET password_hash = $2 WHERE id = $1", user_id, password_hash)

    async def ping(self) -> None:
        await queries.fetchval(self._pool, "SELECT 1")
