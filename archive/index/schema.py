"""Schema migrations: numbered ``.sql`` files applied in order, one transaction each.

``migrations/NNNN_name.sql`` (package data) hold the schema; the database records
the number of the last one applied in ``PRAGMA user_version`` (a field of the
database header, written in the same transaction as the migration, so a crash
leaves either the old schema and version or the new ones). A database whose version
is newer than the newest file here was written by newer code and is refused with
:class:`SchemaVersionError` rather than used half-understood.

This module is not the connection setup (pragmas live in ``database.py``).
"""

from __future__ import annotations

import re
import sqlite3
from importlib import resources

import msgspec

from archive.index.errors import SchemaVersionError

__all__ = [
    "Migration",
    "apply_migrations",
    "check_version",
    "latest_version",
    "load_migrations",
    "split_sql",
]

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

GET_VERSION = "PRAGMA user_version"
# PRAGMA takes no bound parameters: the version is formatted in, always an int.
SET_VERSION = "PRAGMA user_version = {version:d}"
BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"


class Migration(msgspec.Struct, frozen=True):
    """One numbered schema step."""

    version: int
    name: str
    statements: tuple[str, ...]


def split_sql(script: str) -> tuple[str, ...]:
    """Split a script into single statements (``sqlite3`` executes one at a time).

    Lines are gathered until :func:`sqlite3.complete_statement` says the text ends a
    statement, which knows about comments, quotes and trigger bodies; a ``;`` inside
    a comment does not end one. Comment lines between statements are dropped.
    """
    statements: list[str] = []
    pending: list[str] = []
    for line in script.splitlines(keepends=True):
        if not pending and not _has_code(line):
            continue  # comments between statements belong to none of them
        pending.append(line)
        text = "".join(pending)
        if sqlite3.complete_statement(text):
            if _has_code(text):
                statements.append(text.strip())
            pending.clear()
    rest = "".join(pending)
    if _has_code(rest):
        raise ValueError(f"incomplete SQL statement at the end of the script: {rest.strip()!r}")
    return tuple(statements)


def _has_code(text: str) -> bool:
    return any(line.split("--", 1)[0].strip() for line in text.splitlines())


def load_migrations() -> tuple[Migration, ...]:
    """The migrations shipped in ``archive/index/migrations``, checked and in order."""
    folder = resources.files("archive.index").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        script = entry.read_text(encoding="utf-8")
        found.append(Migration(int(match.group(1)), entry.name, split_sql(script)))
    found.sort(key=lambda migration: migration.version)
    expected = list(range(1, len(found) + 1))
    if [migration.version for migration in found] != expected:
        # A gap or a duplicate number would apply steps out of order on some databases.
        names = [migration.name for migration in found]
        raise RuntimeError(f"migration files must be numbered 0001.. without gaps: {names}")
    return tuple(found)


def latest_version(migrations: tuple[Migration, ...]) -> int:
    """The schema version the given migrations lead to."""
    return migrations[-1].version if migrations else 0


def _version(conn: sqlite3.Connection) -> int:
    row = conn.execute(GET_VERSION).fetchone()
    return int(row[0]) if row is not None else 0


def check_version(
    conn: sqlite3.Connection, path: str, migrations: tuple[Migration, ...] | None = None
) -> tuple[int, int]:
    """(the database's schema version, the newest ``migrations`` lead to); raises
    :class:`SchemaVersionError` when the database's is the newer."""
    supported = latest_version(load_migrations() if migrations is None else migrations)
    found = _version(conn)
    if found > supported:
        raise SchemaVersionError(path, found, supported)
    return found, supported


def apply_migrations(
    conn: sqlite3.Connection,
    path: str,
    migrations: tuple[Migration, ...] | None = None,
) -> int:
    """Bring the database on ``conn`` (autocommit mode) up to date; return its version.

    Blocking: run it on the writer's thread. Each pending migration runs in its own
    ``BEGIN IMMEDIATE`` transaction and the version is re-read inside it, so two
    processes opening the same new file do not both apply a step. Raises
    :class:`SchemaVersionError` for a database written by newer code.
    """
    if migrations is None:
        migrations = load_migrations()
    current, supported = check_version(conn, path, migrations)
    for migration in migrations:
        if migration.version <= current:
            continue
        conn.execute(BEGIN_IMMEDIATE)
        try:
            current = _version(conn)
            if current > supported:
                raise SchemaVersionError(path, current, supported)
            if migration.version > current:
                for statement in migration.statements:
                    conn.execute(statement)
                conn.execute(SET_VERSION.format(version=migration.version))
                current = migration.version
            conn.execute(COMMIT)
        except BaseException:
            if conn.in_transaction:
                conn.execute(ROLLBACK)
            raise
    return current
