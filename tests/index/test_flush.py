"""A writer flushed after its commits (``flush = "batch"``): order, journal, failure.

The ``flush`` hook stands for ``FileStore.flush_all`` (one syncfs): what it sees
through a fresh connection is what the commit put in the file before the flush.
"""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import msgspec
import pytest

from archive.index import Index, IndexFlushError
from tests.index import make_instance, query, run


async def _synchronous(index: Index) -> int:
    """The writer connection's PRAGMA synchronous, read on the writer's own thread."""
    row = await index._writer.on_connection(
        lambda conn: conn.execute("PRAGMA synchronous").fetchone()
    )
    assert isinstance(row, tuple)
    return int(row[0])


def test_each_batch_is_committed_then_flushed_with_its_journal(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    seen: list[tuple[int, list[str]]] = []

    def flush() -> None:
        # A fresh connection: the commit is in the file when the flush comes.
        count = query(db, "SELECT count(*) FROM instance")[0][0]
        journal = [row[0] for row in query(db, "SELECT sop_instance_uid FROM unflushed")]
        seen.append((count, sorted(journal)))

    async def main() -> None:
        async with await Index.open(db, flush=flush) as index:
            assert await _synchronous(index) == 1  # NORMAL: the flush syncs the log
            await index.add(make_instance(1))
            await asyncio.gather(*(index.add(make_instance(n)) for n in (2, 3, 4)))
            assert await index.unflushed() == sorted(
                make_instance(n).attrs.sop_instance_uid for n in (2, 3, 4)
            )

    run(main())
    one, *rest = (make_instance(n).attrs.sop_instance_uid for n in (1, 2, 3, 4))
    # One flush per batch, after its commit; each batch's journal names only its own.
    assert seen[0] == (1, [one])
    assert seen[-1][0] == 4
    assert sorted(uid for _, journal in seen[1:] for uid in journal) == sorted(rest)
    # A clean close leaves nothing for the next start to read back.
    assert query(db, "SELECT count(*) FROM unflushed") == [(0,)]


def test_without_a_flush_commits_sync_and_journal_their_batch(tmp_path: Path) -> None:
    """flush = "file": each COMMIT syncs the log. A COMMIT whose sync fails is
    answered as failed, yet its frames are in the log and a restart would bring
    them back: its UIDs come back with them, for recovery to check."""
    db = tmp_path / "index.db"

    async def main() -> None:
        async with await Index.open(db) as index:
            assert await _synchronous(index) == 2  # FULL: the commit syncs the log
            await index.add(make_instance(1))
            assert await index.unflushed() == [make_instance(1).attrs.sop_instance_uid]
            await index.add(make_instance(2))
            assert await index.unflushed() == [make_instance(2).attrs.sop_instance_uid]

    run(main())
    assert query(db, "SELECT count(*) FROM unflushed") == [(0,)]  # a clean close


def test_the_next_batch_empties_a_journal_a_crash_left(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    left = make_instance(1).attrs.sop_instance_uid

    async def main() -> None:
        async with await Index.open(db, flush=lambda: None) as index:
            await index.add(make_instance(1))
        # What a crash between commit and close leaves behind.
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("INSERT INTO unflushed VALUES (?)", (left,))
        async with await Index.open(db, flush=lambda: None) as index:
            assert await index.unflushed() == [left]
            await index.add(make_instance(2))
            assert await index.unflushed() == [make_instance(2).attrs.sop_instance_uid]
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("INSERT INTO unflushed VALUES (?)", (left,))
        # A writer whose commits sync the log journals its batches all the same.
        async with await Index.open(db) as index:
            await index.add(make_instance(3))
            assert await index.unflushed() == [make_instance(3).attrs.sop_instance_uid]
        with closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("INSERT INTO unflushed VALUES (?)", (left,))
        # Only a fast one keeps none: nothing it commits is durable anyway.
        async with await Index.open(db, durability="fast") as index:
            await index.add(make_instance(4))
            assert await index.unflushed() == []

    run(main())


def test_a_failed_flush_takes_the_batch_back_and_stops_the_writer(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    calls: list[int] = []

    def flush() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    async def main() -> None:
        async with await Index.open(db, flush=flush) as index:
            await index.add(make_instance(1))
            with pytest.raises(IndexFlushError, match="not durable, flush failed"):
                await index.add(make_instance(2))
            # Taken back: only the first instance is indexed...
            assert await index.instance(make_instance(2).attrs.sop_instance_uid) is None
            assert (await index.stats()).instances == 1
            # ...but the journal still names it, for the next start-up.
            assert await index.unflushed() == [make_instance(2).attrs.sop_instance_uid]
            # Nothing is committed after a failed flush; each refusal is its own
            # exception (one object raised again and again would grow its traceback).
            refused = []
            for n in (3, 4):
                with pytest.raises(IndexFlushError, match="until restart") as info:
                    await index.add(make_instance(n))
                refused.append(info.value)
            assert refused[0] is not refused[1]
            with pytest.raises(IndexFlushError, match="until restart"):
                index.check_writable()

    run(main())
    assert len(calls) == 2
    assert query(db, "SELECT count(*) FROM instance") == [(1,)]
    assert query(db, "SELECT sop_instance_uid FROM unflushed") == [
        (make_instance(2).attrs.sop_instance_uid,)
    ]


def test_a_flush_failing_in_any_way_stops_the_writer(tmp_path: Path) -> None:
    # Not only OSError: whatever the flush raises, its batch is not known durable.
    class Abort(BaseException):
        pass

    db = tmp_path / "index.db"

    def flush() -> None:
        raise Abort("flush")

    async def main() -> None:
        async with await Index.open(db, flush=flush) as index:
            with pytest.raises(IndexFlushError, match="not durable, flush failed"):
                await index.add(make_instance(1))
            with pytest.raises(IndexFlushError, match="until restart"):
                await index.add(make_instance(2))

    run(main())
    assert query(db, "SELECT count(*) FROM instance") == [(0,)]


def test_a_probe_cannot_leave_a_transaction_open(tmp_path: Path) -> None:
    db = tmp_path / "index.db"

    def probe(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT no_such_column FROM instance")

    async def main() -> None:
        async with await Index.open(db) as index:
            with pytest.raises(sqlite3.OperationalError):
                await index._writer.on_connection(probe)
            # Else the next batch of adds would run, uncommitted, inside it.
            await index.add(make_instance(1))
            assert query(db, "SELECT count(*) FROM instance") == [(1,)]

    run(main())


def test_a_refresh_is_neither_journaled_nor_flushed(tmp_path: Path) -> None:
    """``Index.refresh`` (archive reindex) writes no file: its batch names nothing in
    the journal, so recovery never reads its file back, and is not flushed. Its row
    takes the instance's own values from the file and fills only the study values
    the study lacks: the one held is the latest received and stays."""
    db = tmp_path / "index.db"
    flushes: list[list[str]] = []

    def flush() -> None:
        flushes.append([row[0] for row in query(db, "SELECT sop_instance_uid FROM unflushed")])

    async def main() -> None:
        async with await Index.open(db, flush=flush) as index:
            await index.add(make_instance(1, study_description="Held", content_date=""))
            uid = make_instance(1).attrs.sop_instance_uid
            held = await index.record(uid)
            assert held is not None
            flushes.clear()
            # As read again from the file: another study description (older), a new
            # instance value, and a study value the study row lacks.
            read = make_instance(1, study_description="Older", content_date="20240105",
                                 referring_physician_name="Ref^New").attrs  # fmt: skip
            held = msgspec.structs.replace(
                held, attrs=msgspec.structs.replace(held.attrs, referring_physician_name="")
            )
            with closing(sqlite3.connect(db)) as conn, conn:
                conn.execute("UPDATE study SET referring_physician_name = ''")
            assert await index.refresh(held, read)
            assert flushes == []
            assert await index.unflushed() == []
            record = await index.record(uid)
            assert record is not None
            assert record.attrs.study_description == "Held"
            assert record.attrs.content_date == "20240105"
            assert record.attrs.referring_physician_name == "Ref^New"
            assert (record.path, record.digest, record.received_at) == (
                held.path, held.digest, held.received_at
            )  # fmt: skip
            gone = msgspec.structs.replace(
                held, attrs=msgspec.structs.replace(held.attrs, sop_instance_uid="1.2.999")
            )
            assert not await index.refresh(gone, gone.attrs)  # not indexed: nothing written
            assert await index.record("1.2.999") is None
            assert (await index.stats()).instances == 1

    run(main())
