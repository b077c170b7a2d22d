"""The group-commit writer: one task, one connection, one transaction per batch.

Theory of operation. Every change to the index (add, replace, remove) is an
operation put on a queue together with a future. One task owns the only write
connection; it waits for the first operation, takes whatever else is queued (up to
``max_batch``), has the whole batch applied in one ``BEGIN IMMEDIATE`` ... ``COMMIT``
(``batch.apply_batch``) and then resolves every future. A C-STORE answers Success
only after its future resolves, so nothing acknowledged is ever lost, yet one WAL
sync covers the whole batch: under load the batches grow by themselves and the
commit rate stays near the disk's sync rate while the record rate climbs.

With a ``flush`` (the node's ``flush = "batch"``) the connection commits with
``synchronous=NORMAL`` and the writer thread calls ``flush`` right after each
COMMIT, in the same hop: one flush of the filesystem makes the batch's files and
its log durable together, and only then are the futures resolved. The batch also
records its UIDs in the ``unflushed`` journal (``batch.py``) for recovery. A
failed flush stops the writer for good (:class:`IndexFlushError`): the OS may
have dropped the pages it could not write, so a later flush proves nothing. Its
batch's new rows are taken back at once (their stores are answered 0xA700 and
their files discarded), and the journal stays for the next start-up to check
(which also gives a refused replacement's place back to the version it replaced).

The queue is unbounded on purpose: every submitter waits for its own commit, so at
most one operation per concurrent store is ever queued; backpressure is that wait.

The connection is a plain :mod:`sqlite3` connection confined to one worker thread
(what aiosqlite does too), but a batch is a single hop to that thread rather than
one hop per statement, and its statements stay prepared in the connection's cache.
Nothing blocking runs on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from archive.index.batch import (
    CLEAR_UNFLUSHED,
    Journal,
    Operation,
    Outcome,
    Remove,
    Replace,
    apply_batch,
)
from archive.index.connection import Durability, connect_writer
from archive.index.errors import IndexClosedError, IndexFlushError, IndexWriteError
from archive.index.records import InstanceRow, StoredInstance, WriterStats

__all__ = ["GroupCommitWriter"]


@dataclass(slots=True)
class _Pending:
    operation: Operation
    future: asyncio.Future[Any] = field(repr=False)


class GroupCommitWriter:
    """Owns the write connection and commits queued operations in batches.

    Build with :meth:`open`; :meth:`close` commits everything queued before it, then
    closes the connection and lets its thread end.
    """

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        conn: sqlite3.Connection,
        max_batch: int,
        flush: Callable[[], None] | None = None,
    ) -> None:
        # Use open(). ``conn`` is only ever touched on ``executor``'s one thread.
        self._executor = executor
        self._conn = conn
        self._max_batch = max_batch
        self._flush = flush
        # Set once a flush failed: what it raised (every later write fails).
        self._broken: BaseException | None = None
        # Recovery reads the journal back: until it is done, batches leave it alone.
        self._journal_held = False
        # The last batch was committed and flushed (or nothing was written yet).
        self._clean = True
        # The journal names this writer's own last batch (not a previous run's,
        # which recovery has yet to read back): a clean close may empty it.
        self._journal_ours = False
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._inflight: list[_Pending] = []
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
        """Connect, migrate (see ``schema.py``) and start the commit task.

        ``flush`` (blocking, raises on failure) makes everything committed
        durable; given, it is called after every commit (see the module doc).
        """
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-writer")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(
                executor,
                functools.partial(connect_writer, path, durability, flushed_after=bool(flush)),
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        writer = cls(executor, conn, max_batch, flush)
        writer._task = asyncio.create_task(writer._run(), name="index-group-commit")
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

    async def remove(self, sop_instance_uids: Sequence[str]) -> int:
        result = await self._submit(Remove(tuple(sop_instance_uids)))
        assert isinstance(result, int)
        return result

    async def close(self) -> None:
        """Commit what is queued, stop the task, close the connection. Idempotent."""
        self._closing = True
        task, self._task = self._task, None
        if task is None:
            return
        try:
            if not task.done():
                self._queue.put_nowait(None)
            await task
        finally:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self._close_sync)
            finally:
                self._executor.shutdown(wait=False)

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

    def _close_sync(self) -> None:
        try:
            if self._flush is not None and self._clean and self._journal_ours:
                # Everything committed was flushed: a clean stop leaves no journal
                # for the next start to read back.
                self._conn.execute(CLEAR_UNFLUSHED)
        finally:
            self._conn.close()

    # -- internals ----------------------------------------------------------------

    async def _submit(self, operation: Operation) -> object:
        if self._broken is not None:
            raise self.broken_error()
        if self._closing or self._task is None or self._task.done():
            raise IndexClosedError("the index is closed")
        pending = _Pending(operation, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(pending)
        # Cancelling the caller does not withdraw the operation: it may still be
        # committed. The store must treat a cancelled add as "state unknown".
        return await pending.future

    async def _run(self) -> None:
        try:
            while True:
                first = await self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        pending = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if pending is None:
                        stop = True
                        break
                    batch.append(pending)
                self._inflight = batch
                await self._commit(batch)
                self._inflight = []
                if stop or self._broken is not None:
                    return
        finally:
            # Reached on close, on cancellation and on a bug in this loop: whatever
            # is still waiting learns that it was not (knowingly) committed.
            self._closing = True
            message = "the index writer stopped before this was committed"
            for pending in self._inflight:
                _fail(pending.future, IndexClosedError(message))
            while not self._queue.empty():
                queued = self._queue.get_nowait()
                if queued is not None:
                    _fail(
                        queued.future,
                        self.broken_error() if self._broken else IndexClosedError(message),
                    )

    async def _commit(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        operations = [pending.operation for pending in batch]
        if self._journal_held:
            journal: Journal = "keep"
        else:
            journal = "clear" if self._flush is None else "record"
        self._clean = False
        try:
            outcomes: list[Outcome] = await loop.run_in_executor(
                self._executor, _commit_and_flush, self._conn, operations, self._flush, journal
            )
        except _FlushFailed as failed:
            # Committed, visible, but not known durable: nobody may be told Success,
            # and nothing may be committed after it (see IndexFlushError).
            self._failed_batches += 1
            cause = failed.__cause__
            self._broken = cause
            for pending in batch:
                unflushed = IndexFlushError(f"not durable, flush failed: {cause}")
                unflushed.__cause__ = cause
                _fail(pending.future, unflushed)
            return
        except Exception as exc:
            # apply_batch rolled back: nothing of this batch is in the index.
            self._clean = True
            self._failed_batches += 1
            message = f"index transaction of {len(batch)} operation(s) failed: {exc}"
            for pending in batch:
                # One exception object per waiter: each raise adds its own traceback.
                error = IndexWriteError(message)
                error.__cause__ = exc
                _fail(pending.future, error)
            return
        self._clean = True
        self._journal_ours = self._journal_ours or journal != "keep"
        self._commits += 1
        self._operations += len(batch)
        self._largest_batch = max(self._largest_batch, len(batch))
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                _fail(pending.future, outcome)
            elif not pending.future.done():
                pending.future.set_result(outcome)


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
    if flush is not None:
        try:
            flush()
        except Exception as exc:
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


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    # A waiter cancelled by its caller leaves a cancelled future: nothing to tell.
    if not future.done():
        future.set_exception(error)
