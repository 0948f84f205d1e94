"""Development seed data: two accounts and a configurable number of sample resources.

The accounts are fixed and documented (`database.accounts`) so the README's curl examples work on a fresh stack;
the production settings refuse to start while they still have these passwords. Resources go in with binary
COPY (`copy_records_to_table`), which loads 100,000 rows in a few seconds where INSERTs would take minutes.

Safe to run from several replicas at once: users are inserted with ON CONFLICT DO NOTHING, and resources are
loaded inside a transaction holding an EXCLUSIVE lock on `resources`, after re-checking that it is still
empty.

With ENVIRONMENT=production the seed refuses before it connects: the development logins it would create are
public, and the production gateway refuses to start while they exist. Compose then stops at the seed with one line
naming the variable, instead of a gateway that crash-loops on accounts the seed has just created.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import asyncpg

from database.accounts import DEV_ACCOUNTS
from shared.passwords import hash_password
from shared.settings import Env

__all__ = ["RESOURCE_TYPES", "SeedRefused", "SeedResult", "refuse_production", "seed"]

RESOURCE_TYPES = ("article", "product", "event", "place", "note")
_TAGS = ("new", "popular", "featured", "archived", "draft", "local", "sale")


@dataclass(frozen=True)
class SeedResult:
    """How many rows this run inserted (0 for whatever already existed)."""

    users_created: int
    resources_created: int


class SeedRefused(SystemExit):
    """The seed will not create the development accounts in production.

    A ``SystemExit`` so that ``scalable-api seed`` (and Compose's one-shot ``seed`` service) stops with exit status 1
    and this one line, not a traceback; callers that want to go on can catch it like any exception.
    """


def refuse_production(environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`SeedRefused` when ENVIRONMENT (read from ``environ``, default the process's) is production."""
    if Env(environ).choice("ENVIRONMENT", "development", ("development", "production")) != "production":
        return
    logins = ", ".join(account.email for account in DEV_ACCOUNTS)
    raise SeedRefused(
        f"seed: refusing to create the development accounts ({logins}, whose passwords are public) because "
        "ENVIRONMENT=production; set ENVIRONMENT=development to seed a development stack, or skip the seed in "
        "production (docker compose up --scale seed=0)"
    )


async def seed(
    dsn: str, *, resources: int = 1000, only_if_empty: bool = True, environ: Mapping[str, str] | None = None
) -> SeedResult:
    """Create the dev accounts if missing, then `resources` sample resources (skipped when some already exist
    and `only_if_empty`). Refuses (:class:`SeedRefused`) when ENVIRONMENT in ``environ`` is production."""
    refuse_production(environ)
    connection = await asyncpg.connect(dsn)
    try:
        users_created, owner_ids = await _seed_users(connection)
        resources_created = 0
        if resources > 0:
            resources_created = await _seed_resources(connection, resources, owner_ids, only_if_empty)
    finally:
        await connection.close()
    return SeedResult(users_created=users_created, resources_created=resources_created)


@functools.cache
def _cached_hash(password: str) -> str:
    # Dev passwords are public anyway; hashing each once per process keeps test fixtures that re-seed fast.
    return hash_password(password)


async def _seed_users(connection: asyncpg.Connection) -> tuple[int, list[int]]:
    """Insert the missing dev accounts; return how many were new and all their ids, in DEV_ACCOUNTS order."""
    created = 0
    for account in DEV_ACCOUNTS:
        password_hash = await asyncio.to_thread(_cached_hash, account.password)
        inserted = await connection.fetchval(
            "INSERT INTO users (email, password_hash, role, tier) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT DO NOTHING RETURNING id",
            account.email,
            password_hash,
            account.role,
            account.tier,
        )
        created += inserted is not None
    rows = await connection.fetch(
        "SELECT id, lower(email) AS email FROM users WHERE lower(email) = ANY($1::text[])",
        [account.email.lower() for account in DEV_ACCOUNTS],
    )
    ids = {row["email"]: int(row["id"]) for row in rows}
    return created, [ids[account.email.lower()] for account in DEV_ACCOUNTS]


async def _seed_resources(connection: asyncpg.Connection, count: int, owner_ids: list[int], only_if_empty: bool) -> int:
    """COPY `count` resources with explicit ids after the current maximum, then move the id sequence past
    them."""
    async with connection.transaction():
        # Blocks concurrent writers (and seeders) until commit, so the ids we pick stay ours.
        await connection.execute("LOCK TABLE resources IN EXCLUSIVE MODE")
        if only_if_empty and await connection.fetchval("SELECT EXISTS (SELECT 1 FROM resources)"):
            return 0
        first_id = int(await connection.fetchval("SELECT coalesce(max(id), 0) + 1 FROM resources"))
        await connection.copy_records_to_table(
            "resources",
            columns=("id", "name", "type", "data", "owner_id"),
            records=_sample_resources(first_id, count, owner_ids),
        )
        await connection.execute("SELECT setval(pg_get_serial_sequence('resources', 'id'), $1)", first_id + count - 1)
    await connection.execute("ANALYZE resources")
    return count


def _sample_resources(first_id: int, count: int, owner_ids: list[int]) -> Iterator[tuple[int, str, str, str, int]]:
    """Deterministic, varied rows: types cycle, owners alternate, `data` is a small JSON object."""
    for offset in range(count):
        resource_id = first_id + offset
        kind = RESOURCE_TYPES[resource_id % len(RESOURCE_TYPES)]
        data = {
            "index": resource_id,
            "tags": [_TAGS[resource_id % len(_TAGS)], _TAGS[(resource_id // 7) % len(_TAGS)]],
            "rating": (resource_id * 37) % 50 / 10,
            "public": resource_id % 3 != 0,
        }
        owner = owner_ids[offset % len(owner_ids)]
        yield resource_id, f"Sample {kind} {resource_id}", kind, json.dumps(data), owner
