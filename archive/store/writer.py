"""One instance file being written: write-behind, placement, the page cache.

Write-behind. Fragments are queued as they arrive and a job in the store's
thread pool writes and hashes them while the next ones are received: at most
one job per instance runs at a time, it takes whatever has queued meanwhile, and
the receiver waits only when more than :data:`MAX_QUEUED` bytes are queued behind
it, so memory stays bounded whatever the object size (the fragments are views of
the received PDUs, which are immutable ``bytes``; a caller must never mutate a
fragment it handed to :meth:`FileWriter.write`). Instances below
:data:`WRITE_BEHIND` go to disk in the single trip that also links and flushes
them. The job that creates the part file also makes sure the instance's folder
exists, so for large instances both are done while the data is still arriving.

Page cache. A write-behind job asks Linux to start the writeback of what it
wrote (``POSIX_FADV_DONTNEED`` on dirty pages starts it, and drops nothing), so
the flush at the end waits for the tail only. Once the instance is durable and
indexed, :meth:`FileWriter.release` drops the file's pages from the cache, now
clean, unless the store keeps new files cached (``[store] cache_new_files``).
Why: an archive writes far more than it reads back soon, and every page of a
new file is a page the kernel must find. Pages it has just freed are reused at
once; fresh ones are not free on a virtual machine whose host takes free guest
memory back (virtio-balloon free page reporting, common in clouds): each costs
a fault in the host. Measured on such a VM: writing 0.5 MB into a new file took
~1.2-1.7 ms into fresh pages and ~0.1-0.25 ms into pages the previous file gave
back; CT ingest (medians of five alternating runs) went from 226 to 283
instances/s on one association and from 290 to 404/s on four. Files below
:data:`WRITE_BEHIND` keep their pages: a few pages are not worth the three
calls.

Disk full. A write that fails for want of space (ENOSPC, EDQUOT) does not
stop the writer: it writes nothing more, but goes on hashing what it is given,
and its finish raises the error with :attr:`FileWriter.digest` set, the whole
data set's. Every chunk is hashed before any call that could fail for space, so
that digest is whole: the store can still answer an instance it already holds
(identical content needs no new file), which is what a modality's retry queue
sends while the disk is full.

The rest (layout, folders, recovery, durability, the digest) is in ``files.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING

from archive.store import place
from archive.store.errors import AlreadyStored, StoreError
from archive.store.layout import PART, TMP, relative_path, replacement_path, safe_uid
from archive.store.layout import fsync_dir as _fsync_dir
from archive.store.layout import unlink_quietly as _unlink_quietly

if TYPE_CHECKING:
    from archive.store.files import FileStore

__all__ = ["MAX_QUEUED", "WRITE_BEHIND", "FileWriter"]

log = logging.getLogger("archive.store")

#: Queued bytes at which a write job starts before the data set is complete.
WRITE_BEHIND = 64 << 10
#: Bytes that may queue behind a running write job before the receiver waits:
#: two PDUs of the default 256 KiB maximum length.
MAX_QUEUED = 512 << 10


#: The write job's last step, given the chunks still queued (the data set's tail).
_Finisher = Callable[[list[bytes | memoryview]], object]


class FileWriter:
    """One instance being written: ``write`` fragments, ``finish``, ``place``, ``release``.

    Loop side and I/O side share the queue under ``_lock``; the descriptor, the
    hash and the placement state are touched by one job at a time only (a job
    is started only when none runs), and read by the loop after that job's
    future has completed.
    """

    def __init__(self, store: FileStore, sop_instance_uid: str, file_meta: bytes) -> None:
        if not safe_uid(sop_instance_uid):
            raise StoreError(f"SOP Instance UID {sop_instance_uid!r} cannot name a file")
        self.store = store
        self.uid = sop_instance_uid
        self.relative = relative_path(sop_instance_uid)
        self._token = os.urandom(4).hex()
        # Text, not pathlib: this runs on the event loop for every instance.
        self._tmp = os.path.join(store.root_text, TMP, f"{sop_instance_uid}.{self._token}{PART}")
        self._lock = threading.Lock()
        self._queue: list[bytes | memoryview] = [file_meta]
        self._queued = len(file_meta)
        self._busy = False
        self._failed: StoreError | None = None
        # Set once a write failed for want of space: from then on, hash only.
        self._full: StoreError | None = None
        self._finisher: _Finisher | None = None
        self._job: Future[object] | None = None
        self._meta_pending = True
        self._fd = -1
        self._offset = 0
        self._hash = hashlib.sha256()
        self.size = len(file_meta)
        self.digest = ""
        self._placed = False

    async def write(self, fragment: memoryview) -> None:
        """Queue a data set fragment; a job writes the queue behind the receiver.

        Waits only while more than :data:`MAX_QUEUED` bytes are queued behind a
        running job. Raises :class:`StoreError` if an earlier write failed.
        """
        size = len(fragment)
        self.size += size
        with self._lock:
            if self._failed is not None:
                raise self._failed
            self._queue.append(fragment)
            self._queued += size
            queued = self._queued
            start = not self._busy and queued >= WRITE_BEHIND
            if start:
                self._busy = True
        if start:
            self._job = self.store.submit(self._drain)
            return
        job = self._job
        if job is not None and job.done():
            job.result()  # raises what made the last job fail
        elif job is not None and queued > MAX_QUEUED:
            await asyncio.wrap_future(job)
            with self._lock:
                start = not self._busy and bool(self._queue)
                if start:
                    self._busy = True
            if start:
                self._job = self.store.submit(self._drain)

    async def _finish(self, finisher: _Finisher) -> object:
        """Write what is queued, then run ``finisher`` in the same job; its result."""
        with self._lock:
            if self._failed is not None:
                raise self._failed
            self._finisher = finisher
            job = self._job if self._busy else None
            if job is None:
                self._busy = True
        if job is None:
            job = self._job = self.store.submit(self._drain)
        try:
            result = await asyncio.wrap_future(job)
        except StoreError as exc:
            if exc.no_space:
                self.digest = self._hash.hexdigest()  # whole: see "Disk full"
            raise
        self.digest = self._hash.hexdigest()
        return result

    def _drain(self) -> object:
        """The write job: write and hash the queue until empty, or hand it to the finisher."""
        try:
            while True:
                with self._lock:
                    chunks, self._queue = self._queue, []
                    self._queued = 0
                    finisher, self._finisher = self._finisher, None
                    if not chunks and finisher is None:
                        self._busy = False
                        return None
                if finisher is None:
                    # Behind the receiver: start the writeback now (see _write_sync).
                    self._write_sync(chunks, early=True)
                    continue
                try:
                    return finisher(chunks)  # the data set is complete: the last chunks
                finally:
                    with self._lock:
                        self._busy = False
        except BaseException as exc:
            with self._lock:
                # Sticky: what failed to reach the file was hashed already, so
                # nothing written after it may ever be placed.
                self._failed = _sticky(exc)
                self._queue = []
                self._queued = 0
                self._busy = False
            raise

    def _write_sync(self, chunks: list[bytes | memoryview], *, early: bool = False) -> None:
        # Hashed first, whatever the write does (module docstring, "Disk full").
        self._hash_data_set(chunks)
        if self._full is not None:
            return
        try:
            if self._fd < 0:
                self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                # While the data is arriving, not once it has all arrived.
                self.store.ensure_folder((self.store.root / self.relative).parent)
            start = self._offset
            self._offset += place.write_all(self._fd, chunks)
            if early and self.store.durable:
                # Linux starts the writeback of these pages (dirty, they stay
                # cached: release() drops them once clean), so the flush at the
                # end (fsync, or the batch's syncfs) waits for the tail, not the
                # whole file: 0.15 instead of 0.6 ms for 0.5 MB.
                os.posix_fadvise(self._fd, start, self._offset - start, os.POSIX_FADV_DONTNEED)
        except OSError as exc:
            error = _store_error(exc, "write")
            if not error.no_space:
                raise error from exc
            error.__cause__ = exc
            self._full = error  # raised by the finisher, once all is hashed

    def _raise_if_full(self) -> None:
        """In a finisher, all hashed: the disk filled up on the way? Raise it."""
        if self._full is None:
            return
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = -2
        raise self._full

    def _hash_data_set(self, chunks: list[bytes | memoryview]) -> None:
        """Hash what is about to be written, but the File Meta (queued first)."""
        body: Sequence[bytes | memoryview] = chunks
        if self._meta_pending:
            self._meta_pending = False
            body = chunks[1:]
        for chunk in body:
            self._hash.update(chunk)

    def _write_and_close_sync(self, chunks: list[bytes | memoryview]) -> None:
        """Finisher: write the tail, flush (strict) and close the part file."""
        if chunks:
            self._write_sync(chunks)
        self._raise_if_full()
        self._close_sync()

    def _close_sync(self) -> None:
        """Flush (strict) and close the part file."""
        if self._fd < 0:
            return
        try:
            if self.store.sync_each:
                os.fsync(self._fd)
        except OSError as exc:
            raise _store_error(exc, "flush") from exc
        finally:
            os.close(self._fd)
            self._fd = -2

    def _place_first_sync(self, chunks: list[bytes | memoryview]) -> bool:
        """Finisher: write the tail and place a first version (False: the place is taken)."""
        if not self.store.sync_each and self._fd != -2:  # -2: finished (closed) already
            return self._write_and_place_sync(chunks)
        if chunks:
            self._write_sync(chunks)
        self._raise_if_full()
        # Link first, flush after: the file's fsync then carries the new directory
        # entry along on most filesystems, so the folder's fsync that follows
        # (kept: POSIX asks for it) finds little left to do. The file is at its
        # place before it is durable, but unindexed, so invisible; after a crash
        # the marker in tmp/ sends recovery to check it against the index.
        try:
            self._link_sync(self.relative)
        except AlreadyStored:
            self._close_sync()  # flushed: the duplicate rules may place it yet
            return False
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -2
            raise
        self._placed = True  # linked: from here on, to be taken back on failure
        try:
            self._close_sync()
            if self.store.sync_each:
                _fsync_dir((self.store.root / self.relative).parent)
        except OSError as exc:
            self._take_back_or_leave()  # not durable, so not placed (see _place_sync)
            raise _store_error(exc, "flush") from exc
        except StoreError:
            self._take_back_or_leave()
            raise
        return True

    def _write_and_place_sync(self, chunks: list[bytes | memoryview]) -> bool:
        """Unflushed placement (batched or fast): tail, folders, link and close in one call.

        :func:`archive.store.place.write_and_link`: in C, one release of the GIL
        for all of it. A first version's folders are made with it (their entries
        are flushed by the batch's flush, like the file's).
        """
        self._hash_data_set(chunks)
        self._raise_if_full()
        # A large file's tail starts its writeback in the call, like the rest of
        # the file did behind the receiver: it then runs while the index writes
        # the row, instead of in the flush after it.
        advise_from = self._offset if self.store.durable and self.size >= WRITE_BEHIND else -1
        folders = self.store.folders_to_make((self.store.root / self.relative).parent)
        fd, self._fd = self._fd, -2  # closed by the call, whatever happens
        try:
            placed = place.write_and_link(
                fd,
                self._tmp,
                chunks,
                os.path.join(self.store.root_text, self.relative),
                [str(folder) for folder in folders],
                advise_from,
            )
        except OSError as exc:
            raise _store_error(exc, "store") from exc
        self.store.folders_made(folders)
        self._placed = placed
        return placed

    async def finish(self) -> str:
        """Write what is left, flush it to stable storage; returns the SHA-256 hex digest."""
        await self._finish(self._write_and_close_sync)
        return self.digest

    async def finish_and_place(self) -> bool:
        """:meth:`finish`, then place a first version, in the write job's last trip.

        The common case (a new instance) thus costs one hop after the last
        fragment. Returns False, with nothing placed, if a file is already at
        the instance's first place; the caller then decides (duplicate rules)
        and may :meth:`place` a replacement.
        """
        placed = await self._finish(self._place_first_sync)
        assert isinstance(placed, bool)
        return placed

    async def unplace(self) -> None:
        """Take back a placement (the index refused it); the part file stays.

        Raises :class:`StoreError` if the link cannot be removed (EIO): the
        instance is not stored then (0xA700), and the writer is still placed,
        so :meth:`discard` tries again, or keeps the marker for recovery.
        """
        if self._placed:
            # No flush: should the link outlive a crash, the marker (still in
            # tmp/) has recovery remove it, as nothing indexes it.
            try:
                await self.store.run(self._take_back_sync)
            except OSError as exc:
                raise _store_error(exc, "take back") from exc

    async def place(self, *, replace: bool = False) -> str:
        """Link the finished file into place; returns its path (relative).

        A first version goes to :func:`relative_path`; a replacement to
        :func:`replacement_path`, beside the version it replaces, which the
        caller removes (:meth:`FileStore.remove_other_versions`) once the index
        points at the new one.
        """
        relative = replacement_path(self.uid, self._token) if replace else self.relative
        await self.store.run(self._place_sync, relative)
        return relative

    def _link_sync(self, relative: str) -> None:
        final = self.store.root / relative
        try:
            self.store.ensure_folder(final.parent)
            os.link(self._tmp, final)
        except FileExistsError as exc:
            raise AlreadyStored(f"{relative} exists") from exc
        except OSError as exc:
            raise _store_error(exc, "place") from exc

    def _place_sync(self, relative: str) -> None:
        self._link_sync(relative)
        self.relative = relative
        self._placed = True
        if self.store.sync_each:
            try:
                _fsync_dir((self.store.root / relative).parent)
            except OSError as exc:
                # Not known to be durable, so not placed: take the link back, or
                # the UID could never be stored again.
                self._take_back_or_leave()
                raise _store_error(exc, "flush the folder of") from exc

    def _take_back_sync(self) -> None:
        """Remove the placed link (OSError if it cannot be). Placed until it is
        gone: whatever fails, :meth:`discard` still knows there is a file to remove."""
        _unlink_quietly(self.store.root / self.relative)
        self._placed = False
        self.relative = relative_path(self.uid)

    def _take_back_or_leave(self) -> None:
        """:meth:`_take_back_sync` on the way out of a failure, whose error is the
        one to report: the link left is for :meth:`discard` to try again."""
        try:
            self._take_back_sync()
        except OSError as exc:
            log.warning(
                "instance %s: placed file %s not taken back yet: %s",
                self.uid,
                self.relative,
                exc.strerror or exc,
            )

    def release(self) -> Future[None]:
        """The index holds the instance now: drop the in-flight marker.

        Nobody waits for it (a marker that outlives a crash only makes recovery
        check an instance already indexed); markers released together go in
        one job, which the pool finishes before :meth:`FileStore.close` returns.
        That job also drops the file's pages from the page cache (module
        docstring, "Page cache"), if it is at least :data:`WRITE_BEHIND` long.
        """
        drop = self.store.drop_released and self.size >= WRITE_BEHIND
        return self.store.release(self._tmp, drop_cache=drop)

    async def discard(self) -> None:
        """Undo everything: close and remove the part file, and a placed new file.

        Waits for a running write job first; runs to its end even if the caller
        is cancelled meanwhile (a cancelled discard would leave the part file).
        Never raises for a file it cannot remove (EIO, EROFS): it is called on
        the way to the store's answer, which such an error must not replace (a
        failure stays 0xA700, a Success a Success). What is left is logged and
        the next start removes it: the part file is a marker in ``tmp/``, and
        it is kept while a placed file is left, so that recovery finds that file
        (placed, no row names it) and removes it too.
        """
        with self._lock:
            self._queue = []
            self._queued = 0
            job = self._job
        if job is None and not self._placed:
            return  # nothing reached the disk yet
        cleanup = self.store.submit(self._discard_sync, job)
        await asyncio.shield(asyncio.wrap_future(cleanup))

    def _discard_sync(self, job: Future[object] | None) -> None:
        if job is not None:
            wait([job])  # the write job owns the descriptor until it returns
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -2
        if self._placed:
            # Always a name of its own (a first version, or a replacement beside
            # the version still indexed): removing it touches nothing acknowledged.
            try:
                self._take_back_sync()
            except OSError as exc:
                log.warning(
                    "instance %s: discarded file %s not removed, its marker kept "
                    "for the next start to remove it: %s",
                    self.uid,
                    self.relative,
                    exc.strerror or exc,
                )
                return
        try:
            _unlink_quietly(self._tmp)
        except OSError as exc:
            log.warning(
                "instance %s: part file not removed, left for the next start: %s",
                self.uid,
                exc.strerror or exc,
            )


def _sticky(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return StoreError(str(exc), no_space=exc.no_space)
    return StoreError(f"instance file not written: {exc!r}")


def _store_error(exc: OSError, what: str) -> StoreError:
    no_space = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return StoreError(f"cannot {what} instance file: {exc.strerror or exc}", no_space=no_space)
