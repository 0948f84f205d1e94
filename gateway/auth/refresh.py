"""Refresh tokens: opaque, stored hashed in PostgreSQL, rotated on every use, reuse revokes the family.

Why PostgreSQL and not Redis: a refresh token lives for weeks and signs a user in again; it must survive a
Redis restart or eviction, and its rotation is a compare-and-set that a row update does atomically. The
table (``refresh_tokens``) stores only ``sha256(token)``: a database leak yields nothing usable. SHA-256
without salt is right here because the token is 256 random bits, not a guessable password.

::

    login ─► issue(user)            new family F, token T1 (stored hashed)
    refresh(T1) ─► T1 unused?  yes ─► mark T1 used, issue T2 in F ─► (T2, user)
                               no, T1 was already used ─► REUSE: revoke every token of F ─► RefreshReused
                               no, revoked / expired / unknown ─► InvalidRefresh
    logout ─► revoke_family(F)

The "mark used" is one ``UPDATE ... WHERE used_at IS NULL ... RETURNING``, so two concurrent refreshes with
the same token cannot both succeed: the loser is treated as reuse, which is what a stolen-token race looks like.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from gateway.auth.users import User
from shared import queries

TOKEN_BYTES = 32


class InvalidRefresh(Exception):
    """Unknown, expired or revoked refresh token."""


class RefreshReused(Exception):
    """A spent refresh token was presented again: its whole family is now revoked."""

    def __init__(self, family_id: str, user_id: int) -> None:
        super().__init__("refresh token reused")
        self.family_id = family_id
        self.user_id = user_id


@dataclass(frozen=True, slots=True)
class Rotation:
    token: str
    family_id: str
    user: User


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class RefreshTokens:
    def __init__(self, pool: asyncpg.Pool[Any], *, ttl: int) -> None:
        self._pool = pool
        self._ttl = timedelta(seconds=ttl)

    async def issue(self, user_id: int, family_id: str | None = None) -> tuple[str, str]:
        """A new token in ``family_id`` (a new family when None); returns (token, family id)."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        family = family_id or str(uuid.uuid4())
        await queries.execute(
            self._pool,
            "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at) VALUES ($1, $2, $3, now() + $4)",
            user_id,
            uuid.UUID(family),
            token_hash(token),
            self._ttl,
        )
        return token, family

    async def rotate(self, token: str) -> Rotation:
        digest = token_hash(token)
        new_token = secrets.token_urlsafe(TOKEN_BYTES)
        async with self._pool.acquire() as connection, connection.transaction():
            row = await queries.fetchrow(
                connection,
                "UPDATE refresh_tokens t SET used_at = now() FROM users u "
                "WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.revoked_at IS NULL AND t.expires_at > now() "
                "AND u.id = t.user_id AND NOT u.disabled "
                "RETURNING t.family_id, u.id, u.email, u.password_hash, u.role, u.tier, u.disabled, "
                "u.created_at, u.updated_at",
                digest,
            )
            if row is not None:
                await queries.execute(
                    connection,
                    "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at) "
                    "VALUES ($1, $2, $3, now() + $4)",
                    row["id"],
                    row["family_id"],
                    token_hash(new_token),
                    self._ttl,
                )
        if row is None:
            raise await self._refusal(digest)
        fields = dict(row.items())
        fields.pop("family_id")
        user = User(**fields)
        return Rotation(token=new_token, family_id=str(row["family_id"]), user=user)

    async def _refusal(self, digest: bytes) -> InvalidRefresh | RefreshReused:
        """Why a token cannot be rotated; a spent one revokes its family first (outside the failed transaction)."""
        spent = await queries.fetchrow(
            self._pool, "SELECT family_id, user_id, used_at FROM refresh_tokens WHERE token_hash = $1", digest
        )
        if spent is None or spent["used_at"] is None:
            return InvalidRefresh()
        await queries.execute(
            self._pool,
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
            spent["family_id"],
        )
        return RefreshReused(str(spent["family_id"]), int(spent["user_id"]))

    async def family_of(self, token: str, user_id: int) -> str | None:
        """The family of ``user_id``'s token (None for anyone else's: a caller cannot revoke others' sessions)."""
        family = await queries.fetchval(
            self._pool,
            "SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2",
            token_hash(token),
            user_id,
        )
        return None if family is None else str(family)

    async def revoke_family(self, family_id: str) -> int:
        result = await queries.execute(
            self._pool,
            "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
            uuid.UUID(family_id),
        )
        return int(result.split()[-1])

    async def revoke_user(self, user_id: int) -> int:
        result = await queries.execute(
            self._pool,
            "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
            user_id,
        )
        return int(result.split()[-1])
