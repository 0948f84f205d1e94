"""Resources in PostgreSQL: every query the API server runs, and the mapping of database failures.

Connection-level failures become :class:`DatabaseUnavailable` (so the cache can serve stale data and writes
answer 503); constraint violations are the caller's fault and become 4xx in the handlers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from apiserver.cache.entry import SourceUnavailable

_COLUMNS = "id, name, type, data, owner_id, version, created_at, updated_at"
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


class DatabaseUnavailable(SourceUnavailable):
    """PostgreSQL did not answer; the request may be retried later."""


class NotFound(Exception):
    pass


class Forbidden(Exception):
    pass


class VersionConflict(Exception):
    def __init__(self, current_version: int) -> None:
        super().__init__(f"current version is {current_version}")
        self.current_version = current_version


def record_dict(record: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": record["id"],
        "name": record["name"],
        "type": record["type"],
        "data": record["data"],
        "owner_id": record["owner_id"],
        "version": record["version"],
        "created_at": record["created_at"],
        "updated_at": record["updated_at"],
    }


def to_json(record: asyncpg.Record) -> bytes:
    return orjson.dumps(record_dict(record))


class ResourceRepository:
    def __init__(self, pool: asyncpg.Pool[Any], on_query: Callable[[], None] | None = None) -> None:
        self._pool = pool
        self._on_query = on_query or (lambda: None)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy[Any]]:
        self._on_query()
        try:
            async with self._pool.acquire() as connection:
                yield connection
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(type(exc).__name__) from exc

    async def ping(self) -> None:
        async with self._connection() as connection:
            await connection.fetchval("SELECT 1")

    async def get(self, resource_id: int) -> asyncpg.Record | None:
        async with self._connection() as connection:
            return await connection.fetchrow(f"SELECT {_COLUMNS} FROM resources WHERE id = $1", resource_id)  # noqa: S608 - constant column list

    async def list(self, *, type_: str | None, owner: int | None, after_id: int, limit: int) -> list[asyncpg.Record]:
        conditions = ["id > $1"]
        args: list[Any] = [after_id]
        if type_ is not None:
            args.append(type_)
            conditions.append(f"type = ${len(args)}")
        if owner is not None:
            args.append(owner)
            conditions.append(f"owner_id = ${len(args)}")
        args.append(limit)
        sql = (
            f"SELECT {_COLUMNS} FROM resources WHERE {' AND '.join(conditions)} "  # noqa: S608 - placeholders only
            f"ORDER BY id LIMIT ${len(args)}"
        )
        async with self._connection() as connection:
            return list(await connection.fetch(sql, *args))

    async def create(self, fields: dict[str, Any], owner_id: int) -> asyncpg.Record:
        async with self._connection() as connection:
            record: asyncpg.Record | None = await connection.fetchrow(
                f"INSERT INTO resources (name, type, data, owner_id) VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",  # noqa: S608
                fields["name"],
                fields["type"],
                fields.get("data", {}),
                owner_id,
            )
        assert record is not None  # INSERT ... RETURNING always returns the row
        return record

    async def update(
        self,
        resource_id: int,
        fields: dict[str, Any],
        *,
        actor: int,
        admin: bool,
        expected_version: int | None,
    ) -> asyncpg.Record:
        """Apply ``fields`` atomically; raises NotFound, Forbidden or VersionConflict."""
        async with self._connection() as connection, connection.transaction():
            await self._check_target(connection, resource_id, actor, admin, expected_version)
            assignments = [f"{name} = ${index}" for index, name in enumerate(fields, start=2)]
            sql = (
                f"UPDATE resources SET {', '.join(assignments)}, version = version + 1, updated_at = now() "  # noqa: S608
                f"WHERE id = $1 RETURNING {_COLUMNS}"
            )
            record: asyncpg.Record | None = await connection.fetchrow(sql, resource_id, *fields.values())
        assert record is not None  # the row is locked by _check_target
        return record

    async def delete(self, resource_id: int, *, actor: int, admin: bool, expected_version: int | None) -> int:
        """Delete and return the deleted version; raises NotFound, Forbidden or VersionConflict."""
        async with self._connection() as connection, connection.transaction():
            version = await self._check_target(connection, resource_id, actor, admin, expected_version)
            await connection.execute("DELETE FROM resources WHERE id = $1", resource_id)
        return version

    @staticmethod
    async def _check_target(
        connection: PoolConnectionProxy[Any], resource_id: int, actor: int, admin: bool, expected: int | None
    ) -> int:
        row = await connection.fetchrow("SELECT owner_id, version FROM resources WHERE id = $1 FOR UPDATE", resource_id)
        if row is None:
            raise NotFound
        if not admin and row["owner_id"] != actor:
            raise Forbidden
        if expected is not None and row["version"] != expected:
            raise VersionConflict(row["version"])
        return int(row["version"])
