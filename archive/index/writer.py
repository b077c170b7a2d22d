"""The group-commit writer: one thread, one connection, one transaction per batch.

Theory of operation. Every change to the index (add, replace, remove) is an
operation put on a queue together with a future. One thread owns the only write
connection; it waits for the first operation, takes whatever else is queued (up to
``max_batch``), has the whole batch applied in one ``BEGIN IMMEDIATE`` ... ``COMMIT``
(``batch.apply_batch``) and then resolves every future. A C-STORE answers Success
only after its future resolves, so nothing acknowledged is ever lost, yet one WAL
sync covers the whole batch: under load the batches grow by themselves and the
commit rate stays near the disk's sync rate while the record rate climbs.

With a ``flush`` (the node's ``flush = "batch"``) the connection commits with
``synchronous=NORMAL`` and the writer thread calls ``flush`` right after each
COMMIT, in the same hop: one flush of the filesystem makes the batch's files and
its log durable together, and only then are the futures resolved. A ``strict``
batch also records its UIDs in the ``unflushed`` journal (``batch.py``) for
recovery, whether a flush follows or its COMMIT syncs the log itself: a COMMIT
whose sync fails is answered as failed (its files discarded), yet its frames are
in the log, and a restart before the next commit would bring its rows back;
their UIDs come back with them, and recovery drops the rows whose files are
gone. A failed flush stops the writer for good (:class:`IndexFlushError`): the OS may
have dropped the pages it could not write, so a later flush proves nothing. Its
batch's new rows are taken back at once (their stores are answered 0xA700 and
their files discarded), and the journal stays for the next start-up to check
(which also gives a refused replacement's place back to the version it replaced).

A batch that fails (rolled back whole) is tried again one operation at a time,
each in a transaction of its own, unless SQLite said the database cannot be
written now (full, I/O, locked, read-only): what failed may be one instance's
values, and the stores of other associations batched with it must not fail too.

The queue is unbounded on purpose: every submitter waits for its own commit, so at
most one operation per concurrent store is ever queued; backpressure is that wait.

The connection is a plain :mod:`sqlite3` connection confined to the writer's
thread (what aiosqlite does too), but a batch is a single hop to that thread
rather than one hop per statement, and its statements stay prepared in the
connection's cache. Nothing blocking runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from archive.index.batch import (
    Journal,
    Operation,
    Outcome,
    Refresh,
    Remove,
    Replace,
    apply_batch,
)
from archive.index.batch_sql import CLEAR_UNFLUSHED
from archive.index.connection import Durability, connect_writer
from archive.index.errors import IndexClosedError, IndexFlushError, IndexWriteError
from archive.index.records import InstanceRow, StoredInstance, WriterStats

__all__ = ["GroupCommitWriter"]

log = logging.getLogger("archive.index")

#: A call run on the writer thread between batches, with the connection.
Probe = Callable[[sqlite3.Connection], object]


@dataclass(slots=True)
class _Pending:
    operation: Operation | Probe
    future: asyncio.Future[Any] = field(repr=False)


class GroupCommitWriter:
    """Owns the write connection and commits queued operations in batches.

    Build with :meth:`open`; :meth:`close` commits everything queued before it, then
    closes the connection and lets its thread end.

    The batches are taken and committed by a thread of the writer's own, not by a
    task on the event loop: the next batch starts as soon as the last one is
    flushed, without waiting for the loop to get round to it (under load the loop
    is busy with the associations; that wait was ~0.4 ms of every 1.5 ms batch).
    The loop only puts operations on a thread-safe queue and settles each batch's
    futures in one callback.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_batch: int,
        flush: Callable[[], None] | None = None,
        *,
        journaled: bool = True,
    ) -> None:
        # Use open().
        self._loop = loop
        self._max_batch = max_batch
        self._flush = flush
        # Each batch names its adds and replaces in the journal (strict only).
        self._journaled = journaled
        # Set once a flush failed: what it raised (every later write fails).
        self._broken: BaseException | None = None
        # Recovery reads the journal back: until it is done, batches leave it alone.
        self._journal_held = False
        # The journal names this writer's own last batch, committed and flushed
        # (not a previous run's, which recovery has yet to read back, nor one a
        # failure left in doubt): a clean close may empty it.
        self._journal_ours = False
        # Put by the loop thread only; None (put by close) stops the writer thread.
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._closing = False
        self._stopped: asyncio.Future[None] = loop.create_future()
        self._commits = 0
        self._operations = 0
        self._failed_batches = 0
        self._largest_batch = 0

    @classmethod
    async def open(
        cls,
        path: str,
        *,
        durability: Durability,
        max_batch: int,
        flush: Callable[[], None] | None = None,
    ) -> GroupCommitWriter:
        """Connect, migrate (see ``schema.py``) and start the writer thread.

        ``flush`` (blocking, raises on failure) makes everything committed
        durable; given, it is called after every commit (see the module doc).
        """
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        loop = asyncio.get_running_loop()
        writer = cls(loop, max_batch, flush, journaled=durability == "strict")
        opened: asyncio.Future[None] = loop.create_future()
        thread = threading.Thread(
            target=writer._main,
            args=(path, durability, opened),
            name="index-writer",
            daemon=True,  # a node that never closed its index still exits
        )
        thread.start()
        try:
            await asyncio.shield(opened)
        except BaseException:
            if opened.done() and opened.exception() is not None:
                await writer._stopped  # the thread has ended, the connection closed
            else:
                await writer.close()  # cancelled while connecting
                if opened.done():
                    opened.exception()  # retrieved: a failed connect is not news now
            raise
        return writer

    @property
    def stats(self) -> WriterStats:
        return WriterStats(
            commits=self._commits,
            operations=self._operations,
            failed_batches=self._failed_batches,
            largest_batch=self._largest_batch,
        )

    async def add(self, item: StoredInstance) -> None:
        await self._submit(item)

    async def replace(self, item: StoredInstance) -> InstanceRow | None:
        result = await self._submit(Replace(item))
        assert result is None or isinstance(result, InstanceRow)
        return result

    async def refresh(self, item: StoredInstance) -> InstanceRow | None:
        result = await self._submit(Refresh(item))
        assert result is None or isinstance(result, InstanceRow)
        return result

    async def remove(self, sop_instance_uids: Sequence[str]) -> int:
        result = await self._submit(Remove(tuple(sop_instance_uids)))
        assert isinstance(result, int)
        return result

    async def on_connection(self, probe: Probe) -> object:
        """Run ``probe(connection)`` on the writer thread, outside any transaction.

        For diagnostics (a PRAGMA's value, a checkpoint) and small maintenance writes
        (each statement its own transaction: the connection is in autocommit mode,
        and such a write is not flushed). It runs before the
        operations taken in the same batch, even those queued before it; a
        transaction it leaves open is rolled back.
        """
        return await self._submit(probe)

    async def close(self) -> None:
        """Commit what is queued, stop the thread, close the connection. Idempotent."""
        if not self._closing:
            self._closing = True
            self._queue.put(None)
        await asyncio.shield(self._stopped)

    @property
    def broken(self) -> bool:
        """A flush failed: nothing more is written until a restart."""
        return self._broken is not None

    def broken_error(self) -> IndexFlushError:
        """A fresh error for one refused write (each raise adds to its traceback)."""
        error = IndexFlushError(f"ingest stopped until restart: flush failed: {self._broken}")
        error.__cause__ = self._broken
        return error

    def hold_journal(self, held: bool) -> None:
        """While held, batches neither empty nor fill the ``unflushed`` journal
        (recovery, which reads it back and may write meanwhile)."""
        self._journal_held = held

    async def clear_journal(self) -> None:
        """Commit (and flush) a batch that empties the journal."""
        await self._submit(Remove(()))

    # -- the loop's side ----------------------------------------------------------

    async def _submit(self, operation: Operation | Probe) -> object:
        if self._broken is not None:
            raise self.broken_error()
        if self._closing:
            raise IndexClosedError("the index is closed")
        pending = _Pending(operation, self._loop.create_future())
        self._queue.put(pending)
        # Cancelling the caller does not withdraw the operation: it may still be
        # committed. The store must treat a cancelled add as "state unknown".
        return await pending.future

    def _to_loop(self, callback: Callable[..., None], *args: Any) -> None:
        """From the writer thread: run ``callback`` on the loop (if it still runs)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(callback, *args)

    # -- the writer thread --------------------------------------------------------

    def _main(self, path: str, durability: Durability, opened: asyncio.Future[None]) -> None:
        try:
            conn = connect_writer(path, durability, flushed_after=bool(self._flush))
        except BaseException as exc:
            self._to_loop(_settle, [(opened, exc)])
            self._to_loop(_settle, [(self._stopped, None)])
            return
        self._to_loop(_settle, [(opened, None)])
        try:
            self._serve(conn)
        finally:
            try:
                self._close_connection(conn)
            finally:
                self._to_loop(_settle, [(self._stopped, None)])

    def _serve(self, conn: sqlite3.Connection) -> None:
        """Take batches off the queue and commit them until close's None."""
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    pending = self._queue.get_nowait()
                except queue.Empty:
                    break
                if pending is None:
                    stop = True
                    break
                batch.append(pending)
            try:
                self._commit(conn, batch)
            except BaseException as exc:  # a bug here must not strand the waiters
                self._journal_ours = False  # the batch's state is unknown: keep it
                self._to_loop(_settle, [(pending.future, exc) for pending in batch])
            if stop:
                return

    def _commit(self, conn: sqlite3.Connection, batch: list[_Pending]) -> None:
        probes = [(p.future, p.operation) for p in batch if not _is_operation(p.operation)]
        if probes:
            batch = [pending for pending in batch if _is_operation(pending.operation)]
            self._to_loop(_settle, [(future, _probe(probe, conn)) for future, probe in probes])
            if not batch:
                return
        if self._broken is not None:
            # Queued before the flush failed: refused like everything after it.
            self._to_loop(_settle, [(pending.future, self.broken_error()) for pending in batch])
            return
        operations = [p.operation for p in batch if _is_operation(p.operation)]
        if self._journal_held:
            journal: Journal = "keep"
        else:
            journal = "record" if self._journaled else "clear"
        try:
            outcomes: list[Outcome] = _commit_and_flush(conn, operations, self._flush, journal)
        except _FlushFailed as failed:
            # Committed, visible, but not known durable: nobody may be told Success,
            # and nothing may be committed after it (see IndexFlushError).
            self._failed_batches += 1
            cause = failed.__cause__
            self._broken = cause
            refusals: list[tuple[asyncio.Future[Any], object]] = []
            for pending in batch:
                unflushed = IndexFlushError(f"not durable, flush failed: {cause}")
                unflushed.__cause__ = cause
                refusals.append((pending.future, unflushed))
            self._to_loop(_settle, refusals)
            return
        except Exception as exc:
            # apply_batch rolled back: nothing of this batch is in the index.
            self._failed_batches += 1
            if len(batch) > 1 and not _resource_error(exc):
                # What failed may be one operation's values (or a bug they reach):
                # other associations' stores must not fail with it. Each is tried
                # again in a transaction of its own, in queue order.
                log.warning(
                    "index: a batch of %d operations failed (%s: %s); committing them one by one",
                    len(batch), type(exc).__name__, exc,
                )  # fmt: skip
                for pending in batch:
                    self._commit(conn, [pending])
                return
            message = f"index transaction of {len(batch)} operation(s) failed: {exc}"
            errors: list[tuple[asyncio.Future[Any], object]] = []
            for pending in batch:
                # One exception object per waiter: each raise adds its own traceback.
                error = IndexWriteError(message)
                error.__cause__ = exc
                errors.append((pending.future, error))
            self._to_loop(_settle, errors)
            return
        self._journal_ours = self._journal_ours or journal != "keep"
        self._commits += 1
        self._operations += len(batch)
        self._largest_batch = max(self._largest_batch, len(batch))
        self._to_loop(
            _settle,
            [(pending.future, outcome) for pending, outcome in zip(batch, outcomes, strict=True)],
        )

    def _close_connection(self, conn: sqlite3.Connection) -> None:
        try:
            if self._journaled and self._broken is None and self._journal_ours:
                # Everything committed is durable (flushed, or synced by its
                # COMMIT): a clean stop leaves no journal for the next start.
                conn.execute(CLEAR_UNFLUSHED)
        except sqlite3.Error as exc:
            # A full disk: the next start reads the journal and finds its
            # instances whole, as they are; nothing is lost by leaving it.
            log.warning("index: the journal of the last batch is left for the next start: %s", exc)
        finally:
            conn.close()


#: SQLite's primary result codes for a database that cannot be written now
#: (full, I/O, locked, read-only, damaged): every operation of a batch would fail
#: alone as it failed together, so its batch is not tried again one by one.
_RESOURCE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_NOTADB,
    }
)


def _resource_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError | MemoryError):
        return True
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _RESOURCE_CODES


def _is_operation(operation: Operation | Probe) -> TypeGuard[Operation]:
    return isinstance(operation, StoredInstance | Replace | Refresh | Remove)


def _probe(probe: Operation | Probe, conn: sqlite3.Connection) -> object:
    assert callable(probe)
    try:
        return probe(conn)
    except Exception as exc:
        return exc
    finally:
        # A batch of adds commits by itself only outside a transaction.
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def _settle(results: Sequence[tuple[asyncio.Future[Any], object]]) -> None:
    """On the loop: resolve each future with its outcome (an exception fails it)."""
    for future, outcome in results:
        # A waiter cancelled by its caller leaves a cancelled future: nothing to tell.
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class _FlushFailed(Exception):
    """The batch is committed; the flush after it raised (chained as the cause)."""


def _commit_and_flush(
    conn: sqlite3.Connection,
    operations: Sequence[Operation],
    flush: Callable[[], None] | None,
    journal: Journal,
) -> list[Outcome]:
    """The writer thread's hop: apply and commit the batch, then flush (if given).

    After a failed flush the rows the batch wrote are taken back: a new instance's,
    and a replacement's too (the version it replaced is still on disk, removed only
    after a flush; the next start-up indexes it again from the journal, which is
    left as it is).
    """
    outcomes = apply_batch(conn, operations, journal=journal)
    # Refreshes alone wrote no file, and either row is valid: no flush for them.
    if flush is not None and not all(isinstance(op, Refresh) for op in operations):
        try:
            flush()
        except BaseException as exc:  # whatever it is, the batch is not known durable
            written = tuple(
                op.item.attrs.sop_instance_uid
                if isinstance(op, Replace)
                else op.attrs.sop_instance_uid
                for op, outcome in zip(operations, outcomes, strict=True)
                if isinstance(op, Replace) or (isinstance(op, StoredInstance) and outcome is None)
            )
            with contextlib.suppress(Exception):  # then the next start-up does it
                apply_batch(conn, [Remove(written)], journal="keep")
            raise _FlushFailed() from exc
    return outcomes
