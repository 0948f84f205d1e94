"""Idempotency-Key on resource writes: the same key and request answer the stored response, once.

Semantics follow the IETF httpapi draft and Stripe. Design: the key's row is written in the *same* transaction
as the write it guards, and a transaction-scoped advisory lock on (caller, key) tells a duplicate in flight
from a finished one. No ``in_flight`` row is ever committed, so a request that fails or whose process is
``kill -9``-ed leaves nothing behind (PostgreSQL rolls back and frees the lock), and a retry simply runs.

    handler: caller = verified user id (anonymous writes are 401 before this), key validated (else 400)
      │      fingerprint = sha256(method, path?query, the validated body as canonical JSON)
      ▼
    BEGIN                                             (the write's own transaction on the primary)
      pg_try_advisory_xact_lock(hash(caller, key))
        not granted ────────────────────────────────► ROLLBACK, 409 key-in-flight (another request holds it)
      SELECT the (caller, key) row younger than IDEMPOTENCY_TTL
        found, same fingerprint ────────────────────► ROLLBACK, stored status/headers/body
                                                       + Idempotent-Replayed: true
        found, other fingerprint ───────────────────► ROLLBACK, 422 key-reused
        none ──► the write (INSERT / UPDATE / DELETE)
                   raises (404, 403, 412, DB down) ─► ROLLBACK: no key stored, the request may be retried
                 UPSERT the row with the response  (overwrites an expired row for the same key)
    COMMIT                                            (write and key together, or neither)
      ▼
    cache write-through, then the response           (exactly the bytes stored)

A duplicate arriving after COMMIT gets the lock and sees the row (READ COMMITTED takes a new snapshot per
statement), so two identical concurrent requests give one write and one 409 or replay. A 64-bit hash collision
between two live keys could only produce a spurious 409, which the client retries.

What is stored: only responses of writes that committed (201, 200, 204). Stripe stores every result once the
endpoint "started executing", 4xx included, except validation failures and 409/429. Here a refused write
(400/422 validation, 403, 404, 412) changed nothing and has no transaction to commit into, so it is not
stored: a retry with the same key runs again and answers the current truth. 409 and 429 are never stored.

Expiry: rows older than ``IDEMPOTENCY_TTL`` (24 h) are ignored by the lookup and deleted by :func:`sweep_expired`,
which a cleanup context runs periodically in small batches (``ctid`` subquery, one short transaction per batch)
so it never holds locks requests wait for. Hand-written because this is the product's own contract.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
import orjson
import structlog
from aiohttp import hdrs, web
from asyncpg.pool import PoolConnectionProxy

from shared import queries
from shared.errors import Problem
from shared.shutdown import stop_tasks

__all__ = [
    "HEADER",
    "REPLAYED_HEADER",
    "IdempotencyGuard",
    "Replayed",
    "StoredResponse",
    "guard_for",
    "idempotency_sweeper",
    "sweep_expired",
]

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# 1-255 printable ASCII characters (space included inside; HTTP strips it at the edges).
_VALID_KEY = re.compile(r"[\x20-\x7e]{1,255}")
SWEEP_BATCH = 1000
_KEPT_HEADERS = (hdrs.CONTENT_TYPE, hdrs.ETAG, hdrs.LOCATION)
_log = structlog.get_logger("apiserver.idempotency")

_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended($1::bigint::text || ':' || $2, 0))"
_LOOKUP = """
SELECT fingerprint, status, headers, body FROM idempotency_keys
WHERE owner_id = $1 AND key = $2 AND created_at > now() - make_interval(secs => $3)
"""
_STORE = """
INSERT INTO idempotency_keys (owner_id, key, fingerprint, status, headers, body) VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (owner_id, key) DO UPDATE SET
    fingerprint = excluded.fingerprint, status = excluded.status, headers = excluded.headers,
    body = excluded.body, created_at = now()
"""
_SWEEP = """
DELETE FROM idempotency_keys WHERE ctid IN (
    SELECT ctid FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1) LIMIT $2
)
"""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What a write answered: status, the headers that matter and the body, as stored and as sent."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def to_response(self, *, replayed: bool = False) -> web.Response:
        headers = list(self.headers)
        if replayed:
            headers.append((REPLAYED_HEADER, "true"))
        return web.Response(status=self.status, body=self.body or None, headers=headers)


class Replayed(Exception):  # not an error: the outcome of a repeated request
    """The key was used before with the same request: answer ``response`` again."""

    def __init__(self, response: StoredResponse) -> None:
        super().__init__(f"replay of a {response.status}")
        self.response = response


T = TypeVar("T")


@dataclass(slots=True)
class IdempotencyGuard(Generic[T]):
    """One keyed write: ``claim`` before it and ``store`` after it, on the write's connection and transaction.

    ``render`` turns what the repository returns into the response; the handler sends ``response``.
    """

    owner_id: int
    key: str
    fingerprint: bytes
    ttl: float
    render: Callable[[T], StoredResponse]
    response: StoredResponse | None = field(default=None, init=False)

    async def claim(self, connection: PoolConnectionProxy[Any]) -> None:
        """Raise 409 while another request holds the key, :class:`Replayed` or 422 when it was used."""
        if not await queries.fetchval(connection, _LOCK, self.owner_id, self.key):
            raise Problem(
                409,
                "Conflict",
                "A request with this Idempotency-Key is still being processed; retry later.",
                type_="idempotency-key-in-flight",
                headers={"Retry-After": "1"},
            )
        row = await queries.fetchrow(connection, _LOOKUP, self.owner_id, self.key, self.ttl)
        if row is None:
            return
        if bytes(row["fingerprint"]) != self.fingerprint:
            raise Problem(
                422,
                "Unprocessable Content",
                "This Idempotency-Key was already used with another request; use a new key.",
                type_="idempotency-key-reused",
            )
        headers = tuple((str(name), str(value)) for name, value in row["headers"])
        raise Replayed(StoredResponse(row["status"], headers, bytes(row["body"])))

    async def store(self, connection: PoolConnectionProxy[Any], result: T) -> None:
        response = self.render(result)
        kept = [[name, value] for name, value in response.headers if name in _KEPT_HEADERS]
        await queries.execute(
            connection, _STORE, self.owner_id, self.key, self.fingerprint, response.status, kept, response.body
        )
        self.response = response


def fingerprint(method: str, path: str, body: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))  # length-prefixed: no two requests share a digest input
        digest.update(part)
    return digest.digest()


def _parse_key(value: str) -> str:
    if not _VALID_KEY.fullmatch(value):
        raise Problem(
            400,
            "Bad Request",
            f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
            type_="invalid-idempotency-key",
        )
    return value


def guard_for(
    request: web.Request,
    owner_id: int,
    *,
    body: dict[str, Any] | None,
    ttl: float,
    render: Callable[[T], StoredResponse],
) -> IdempotencyGuard[T] | None:
    """The guard for this request, or None when it carries no Idempotency-Key (an ordinary write).

    ``body`` is the validated JSON object; its canonical form (sorted keys, no whitespace) is fingerprinted, so
    a client re-serialising the same object differently is still sending the same request.
    """
    value = request.headers.get(HEADER)
    if value is None:
        return None
    key = _parse_key(value)
    canonical = b"" if body is None else orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return IdempotencyGuard(owner_id, key, fingerprint(request.method, request.path_qs, canonical), ttl, render)


async def sweep_expired(pool: asyncpg.Pool[Any], ttl: float, *, batch: int = SWEEP_BATCH) -> int:
    """Delete expired keys in batches of ``batch`` rows, each its own short statement; returns the count."""
    total = 0
    while True:
        async with pool.acquire() as connection:
            status = await connection.execute(_SWEEP, ttl, batch)
        deleted = int(status.rsplit(" ", 1)[-1])
        total += deleted
        if deleted < batch:
            return total
        await asyncio.sleep(0)  # let requests have the pool between batches


def idempotency_sweeper(
    pool_of: Callable[[web.Application], asyncpg.Pool[Any]], ttl: float, *, interval: float | None = None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running :func:`sweep_expired` every ``interval`` seconds (default: ttl / 24, 10 s-1 h)."""
    every = interval if interval is not None else min(max(ttl / 24, 10.0), 3600.0)

    async def loop(app: web.Application) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                deleted = await sweep_expired(pool_of(app), ttl)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
                _log.warning("idempotency_sweep_failed", error=type(exc).__name__)
            else:
                if deleted:
                    _log.info("idempotency_keys_swept", deleted=deleted)

    async def sweeper(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(loop(app))
        try:
            yield
        finally:
            await stop_tasks(task)

    return sweeper
