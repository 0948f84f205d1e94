"""PostgreSQL queries, each a span in a sampled request: ``await fetchrow(pool, sql, *args)`` and its siblings.

Every query the processes run on behalf of a request goes through these four (the apiserver's repository and
idempotency keys; the gateway's users, API keys and refresh tokens), so a trace shows each one as a CLIENT span
named ``SELECT users``, with the statement as written (placeholders, never the values). See
:func:`shared.spans.postgres_span`; an unsampled request pays one ContextVar read per query.

Why not ``opentelemetry-instrumentation-asyncpg``: it patches asyncpg's ``Connection`` methods process-wide and,
on every query, builds the span attributes and asks the SDK for a span even when the request is not sampled
(a few µs each, 99 % of the time for nothing); it also traces asyncpg's own statements (the pool's reset on every
release) and pins an exact semantic-conventions release that lags the SDK's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from shared.spans import postgres_span

if TYPE_CHECKING:  # asyncpg's classes are generic only in its stubs
    from asyncpg.pool import PoolConnectionProxy

    Executor: TypeAlias = asyncpg.Pool[Any] | asyncpg.Connection[Any] | PoolConnectionProxy[Any]

__all__ = ["execute", "fetch", "fetchrow", "fetchval"]


async def fetchrow(executor: Executor, sql: str, *args: Any) -> asyncpg.Record | None:
    with postgres_span(sql):
        record: asyncpg.Record | None = await executor.fetchrow(sql, *args)
        return record


async def fetch(executor: Executor, sql: str, *args: Any) -> list[asyncpg.Record]:
    with postgres_span(sql):
        return await executor.fetch(sql, *args)


async def fetchval(executor: Executor, sql: str, *args: Any) -> Any:
    with postgres_span(sql):
        return await executor.fetchval(sql, *args)


async def execute(executor: Executor, sql: str, *args: Any) -> str:
    with postgres_span(sql):
        return await executor.execute(sql, *args)
