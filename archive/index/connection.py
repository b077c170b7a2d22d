"""Opening SQLite connections for the index: pragmas, and the writer's set-up.

The file is in WAL mode, so readers never block the writer nor the writer them: a
C-FIND reads the last committed state while the group-commit writer appends.

Durability. ``strict`` sets ``synchronous=FULL``: in WAL mode every COMMIT syncs the
WAL, so a committed record survives power loss, which is what a C-STORE Success
promises. ``fast`` sets ``synchronous=OFF``: commits are only handed to the OS, and
a power cut or kernel crash can lose (or, with pages half-written, corrupt) recent
transactions. ``fast`` is for load-test sinks and scratch nodes only, never for an
archive that acknowledges stores. (An application crash loses nothing either way:
the OS has the data.)

A ``strict`` writer whose caller flushes the filesystem after every commit
(``flushed_after=True``, the node's ``flush = "batch"``) sets
``synchronous=NORMAL`` instead: in WAL mode a COMMIT then writes the log without
syncing it (checkpoints still sync in the safe order, so the file is never
corrupted), and the caller's flush makes it durable before anyone is answered.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

from archive.index.batch import prepare_writer
from archive.index.schema import apply_migrations

__all__ = ["READER_PRAGMAS", "SYNCHRONOUS", "Durability", "connect_writer"]

Durability = Literal["strict", "fast"]

# WAL: readers see the last commit while the writer appends; one sync per commit
# (of the WAL only) instead of two with a rollback journal. Persistent in the file.
JOURNAL_MODE_WAL = "PRAGMA journal_mode = WAL"
SYNCHRONOUS: dict[str, str] = {
    "strict": "PRAGMA synchronous = FULL",
    "fast": "PRAGMA synchronous = OFF",
}
# Another process (the CLI's fsck, a backup) may hold the write lock for a moment:
# wait for it instead of failing the batch with SQLITE_BUSY at once.
BUSY_TIMEOUT = "PRAGMA busy_timeout = 10000"
FOREIGN_KEYS_ON = "PRAGMA foreign_keys = ON"
# After a checkpoint, truncate the WAL back to 64 MiB: a burst of ingest otherwise
# leaves the WAL file at its high-water mark for good.
JOURNAL_SIZE_LIMIT = "PRAGMA journal_size_limit = 67108864"
# Page cache per connection (negative = KiB): the writer keeps the inner pages of
# the UID indexes hot (every add probes four of them); a reader needs less.
WRITER_CACHE_SIZE = "PRAGMA cache_size = -65536"
READER_CACHE_SIZE = "PRAGMA cache_size = -16384"
# TEMP staging tables and sort spills stay in memory, never in temp files.
TEMP_STORE_MEMORY = "PRAGMA temp_store = MEMORY"
# Read pages through a shared 256 MiB mapping: no read() syscall and no copy for
# pages already in the OS page cache.
MMAP_SIZE = "PRAGMA mmap_size = 268435456"
# Readers cannot write, whatever SQL a bug hands them.
QUERY_ONLY = "PRAGMA query_only = ON"

READER_PRAGMAS = (BUSY_TIMEOUT, QUERY_ONLY, READER_CACHE_SIZE, TEMP_STORE_MEMORY, MMAP_SIZE)

# Statements kept prepared per connection; the writer cycles through about forty.
STATEMENT_CACHE = 128


SYNCHRONOUS_FLUSHED_AFTER = "PRAGMA synchronous = NORMAL"


def connect_writer(
    path: str, durability: Durability, *, flushed_after: bool = False
) -> sqlite3.Connection:
    """Open the write connection: pragmas, migrations, batch set-up. Blocking.

    Call it on the thread that will use the connection (``check_same_thread``).
    Raises :class:`SchemaVersionError` for a database written by newer code.
    """
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=STATEMENT_CACHE)
    try:
        for pragma in (
            BUSY_TIMEOUT,
            JOURNAL_MODE_WAL,
            SYNCHRONOUS_FLUSHED_AFTER
            if flushed_after and durability == "strict"
            else SYNCHRONOUS[durability],
            FOREIGN_KEYS_ON,
            JOURNAL_SIZE_LIMIT,
            WRITER_CACHE_SIZE,
            TEMP_STORE_MEMORY,
            MMAP_SIZE,
        ):
            conn.execute(pragma)
        apply_migrations(conn, path)
        prepare_writer(conn)
    except BaseException:
        conn.close()
        raise
    return conn
