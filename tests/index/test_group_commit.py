"""The group-commit writer: batching, commit-before-return, failing batches, close."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from archive.index import (
    Index,
    IndexClosedError,
    IndexWriteError,
    InstanceRow,
    SchemaVersionError,
    Stats,
    WriterStats,
    batch,
)
from archive.index.connection import connect_writer
from tests.index import execute, make_instance, query, run

IS_INDEXED = "SELECT count(*) FROM instance WHERE sop_instance_uid = ?"

# Fault injection from outside: the next insert of this UID aborts its transaction.
FAIL_ON_POISON = """
CREATE TRIGGER poison BEFORE INSERT ON instance
WHEN NEW.sop_instance_uid = 'poison.1'
BEGIN SELECT RAISE(ABORT, 'injected failure'); END
"""


def test_concurrent_adds_share_commits_and_return_after_their_commit(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    items = [make_instance(n, series=f"1.2.3.{n % 4}") for n in range(200)]
    seen_after_return: list[bool] = []

    async def add_then_look(index: Index, n: int) -> None:
        await index.add(items[n])
        # A separate connection on the file sees the row as soon as add() returns.
        rows = query(db, IS_INDEXED, (items[n].attrs.sop_instance_uid,))
        seen_after_return.append(rows == [(1,)])

    async def main() -> None:
        async with await Index.open(db) as index:
            await asyncio.gather(*(add_then_look(index, n) for n in range(200)))
            stats = index.writer_stats
            assert stats.operations == 200
            assert stats.commits <= 4, stats  # 200 adds queued at once: one batch
            assert stats.failed_batches == 0
            assert await index.stats() == Stats(1, 1, 4, 200, 200_000)

    run(main())
    assert seen_after_return == [True] * 200


def test_batches_are_capped_at_max_batch(tmp_path: Path) -> None:
    async def main() -> None:
        async with await Index.open(tmp_path / "index.db", max_batch=7) as index:
            await asyncio.gather(*(index.add(make_instance(n)) for n in range(50)))
            stats = index.writer_stats
            assert stats.largest_batch == 7
            assert stats.commits == 8  # ceil(50 / 7)
            assert stats.operations == 50

    run(main())


def test_adds_pile_up_while_the_writer_waits_for_the_disk(tmp_path: Path) -> None:
    db = tmp_path / "index.db"

    async def main() -> None:
        async with await Index.open(db) as index:
            await index.add(make_instance(0))
            # Another process holds the write lock: the writer's BEGIN IMMEDIATE
            # waits (busy_timeout) and everything queued meanwhile forms one batch.
            blocker = sqlite3.connect(db, isolation_level=None)
            try:
                blocker.execute("BEGIN IMMEDIATE")
                first = asyncio.create_task(index.add(make_instance(1)))
                await asyncio.sleep(0.05)  # the writer is now blocked in BEGIN
                rest = [asyncio.create_task(index.add(make_instance(n))) for n in range(2, 40)]
                await asyncio.sleep(0.05)
                assert not first.done()
                # WAL: readers are not held up by a writer waiting for the lock.
                assert await index.instance(make_instance(0).attrs.sop_instance_uid) is not None
                blocker.execute("ROLLBACK")
            finally:
                blocker.close()
            await asyncio.gather(first, *rest)
            assert index.writer_stats == WriterStats(
                commits=3, operations=40, failed_batches=0, largest_batch=38
            )

    run(main())


def test_an_operation_that_fails_its_batch_fails_alone_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    db = tmp_path / "index.db"
    before = [make_instance(n, study="1.1") for n in range(5)]
    others = [make_instance(n, study="2.2") for n in range(5)]
    poison = make_instance(1, study="poison", series="poison")
    after = [make_instance(n, study="3.3") for n in range(5)]

    async def main() -> None:
        async with await Index.open(db) as index:
            await asyncio.gather(*(index.add(x) for x in before))
            execute(db, FAIL_ON_POISON)
            results = await asyncio.gather(
                *(index.add(x) for x in [*others[:2], poison, *others[2:]]),
                return_exceptions=True,
            )
            # The batch of six failed; tried again one by one, only the poison fails.
            assert results[:2] == [None, None]
            assert results[3:] == [None] * 3
            failed = results[2]
            assert type(failed) is IndexWriteError
            assert isinstance(failed.__cause__, sqlite3.IntegrityError)
            assert str(failed.__cause__) == "injected failure"
            assert failed.code == "index.write_failed"
            await asyncio.gather(*(index.add(x) for x in after))
            assert index.writer_stats == WriterStats(
                commits=7, operations=15, failed_batches=2, largest_batch=5
            )
            assert await index.stats() == Stats(1, 3, 3, 15, 15_000)
            # Nothing of the failed operation leaked, not even its patient/study rows.
            assert await index.instance(poison.attrs.sop_instance_uid) is None

    run(main())
    studies = query(db, "SELECT study_instance_uid, number_of_instances FROM study ORDER BY 1")
    assert studies == [("1.1", 5), ("2.2", 5), ("3.3", 5)]


def test_a_batch_that_fails_for_want_of_space_is_not_tried_again(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    items = [make_instance(n, study=f"2.{n}", series=f"3.{n}") for n in range(300)]

    def cap(conn: sqlite3.Connection) -> object:
        # The database may not grow: SQLITE_FULL, as on a full disk.
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        return conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()

    async def main() -> None:
        async with await Index.open(db) as index:
            await index.add(make_instance(9, study="1.1"))
            await index._writer.on_connection(cap)
            results = await asyncio.gather(*(index.add(x) for x in items), return_exceptions=True)
            assert all(type(r) is IndexWriteError for r in results), results
            assert all(isinstance(r, BaseException) and "full" in str(r.__cause__) for r in results)
            # One failed batch: each add alone would have failed as they all did.
            assert index.writer_stats == WriterStats(
                commits=1, operations=1, failed_batches=1, largest_batch=1
            )

    run(main())


def test_a_failed_batch_of_many_chunks_leaves_nothing_staged(tmp_path: Path) -> None:
    # Adds are staged batch.STAGE_CHUNK at a time, each chunk by its own statement
    # outside the transaction: a failure in the last must not leave the first
    # chunks staged for the next batch to insert.
    db = tmp_path / "index.db"
    conn = connect_writer(str(db), "strict")
    try:
        execute(db, FAIL_ON_POISON)
        many = [make_instance(n, study="2.2") for n in range(2 * batch.STAGE_CHUNK + 3)]
        poison = make_instance(1, study="poison", series="poison")
        with pytest.raises(sqlite3.IntegrityError, match="injected failure"):
            batch.apply_batch(conn, [*many, poison])
        assert query(db, "SELECT count(*) FROM instance") == [(0,)]
        after = [make_instance(n, study="3.3") for n in range(3)]
        assert batch.apply_batch(conn, after) == [None, None, None]
        # Replaces and removes take the transaction path: the same holds there.
        with pytest.raises(sqlite3.IntegrityError, match="injected failure"):
            batch.apply_batch(conn, [batch.Remove(("none",)), *many, poison])
        assert batch.apply_batch(conn, [make_instance(9, study="4.4")]) == [None]
    finally:
        conn.close()
    assert query(db, "SELECT sop_instance_uid FROM instance ORDER BY 1") == [
        ("3.3.1.0",), ("3.3.1.1",), ("3.3.1.2",), ("4.4.1.9",),
    ]  # fmt: skip
    assert query(db, "SELECT study_instance_uid, number_of_instances FROM study ORDER BY 1") == [
        ("3.3", 3), ("4.4", 1),
    ]  # fmt: skip


def test_refusals_are_read_inside_the_batch_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch of adds commits as one statement; which adds it refused is learnt
    # inside that statement. Should that fail, the batch must be rolled back
    # whole, or its stores would be answered a failure for committed rows.
    def failing(seq: int, sop_instance_uid: str) -> None:
        raise RuntimeError("cannot report a refusal")

    monkeypatch.setattr(batch, "_note_refused", failing)
    db = tmp_path / "index.db"
    held = make_instance(1)
    new = make_instance(2)

    async def main() -> None:
        async with await Index.open(db) as index:
            await index.add(held)  # refuses nothing
            results = await asyncio.gather(index.add(new), index.add(held), return_exceptions=True)
            # The batch failed whole; tried again one by one, the add refusing
            # nothing commits and the one whose refusal cannot be told fails.
            assert [type(r) for r in results] == [type(None), IndexWriteError]
            assert await index.instance(new.attrs.sop_instance_uid) is not None
            assert index.writer_stats.failed_batches == 2

    run(main())
    assert query(db, "SELECT count(*) FROM instance") == [(2,)]


def test_text_with_a_nul_is_stored_whole(tmp_path: Path) -> None:
    # Rows are bound column by column: a NUL stays in the text (JSON staging had cut it).
    item = make_instance(1, study="1.1", study_description="HEAD\x00CT", patient_id="P\x001")
    other = make_instance(2, study="2.2", study_description="HEAD", patient_id="P\x002")

    async def main() -> None:
        async with await Index.open(tmp_path / "index.db") as index:
            await asyncio.gather(index.add(item), index.add(other))
            for x in (item, other):
                assert await index.record(x.attrs.sop_instance_uid) == x

    run(main())
    assert query(tmp_path / "index.db", "SELECT patient_id FROM patient ORDER BY 1") == [
        ("P\x001",),
        ("P\x002",),
    ]


def test_operations_in_one_batch_apply_in_queue_order(tmp_path: Path) -> None:
    x = make_instance(1)
    x2 = make_instance(1, size=7)
    uid = x.attrs.sop_instance_uid

    async def main() -> None:
        async with await Index.open(tmp_path / "index.db") as index:
            results = await asyncio.gather(
                index.add(x),
                index.remove([uid]),
                index.add(x),
                index.replace(x2),
                index.add(make_instance(2)),
            )
            assert index.writer_stats.commits == 1
            old = InstanceRow(
                uid,
                "1.2.3",
                "1.2.3.1",
                x.attrs.sop_class_uid,
                x.path,
                1000,
                x.digest,
                x.transfer_syntax_uid,
            )
            assert list(results) == [None, 1, None, old, None]
            row = await index.instance(uid)
            assert row is not None
            assert row.size == 7
            assert await index.stats() == Stats(1, 1, 1, 2, 1007)

    run(main())


def test_close_drains_the_queue(tmp_path: Path) -> None:
    db = tmp_path / "index.db"

    async def main() -> None:
        index = await Index.open(db, durability="fast")
        tasks = [asyncio.create_task(index.add(make_instance(n))) for n in range(100)]
        await asyncio.sleep(0)  # every add is queued, none committed yet
        await index.close()
        assert all(task.done() and task.exception() is None for task in tasks)
        with pytest.raises(IndexClosedError):
            await index.add(make_instance(1000))
        await index.close()  # idempotent

    run(main())
    assert query(db, "SELECT count(*) FROM instance") == [(100,)]


def test_a_cancelled_waiter_does_not_disturb_the_writer(tmp_path: Path) -> None:
    async def main() -> None:
        async with await Index.open(tmp_path / "index.db") as index:
            waiter = asyncio.create_task(index.add(make_instance(1)))
            await asyncio.sleep(0)  # queued
            waiter.cancel()
            await index.add(make_instance(2))
            with pytest.raises(asyncio.CancelledError):
                await waiter
            # The cancelled add was not withdrawn: its batch committed it.
            assert (await index.stats()).instances == 2
            assert index.writer_stats.failed_batches == 0

    run(main())


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "index-writer"]


def test_a_failed_open_leaves_no_writer_thread(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    execute(db, "PRAGMA user_version = 99")  # newer than this code: open refuses it
    before = len(_writer_threads())

    async def main() -> None:
        # The count below looks for the writer's thread by name: it must find it.
        async with await Index.open(tmp_path / "other.db"):
            assert len(_writer_threads()) == before + 1
        with pytest.raises(SchemaVersionError):
            await Index.open(db)

    run(main())
    # The thread reports "stopped" to the loop just before it returns: give it that
    # moment (a thread that never ends still fails the count).
    for thread in _writer_threads():
        thread.join(5)
    assert len(_writer_threads()) == before


def test_the_writer_commits_the_next_batch_while_the_loop_is_busy(tmp_path: Path) -> None:
    # The writer thread takes batch after batch by itself: with the event loop
    # blocked, the adds queued behind a slow first batch are committed anyway.
    db = tmp_path / "index.db"
    flushes: list[int] = []
    first_flush, second_flush = threading.Event(), threading.Event()

    def flush() -> None:
        flushes.append(query(db, "SELECT count(*) FROM instance")[0][0])
        if len(flushes) == 1:
            first_flush.set()
            time.sleep(0.2)  # the first batch's flush is slow; the rest queue behind
        else:
            second_flush.set()

    async def main() -> None:
        async with await Index.open(db, flush=flush) as index:
            first = asyncio.create_task(index.add(make_instance(1)))
            assert await asyncio.to_thread(first_flush.wait, 5)
            rest = [asyncio.create_task(index.add(make_instance(n))) for n in (2, 3)]
            await asyncio.sleep(0)  # queued
            # Block the loop on purpose (a blocking wait, however long the machine
            # takes): nobody on the loop resolves futures or starts batches.
            assert second_flush.wait(10)
            # Both batches were committed and flushed while the loop was blocked.
            assert flushes == [1, 3]
            await asyncio.gather(first, *rest)

    run(main())
