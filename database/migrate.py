"""Apply the numbered SQL migrations in `database/migrations/`.

Written by hand because the job is small and specific: plain SQL files, applied in order, once. A migration
framework would bring its own model layer and CLI for what is about eighty lines here.

    take pg_advisory_lock(_LOCK_KEY)      one runner at a time, so replicas may all migrate at start-up
    create schema_migrations if missing
    for each NNNN_name.sql, sorted:
        applied, same checksum  -> skip
        applied, other checksum -> refuse (MigrationChecksumError): history was edited after it ran
        not applied             -> BEGIN; run the file; record version, name, checksum; COMMIT
    release the lock

Each migration runs in its own transaction, so a failing one leaves the earlier ones applied and itself not at
all.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import asyncpg

__all__ = ["Migration", "MigrationChecksumError", "MigrationError", "load_migrations", "run_migrations"]

# Arbitrary but fixed: every runner of this project must use the same key ("scalable" in ASCII).
_LOCK_KEY = 0x7363616C61626C65
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text        PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migrations on disk cannot be applied as they are."""


class MigrationChecksumError(MigrationError):
    """An applied migration's file changed afterwards; the database and the code disagree about history."""


@dataclass(frozen=True)
class Migration:
    """One SQL file: `version` is its 4-digit prefix, `checksum` the SHA-256 of its text."""

    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(source: Traversable | Path | None = None) -> list[Migration]:
    """Read the migrations from `source` (default: the package's `migrations` folder), sorted by version."""
    folder = source if source is not None else files("database") / "migrations"
    found: dict[str, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_lower_snake.sql")
        version = match["version"]
        if version in found:
            raise MigrationError(f"two migrations share version {version}")
        found[version] = Migration(version, match["name"], entry.read_text(encoding="utf-8"))
    return [found[version] for version in sorted(found)]


async def run_migrations(dsn: str, *, source: Traversable | Path | None = None) -> list[str]:
    """Apply every pending migration and return the versions applied now (empty when already up to date)."""
    migrations = load_migrations(source)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            return await _apply_pending(connection, migrations)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await connection.close()


async def _apply_pending(connection: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await connection.execute(_CREATE_TABLE)
    rows = await connection.fetch("SELECT version, checksum FROM schema_migrations")
    applied: dict[str, str] = {row["version"]: row["checksum"] for row in rows}
    _refuse_changed(migrations, applied)
    newly_applied: list[str] = []
    for migration in migrations:
        if migration.version in applied:
            continue
        async with connection.transaction():
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        newly_applied.append(migration.version)
    return newly_applied


def _refuse_changed(migrations: list[Migration], applied: dict[str, str]) -> None:
    """Check every applied file before running anything, so a refused run changes nothing."""
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationChecksumError(
                f"migration {migration.version}_{migration.name}.sql changed after it was applied "
                f"(recorded checksum {recorded[:12]}…, file now {migration.checksum[:12]}…); "
                "add a new migration instead of editing an applied one"
            )
