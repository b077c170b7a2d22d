"""The :class:`Index` facade: one SQLite file, one writer, a small pool of readers.

Writes go to the group-commit writer (``writer.py``); reads go to a pool of
query-only aiosqlite connections. In WAL mode they never wait for each other. See
``connection.py`` for the pragmas and what ``durability`` means.

This module is not the writer nor the schema; the write SQL is in ``batch.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import urllib.parse
from array import array
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any

import aiosqlite
import msgspec

from archive.dicom.attributes import HEADER_VERSION, InstanceAttributes
from archive.dicom.query import Query
from archive.dicom.query_keys import Level
from archive.index.batch_sql import SELECT_INSTANCE_ROW, SELECT_UNFLUSHED, STORED_COLUMNS
from archive.index.connection import (
    BUSY_TIMEOUT,
    QUERY_ONLY,
    READER_PRAGMAS,
    SYNCHRONOUS,
    Durability,
)
from archive.index.errors import (
    IndexOpenError,
    IndexReadError,
    InvalidRecordError,
    SchemaOutdatedError,
)
from archive.index.query import (
    INSTANCE_TABLES,
    QUALIFIED_COLUMNS,
    PageStatements,
    find_statements,
    record_from_row,
    retrieve_statements,
)
from archive.index.records import InstanceRow, Stats, StoredInstance, WriterStats
from archive.index.schema import check_version
from archive.index.writer import GroupCommitWriter

__all__ = ["Index", "peek_stats"]

# -- reader queries ------------------------------------------------------------------

SELECT_STATS = """
SELECT (SELECT count(*) FROM patient), (SELECT count(*) FROM study),
       (SELECT count(*) FROM series), instances, bytes
FROM totals WHERE id = 1
"""

# Keyset pagination: each page is its own short read transaction, so a slow
# consumer (stat-ing files) neither holds a reader nor pins the WAL.
SELECT_INSTANCE_FILES = """
SELECT pk, sop_instance_uid, path, size, digest FROM instance WHERE pk > ?
ORDER BY pk LIMIT ?
"""
SELECT_INSTANCE_PATHS = """
SELECT pk, sop_instance_uid, path, received_at FROM instance
WHERE pk > ? AND header_version < ? ORDER BY pk LIMIT ?
"""
#: Above every header version: ``header_version < ALL_VERSIONS`` holds for any row.
_ALL_VERSIONS = 1 << 62
COUNT_OUTDATED = "SELECT count(*) FROM instance WHERE header_version < ?"
# migrations/0006_header_version.sql
SELECT_REINDEX_TASK = "SELECT 1 FROM maintenance WHERE task = 'reindex'"
DELETE_REINDEX_TASK = "DELETE FROM maintenance WHERE task = 'reindex'"

_RECORD_ATTRIBUTES = InstanceAttributes.__struct_fields__
#: The attributes a patient, study or series row holds (the rest are the instance's).
_LEVEL_FIELDS = tuple(
    name for name in _RECORD_ATTRIBUTES if not QUALIFIED_COLUMNS.get(name, "i.").startswith("i.")
)
# Each attribute from its level's row, which holds the current value (the latest
# non-empty one received); the Specific Character Set is the instance's own. Then
# the StoredInstance fields.
SELECT_RECORD = (
    "SELECT "
    + ", ".join(QUALIFIED_COLUMNS.get(name, f"i.{name}") for name in _RECORD_ATTRIBUTES)
    + "".join(f", i.{name}" for name in STORED_COLUMNS)
    + f" FROM {INSTANCE_TABLES} WHERE i.sop_instance_uid = ?"
)

# Query results: the first _SNAPSHOT records straight from the query, one read (an
# answer no larger is a snapshot: an entity moved by a correction meanwhile is
# listed whole or not at all). A larger answer goes on in two steps: the pks of
# every match (one short read, ints and keys only, in the order of the index the
# planner chose), then the records of those not answered yet page by page, each
# page its own read, so a slow consumer holds no reader and pins no WAL snapshot.
# Keyset pagination over the query itself would force ORDER BY pk, which makes
# SQLite walk the primary key instead of the index that selects.
_PK_BATCH = 4096
_SNAPSHOT = 256
#: The first page after the snapshot is small: its responses leave early.
_FIRST_PAGE = 16
_PAGE = 256

# The UIDs an instance is filed under; without them there is no row to key.
_REQUIRED_UIDS = (
    "sop_instance_uid",
    "sop_class_uid",
    "series_instance_uid",
    "study_instance_uid",
)


class Index:
    """The archive's SQLite index. Build with :meth:`open`, end with :meth:`close`.

    Writes (:meth:`add`, :meth:`replace`, :meth:`remove`) are group-committed by one
    writer thread and return once their transaction is durable (per ``durability``).
    Reads use a pool of ``readers`` query-only connections.
    """

    def __init__(
        self, path: str, writer: GroupCommitWriter, readers: list[aiosqlite.Connection]
    ) -> None:
        # Use open(): this only assembles already-prepared parts.
        self._path = path
        self._writer = writer
        self._reader_count = len(readers)
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for conn in readers:
            self._readers.put_nowait(conn)
        self._closed = False

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "strict",
        readers: int = 2,
        max_batch: int = 500,
        flush: Callable[[], None] | None = None,
    ) -> Index:
        """Open (creating and migrating as needed) the index at ``path``.

        ``flush`` (blocking; raises on failure): a ``strict`` writer calls it after
        each commit instead of syncing the log itself (``writer.py``); it must make
        everything written to the index's filesystem durable.

        Raises :class:`SchemaVersionError` if the file was written by newer code,
        :class:`IndexOpenError` if it cannot be opened or created.
        """
        if durability not in SYNCHRONOUS:
            raise ValueError(f"durability must be 'strict' or 'fast', not {durability!r}")
        if readers < 1:
            raise ValueError(f"readers must be at least 1, not {readers}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        location = os.fspath(path)
        # The writer first: it creates and migrates the schema the readers expect.
        try:
            writer = await GroupCommitWriter.open(
                location,
                durability=durability,
                max_batch=max_batch,
                flush=flush if durability == "strict" else None,
            )
        except sqlite3.Error as exc:
            raise IndexOpenError(f"{location}: {exc}") from exc
        pool: list[aiosqlite.Connection] = []
        try:
            for _ in range(readers):
                conn = await aiosqlite.connect(location, isolation_level=None)
                pool.append(conn)
                # Python's casefold (beyond ASCII, unlike lower()) for the
                # case-insensitive matching of PN keys without a folded column.
                await conn.create_function("casefold", 1, _casefold, deterministic=True)
                for pragma in READER_PRAGMAS:
                    await conn.execute(pragma)
        except BaseException as exc:
            for conn in pool:
                await conn.close()
            await writer.close()
            if isinstance(exc, sqlite3.Error):
                raise IndexOpenError(f"{location}: {exc}") from exc
            raise
        return cls(location, writer, pool)

    async def close(self) -> None:
        """Commit everything queued, then close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self._writer.close()
        finally:
            # Waits for readers in use to come back.
            for _ in range(self._reader_count):
                conn = await self._readers.get()
                await conn.close()

    async def __aenter__(self) -> Index:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def path(self) -> str:
        return self._path

    @property
    def writer_stats(self) -> WriterStats:
        """Commit counters of the group-commit writer (for metrics and tests)."""
        return self._writer.stats

    # -- writes (group-committed) -------------------------------------------------

    async def add(self, item: StoredInstance) -> None:
        """Index a new instance; returns after the COMMIT that contains it.

        Raises :class:`DuplicateInstanceError` if the SOP Instance UID is indexed
        already (nothing is changed), :class:`InvalidRecordError` for an empty UID,
        :class:`IndexWriteError` if its transaction failed (nothing of it is stored).
        """
        _check(item)
        await self._writer.add(item)

    async def replace(self, item: StoredInstance) -> InstanceRow | None:
        """Index ``item`` in place of the row with its SOP Instance UID, if any.

        Returns the replaced row (its file is the caller's to delete) or None.
        The old and new rows change in one transaction; aggregates follow. A
        replacement is a correction: its series and study move to the study and
        patient it names, if they are filed elsewhere (``batch.py``).
        """
        _check(item)
        return await self._writer.replace(item)

    async def refresh(self, held: StoredInstance, attrs: InstanceAttributes) -> bool:
        """Write an indexed instance's row again with ``attrs`` read from its file
        (``archive reindex``); ``held`` is its :meth:`record`. False if it is no
        longer indexed.

        The instance's own columns take ``attrs``; a patient, study or series value
        is filled only where the level has none: one already there is the latest
        received, which an older instance read again must not undo. The file's
        path, size, digest and receipt are kept. Not journaled nor flushed on its
        own (no file was written): see :class:`archive.index.batch.Refresh`.
        """
        return await self.refresh_merged(refreshed(held, attrs))

    async def refresh_merged(self, item: StoredInstance) -> bool:
        """:meth:`refresh` of an item :func:`refreshed` made."""
        _check(item)
        return await self._writer.refresh(item) is not None

    async def remove(self, sop_instance_uids: Sequence[str]) -> int:
        """Remove instances (their files are gone); return how many were indexed.

        Series, studies and patients left empty are removed with them.
        """
        if isinstance(sop_instance_uids, str):
            # A str is a Sequence[str] of characters: never what the caller meant.
            raise TypeError("remove() takes a sequence of SOP Instance UIDs, not a str")
        if not sop_instance_uids:
            return 0
        return await self._writer.remove(sop_instance_uids)

    # -- reads (reader pool) ----------------------------------------------------------

    @asynccontextmanager
    async def _reader(self) -> AsyncIterator[aiosqlite.Connection]:
        """A reader connection for the block; SQLite failing there (an I/O error, a
        malformed page, too many variables) comes out as :class:`IndexReadError`,
        which the services answer with a status instead of aborting."""
        conn = await self._readers.get()
        try:
            yield conn
        except sqlite3.Error as exc:
            raise IndexReadError(f"the index could not be read: {exc}") from exc
        finally:
            self._readers.put_nowait(conn)

    async def _fetch_one(self, sql: str, parameters: tuple[object, ...]) -> Any:
        # execute_fetchall is one hop to the reader's thread; a cursor would be three.
        async with self._reader() as conn:
            rows = list(await conn.execute_fetchall(sql, parameters))
        return rows[0] if rows else None

    async def instance(self, sop_instance_uid: str) -> InstanceRow | None:
        """Where the instance is stored, or None if it is not indexed."""
        row = await self._fetch_one(SELECT_INSTANCE_ROW, (sop_instance_uid,))
        return None if row is None else InstanceRow(*row)

    def check_writable(self) -> None:
        """Raise :class:`IndexFlushError` if a flush failed (nothing is written
        until a restart), so that nothing is acknowledged meanwhile either."""
        if self._writer.broken:
            raise self._writer.broken_error()

    def hold_journal(self, held: bool) -> None:
        """While held, batches leave the ``unflushed`` journal as it is (recovery)."""
        self._writer.hold_journal(held)

    async def clear_unflushed(self) -> None:
        """Empty the ``unflushed`` journal in a batch of its own (end of recovery)."""
        await self._writer.clear_journal()

    async def unflushed(self) -> list[str]:
        """The SOP Instance UIDs of the last batch, if its flush may not have
        completed (``migrations/0002_unflushed.sql``); for recovery."""
        async with self._reader() as conn:
            rows = await conn.execute_fetchall(SELECT_UNFLUSHED)
        return [str(row[0]) for row in rows]

    async def record(self, sop_instance_uid: str) -> StoredInstance | None:
        """Everything indexed about one instance, as a :class:`StoredInstance`.

        Patient, study and series values are the current ones of those levels (the
        latest non-empty values received), not necessarily this instance's own.
        """
        row = await self._fetch_one(SELECT_RECORD, (sop_instance_uid,))
        if row is None:
            return None
        count = len(_RECORD_ATTRIBUTES)
        attrs = InstanceAttributes(**dict(zip(_RECORD_ATTRIBUTES, row[:count], strict=True)))
        stored = dict(zip(STORED_COLUMNS, row[count:], strict=True))
        return StoredInstance(attrs=attrs, **stored)

    async def instance_paths(
        self, *, page: int = 1000, older_than: int | None = None
    ) -> AsyncIterator[tuple[str, str]]:
        """(SOP Instance UID, path) of every instance, for reconciliation with disk;
        with ``older_than``, of those whose row a header version below it made.

        Pages are separate read transactions: rows committed meanwhile may or may
        not appear, rows removed meanwhile may still appear once.
        """
        async for uid, path, _ in self.instance_receipts(page=page, older_than=older_than):
            yield uid, path

    async def instance_receipts(
        self, *, page: int = 1000, older_than: int | None = None
    ) -> AsyncIterator[tuple[str, str, float]]:
        """:meth:`instance_paths` with each instance's time of receipt (a refreshed
        row keeps it, where its pk changes)."""
        last = 0
        below = _ALL_VERSIONS if older_than is None else older_than
        while True:
            async with self._reader() as conn:
                rows = list(await conn.execute_fetchall(SELECT_INSTANCE_PATHS, (last, below, page)))
            for pk, uid, path, received_at in rows:
                last = pk
                yield uid, path, received_at
            if len(rows) < page:
                return

    async def instance_files(self, *, page: int = 1000) -> AsyncIterator[tuple[str, str, int, str]]:
        """(SOP Instance UID, path, size, digest) of every instance, to verify files
        against (``archive check --verify``); paged as :meth:`instance_paths`."""
        last = 0
        while True:
            async with self._reader() as conn:
                rows = list(await conn.execute_fetchall(SELECT_INSTANCE_FILES, (last, page)))
            for pk, uid, path, size, digest in rows:
                last = pk
                yield uid, path, size, digest
            if len(rows) < page:
                return

    async def _pks(
        self, sql: str, parameters: Sequence[object], *, bounded: bool = False
    ) -> tuple[array[int], list[str]]:
        """The pks ``sql`` selects and their entities' unique keys (8 bytes a pk,
        and the key: a query may match millions). ``bounded``: the statement has a
        LIMIT, so the rows are fetched in one trip to the reader's thread instead
        of batches."""
        pks: array[int] = array("q")
        keys: list[str] = []
        if bounded:
            async with self._reader() as conn:
                rows = list(await conn.execute_fetchall(sql, parameters))
            pks.extend(row[0] for row in rows)
            keys.extend(row[1] for row in rows)
            return pks, keys
        async with self._reader() as conn, conn.execute(sql, parameters) as cursor:
            while True:
                rows = list(await cursor.fetchmany(_PK_BATCH))
                pks.extend(row[0] for row in rows)
                keys.extend(row[1] for row in rows)
                if len(rows) < _PK_BATCH:
                    return pks, keys

    async def _page(
        self, statements: PageStatements, chunk: array[int], keys: list[str]
    ) -> list[Any]:
        """One page's records, in the order of its pks, each the pk then the
        record's columns (the key left out)."""
        values = "[" + ",".join(map(str, chunk)) + "]"
        async with self._reader() as conn:
            rows = list(
                await conn.execute_fetchall(statements.by_pk, (values, *statements.parameters))
            )
            by_pk = {row[0]: row for row in rows}
            # Gone since the pks were read (or its pk handed to another entity):
            # a replacement's new row, or a series or study made again, has its
            # key; one removed or no longer matching is not found by it either.
            lost = [key for pk, key in zip(chunk, keys, strict=True) if _lost(by_pk.get(pk), key)]
            again: dict[object, Any] = {}
            if lost:
                found = await conn.execute_fetchall(
                    statements.by_key, (json.dumps(lost), *statements.parameters)
                )
                again = {row[1]: row for row in found}
        page = []
        for pk, key in zip(chunk, keys, strict=True):
            row = by_pk.get(pk)
            if _lost(row, key):
                row = again.get(key)
            if row is not None:
                page.append((row[0], *row[2:]))
        return page

    async def _pages(
        self, statements: PageStatements, pks: array[int], keys: list[str]
    ) -> AsyncIterator[list[Any]]:
        """The records of ``pks`` (pk, then the record's columns) in their order,
        those that still match the query (:func:`find_statements` says why some
        may not).

        The next page is read while the caller works through the current one, so
        reading and answering overlap; a reader is held only during a read, never
        while the caller waits on a slow peer.
        """
        if not pks:
            return  # no match: no reader borrowed, no json_each('[]')
        bounds = [(0, _FIRST_PAGE)]
        bounds += ((i, i + _PAGE) for i in range(_FIRST_PAGE, len(pks), _PAGE))
        chunks = [(pks[a:b], keys[a:b]) for a, b in bounds]
        ahead: asyncio.Task[list[Any]] | None = None
        try:
            for n, chunk in enumerate(chunks):
                page = await ahead if ahead is not None else await self._page(statements, *chunk)
                ahead = None
                if n + 1 < len(chunks):
                    ahead = asyncio.ensure_future(self._page(statements, *chunks[n + 1]))
                yield page
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ahead

    async def find(
        self, query: Query, *, limit: int | None = None
    ) -> AsyncIterator[dict[str, object]]:
        """The records matching ``query`` at its level (C-FIND), keyword -> value.

        A record carries the attributes of its entity and of the levels above, and
        the computed attributes of PS3.4 C.3.4 (counts, Modalities and SOP Classes in
        Study): strings are '' and numbers None when unknown; multi-values are
        '\\'-joined. Stops after ``limit`` records if given. Never opens a file.
        """
        async for rows in self.find_rows(query, limit=limit):
            for row in rows:
                yield record_from_row(query.level, row)

    async def find_rows(
        self, query: Query, *, limit: int | None = None
    ) -> AsyncGenerator[list[Sequence[object]], None]:
        """:meth:`find`'s matches as pages of rows, for a caller that wants no dict
        per match: item 0 of a row is the entity's pk, then the values of
        ``RECORD_KEYWORDS[query.level]`` in that order. Raises
        :class:`IndexReadError` when SQLite fails to read (``_reader``)."""
        select, parameters, page = find_statements(query, limit)
        cap = _SNAPSHOT if limit is None else min(limit, _SNAPSHOT)
        async with self._reader() as conn:
            first = list(await conn.execute_fetchall(page.first, (*page.parameters, cap + 1)))
        more, first = len(first) > cap, first[:cap]
        if first:
            yield [(row[0], *row[2:]) for row in first]
        if not more or (limit is not None and cap >= limit):
            return  # all answered, or the limit reached (the caller asked one more)
        # More: every match's pk, read now, those answered left out by their key
        # (an entity answered whose position changed meanwhile is not answered
        # twice; one held throughout is in the snapshot or in this read).
        answered = {row[1] for row in first}
        pks, keys = await self._pks(select, parameters, bounded=limit is not None)
        rest = [n for n, key in enumerate(keys) if key not in answered]
        if limit is not None:
            rest = rest[: limit - cap]
        async for rows in self._pages(
            page, array("q", (pks[n] for n in rest)), [keys[n] for n in rest]
        ):
            yield rows

    async def retrieve(self, query: Query) -> list[InstanceRow]:
        """The instances under the entities a C-MOVE/C-GET identifier selects.

        Ordered by study, series and instance number (then arrival). One statement
        fetched in one trip to a reader: a retrieve needs every row (the count of
        sub-operations, the contexts to propose) before its first sub-operation, so
        paging them like :meth:`find` would only add reads.
        """
        select, parameters = retrieve_statements(query)
        async with self._reader() as conn:
            rows = await conn.execute_fetchall(select, parameters)
        return [InstanceRow(*row) for row in rows]

    async def reindex_needed(self) -> bool:
        """Whether rows made by an older header version may be left (the
        ``maintenance`` task that migration 0006 sets and :meth:`reindexed` clears)."""
        return await self._fetch_one(SELECT_REINDEX_TASK, ()) is not None

    async def outdated(self) -> int:
        """How many rows an older header version made (reads the whole instance table)."""
        row = await self._fetch_one(COUNT_OUTDATED, (HEADER_VERSION,))
        return int(row[0])

    async def reindexed(self) -> None:
        """Clear the reindex task (``archive reindex`` left no outdated row)."""

        def clear(conn: sqlite3.Connection) -> None:
            conn.execute(DELETE_REINDEX_TASK)

        await self._writer.on_connection(clear)

    async def stats(self) -> Stats:
        """Counts of patients, studies, series, instances and stored bytes."""
        row = await self._fetch_one(SELECT_STATS, ())
        assert row is not None  # the totals row is created by migration 0001
        return Stats(*row)


#: Each patient, study and series attribute of a record, and its level.
LEVEL_FIELDS: Mapping[str, Level] = MappingProxyType(
    {
        name: {"p": Level.PATIENT, "st": Level.STUDY, "se": Level.SERIES}[
            QUALIFIED_COLUMNS[name].partition(".")[0]
        ]
        for name in _LEVEL_FIELDS
    }
)


def refreshed(
    held: StoredInstance, attrs: InstanceAttributes, given: Mapping[str, object] | None = None
) -> StoredInstance:
    """``held`` (a :meth:`Index.record`) with ``attrs`` read again from its file: a
    patient, study or series value is the level's own where it has one (the
    latest received, which an older instance read again must not undo), else
    ``given``'s (what a reindex took from a later instance of that level),
    else the file's."""
    given = given or {}
    levels = {}
    for name in _LEVEL_FIELDS:
        value = getattr(held.attrs, name)
        if value in ("", None):
            value = given.get(name)
        if value not in ("", None):
            levels[name] = value
    return msgspec.structs.replace(held, attrs=msgspec.structs.replace(attrs, **levels))


def _lost(row: Sequence[object] | None, key: str) -> bool:
    """Whether a page's row by pk is not the entity whose key was read."""
    return row is None or row[1] != key


def _casefold(value: object) -> object:
    return value.casefold() if isinstance(value, str) else value


def _check(item: StoredInstance) -> None:
    for name in _REQUIRED_UIDS:
        if not getattr(item.attrs, name):
            raise InvalidRecordError(name)


def peek_stats(path: str | os.PathLike[str]) -> tuple[Stats, int]:
    """:meth:`Index.stats` and the outdated rows' count, read without a writer.

    For a look at an index another process may be serving (``archive stats``
    beside a node): one read-only connection, no migration, nothing written.
    Blocking. Raises :class:`SchemaVersionError` for a newer schema,
    :class:`SchemaOutdatedError` for an older one (the caller may open the index
    normally instead, once it holds the data folder), :class:`IndexReadError`
    when SQLite cannot read it.
    """
    location = os.fspath(path)
    # Absolute, and bytes quoted: "file:" + "//host/..." would name a host, and
    # a name that is not UTF-8 could not be quoted as text.
    uri = f"file://{urllib.parse.quote(os.fsencode(os.path.abspath(location)))}?mode=ro"
    try:
        return _peek_stats(uri, location)
    except sqlite3.Error as exc:
        raise IndexReadError(f"cannot read {location}: {exc}") from exc


def _peek_stats(uri: str, location: str) -> tuple[Stats, int]:
    with contextlib.closing(sqlite3.connect(uri, uri=True, isolation_level=None)) as conn:
        conn.execute(BUSY_TIMEOUT)
        conn.execute(QUERY_ONLY)
        # One read transaction: the version and the counts are of one snapshot.
        conn.execute("BEGIN")
        found, supported = check_version(conn, location)
        if found < supported:
            raise SchemaOutdatedError(location, found, supported)
        stats = Stats(*conn.execute(SELECT_STATS).fetchone())
        task = conn.execute(SELECT_REINDEX_TASK).fetchone()
        outdated = conn.execute(COUNT_OUTDATED, (HEADER_VERSION,)).fetchone()[0] if task else 0
        conn.execute("COMMIT")
    return stats, int(outdated)
