"""The group-commit writer: one task, one connection, one transaction per batch.

Theory of operation. Every change to the index (add, replace, remove) is an
operation put on a queue together with a future. One task owns the only write
connection; it waits for the first operation, takes whatever else is queued (up to
``max_batch``), has the whole batch applied in one ``BEGIN IMMEDIATE`` ... ``COMMIT``
(``batch.apply_batch``) and then resolves every future. A C-STORE answers Success
only after its future resolves, so nothing acknowledged is ever lost, yet one WAL
sync covers the whole batch: under load the batches grow by themselves and the
commit rate stays near the disk's sync rate while the record rate climbs.

The queue is unbounded on purpose: every submitter waits for its own commit, so at
most one operation per concurrent store is ever queued; backpressure is that wait.

The connection is a plain :mod:`sqlite3` connection confined to one worker thread
(what aiosqlite does too), but a batch is a single hop to that thread rather than
one hop per statement, and its statements stay prepared in the connection's cache.
Nothing blocking runs on the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from archive.index.batch import Operation, Outcome, Remove, Replace, apply_batch
from archive.index.connection import Durability, connect_writer
from archive.index.errors import IndexClosedError, IndexWriteError
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
        self, executor: ThreadPoolExecutor, conn: sqlite3.Connection, max_batch: int
    ) -> None:
        # Use open(). ``conn`` is only ever touched on ``executor``'s one thread.
        self._executor = executor
        self._conn = conn
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._inflight: list[_Pending] = []
        self._commits = 0
        self._operations = 0
        self._failed_batches = 0
        self._largest_batch = 0

    @classmethod
    async def open(cls, path: str, *, durability: Durability, max_batch: int) -> GroupCommitWriter:
        """Connect, migrate (see ``schema.py``) and start the commit task."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-writer")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, connect_writer, path, durability)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        writer = cls(executor, conn, max_batch)
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
                await loop.run_in_executor(self._executor, self._conn.close)
            finally:
                self._executor.shutdown(wait=False)

    # -- internals ----------------------------------------------------------------

    async def _submit(self, operation: Operation) -> object:
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
                if stop:
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
                    _fail(queued.future, IndexClosedError(message))

    async def _commit(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        operations = [pending.operation for pending in batch]
        try:
            outcomes: list[Outcome] = await loop.run_in_executor(
                self._executor, apply_batch, self._conn, operations
            )
        except Exception as exc:
            # apply_batch rolled back: nothing of this batch is in the index.
            self._failed_batches += 1
            message = f"index transaction of {len(batch)} operation(s) failed: {exc}"
            for pending in batch:
                # One exception object per waiter: each raise adds its own traceback.
                error = IndexWriteError(message)
                error.__cause__ = exc
                _fail(pending.future, error)
            return
        self._commits += 1
        self._operations += len(batch)
        self._largest_batch = max(self._largest_batch, len(batch))
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                _fail(pending.future, outcome)
            elif not pending.future.done():
                pending.future.set_result(outcome)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    # A waiter cancelled by its caller leaves a cancelled future: nothing to tell.
    if not future.done():
        future.set_exception(error)
