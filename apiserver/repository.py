"""Resources in PostgreSQL: every query the API server runs, and the mapping of database failures.

Connection-level failures become :class:`DatabaseUnavailable` (so the cache can serve stale data and writes
answer 503); constraint violations are the caller's fault and become 4xx in the handlers.

Each query is a span in a sampled request (:mod:`shared.queries`: ``SELECT resources``, the statement with its
placeholders, never the values).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, TypeVar

import asyncpg
import orjson
import structlog
from asyncpg.pool import PoolConnectionProxy

from apiserver.cache.entry import SourceUnavailable
from apiserver.idempotency import IdempotencyGuard
from apiserver.replicas import ReadRouter, parse_lsn
from shared import queries
from shared.breaker import BreakerOpen

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
    # A pooled connection whose server died mid-operation is left in a broken protocol state.
    asyncpg.InternalClientError,
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


QueryCounter = Callable[[str], None]
_log = structlog.get_logger("apiserver.repository")


@asynccontextmanager
async def _pooled(pool: asyncpg.Pool[Any]) -> AsyncIterator[PoolConnectionProxy[Any]]:
    """A pooled connection whose failures become DatabaseUnavailable.

    Releasing is kept apart from the work: once the body has finished (a write committed), a failure while
    handing the connection back must not turn that success into an error. asyncpg already terminates a
    connection it cannot reset, so there is nothing more to do than log it.
    """
    try:
        connection = await pool.acquire()
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable(type(exc).__name__) from exc
    try:
        yield connection
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable(type(exc).__name__) from exc
    finally:
        try:
            await pool.release(connection)
        except Exception as exc:
            _log.warning("pg_release_failed", error=type(exc).__name__)


T = TypeVar("T")


class ResourceRepository:
    """Writes and uncached reads; with a :class:`ReadRouter`, reads go to a caught-up replica when there is one."""

    def __init__(
        self, pool: asyncpg.Pool[Any], *, router: ReadRouter | None = None, on_query: QueryCounter | None = None
    ) -> None:
        self._pool = pool
        self._router = router
        self._on_query = on_query or (lambda target: None)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy[Any]]:
        self._on_query("primary")
        async with _pooled(self._pool) as connection:
            yield connection

    async def _read(self, query: Callable[[PoolConnectionProxy[Any]], Awaitable[T]]) -> T:
        """Run a read on a replica when one is caught up; on its failure, on the primary (reads are safe to repeat)."""
        replica = self._router.pick() if self._router is not None else None
        if replica is not None:
            try:
                permit = replica.breaker.acquire()
            except BreakerOpen:
                permit = None
            if permit is not None:
                self._on_query("replica")
                try:
                    async with _pooled(replica.pool) as connection:
                        result = await query(connection)
                except DatabaseUnavailable as exc:
                    replica.breaker.record_failure(permit, exc)
                else:
                    replica.breaker.record_success(permit)
                    return result
        async with self._connection() as connection:
            return await query(connection)

    async def _wal_position(self, connection: PoolConnectionProxy[Any]) -> int:
        """After a commit: the primary's WAL position, which replicas must reach before serving reads again."""
        if self._router is None:
            return 0
        lsn = parse_lsn(await queries.fetchval(connection, "SELECT pg_current_wal_lsn()::text"))
        self._router.note_write(lsn)
        return lsn

    async def ping(self) -> None:
        async with self._connection() as connection:
            await queries.fetchval(connection, "SELECT 1")

    async def get(self, resource_id: int) -> asyncpg.Record | None:
        sql = f"SELECT {_COLUMNS} FROM resources WHERE id = $1"  # noqa: S608 - constant column list
        record: asyncpg.Record | None = await self._read(
            lambda connection: queries.fetchrow(connection, sql, resource_id)
        )
        return record

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
        records: list[asyncpg.Record] = await self._read(lambda connection: queries.fetch(connection, sql, *args))
        return list(records)

    async def create(
        self, fields: dict[str, Any], owner_id: int, *, guard: IdempotencyGuard[asyncpg.Record] | None = None
    ) -> tuple[asyncpg.Record, int]:
        """Insert; with a guard, the key is claimed before and stored after, in the INSERT's transaction."""
        async with self._connection() as connection:
            # A lone INSERT needs no explicit transaction (two round trips saved); a keyed one does.
            transaction: AbstractAsyncContextManager[Any] = (
                connection.transaction() if guard is not None else nullcontext()
            )
            async with transaction:
                if guard is not None:
                    await guard.claim(connection)
                record: asyncpg.Record | None = await queries.fetchrow(
                    connection,
                    f"INSERT INTO resources (name, type, data, owner_id) VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",  # noqa: S608
                    fields["name"],
                    fields["type"],
                    fields.get("data", {}),
                    owner_id,
                )
                assert record is not None  # INSERT ... RETURNING always returns the row
                if guard is not None:
                    await guard.store(connection, record)
            lsn = await self._wal_position(connection)
        return record, lsn

    async def update(
        self,
        resource_id: int,
        fields: dict[str, Any],
        *,
        actor: int,
        admin: bool,
        expected_version: int | None,
        guard: IdempotencyGuard[asyncpg.Record] | None = None,
    ) -> tuple[asyncpg.Record, int]:
        """Apply ``fields`` atomically; returns the row and the WAL position.

        Raises NotFound, Forbidden or VersionConflict (and, with a guard, what its claim raises).
        """
        async with self._connection() as connection:
            async with connection.transaction():
                if guard is not None:
                    await guard.claim(connection)
                await self._check_target(connection, resource_id, actor, admin, expected_version)
                assignments = [f"{name} = ${index}" for index, name in enumerate(fields, start=2)]
                sql = (
                    f"UPDATE resources SET {', '.join(assignments)}, version = version + 1, updated_at = now() "  # noqa: S608
                    f"WHERE id = $1 RETURNING {_COLUMNS}"
                )
                record: asyncpg.Record | None = await queries.fetchrow(connection, sql, resource_id, *fields.values())
                assert record is not None  # the row is locked by _check_target
                if guard is not None:
                    await guard.store(connection, record)
            lsn = await self._wal_position(connection)
        return record, lsn

    async def delete(
        self,
        resource_id: int,
        *,
        actor: int,
        admin: bool,
        expected_version: int | None,
        guard: IdempotencyGuard[int] | None = None,
    ) -> tuple[int, int]:
        """Delete; returns the deleted version and the WAL position. Raises NotFound, Forbidden or VersionConflict."""
        async with self._connection() as connection:
            async with connection.transaction():
                if guard is not None:
                    await guard.claim(connection)
                version = await self._check_target(connection, resource_id, actor, admin, expected_version)
                await queries.execute(connection, "DELETE FROM resources WHERE id = $1", resource_id)
                if guard is not None:
                    await guard.store(connection, version)
            lsn = await self._wal_position(connection)
        return version, lsn

    @staticmethod
    async def _check_target(
        connection: PoolConnectionProxy[Any], resource_id: int, actor: int, admin: bool, expected: int | None
    ) -> int:
        sql = "SELECT owner_id, version FROM resources WHERE id = $1 FOR UPDATE"
        row = await queries.fetchrow(connection, sql, resource_id)
        if row is None:
            raise NotFound
        if not admin and row["owner_id"] != actor:
            raise Forbidden
        if expected is not None and row["version"] != expected:
            raise VersionConflict(row["version"])
        return int(row["version"])
