"""Instance files under the data folder: streaming writer, atomic placement, recovery.

Theory of operation. A received instance is written to ``tmp/<uid>.<token>.part``
(preamble and File Meta first, then the data set fragments, hashed on the way),
hard-linked to its final place ``instances/ab/cd/<uid>.dcm`` (``ab/cd`` from a hash
of the SOP Instance UID, so no folder grows past a few dozen entries per million
instances), and flushed to stable storage with its folder. The temporary name
stays linked until the index row is committed: it is the journal of what was in
flight. A replacement never overwrites the version the index holds: it is placed
beside it (:func:`replacement_path`), and the old file goes only after the index
commit. Nothing half-written is ever at a final path under a committed row
unless its marker is still in ``tmp/``, and recovery costs O(in flight), not
O(archive).

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

Folders. ``instances/ab/cd/`` are created on first use with ``os.mkdir`` and the
folder that received the new entry is flushed (POSIX makes a new directory entry
durable only through an fsync of the directory holding it; batched, the next
:meth:`FileStore.flush_all` does it); the folders known
to exist are remembered for the life of the store, so an instance costs no
folder work once its leaf exists.

Recovery. :meth:`FileStore.in_flight` (``inflight.py``) lists the markers left in ``tmp/`` and,
for each, the final path that is the same inode (if any). It does not decide:
the marker says only that the file, the folder flush or the index commit may not
have completed, and whether the index row exists and matches the file is for the
caller to check (``archive/node.py``, ``Storage.recover``), after which
:meth:`FileStore.clear_in_flight` removes the markers. See there for the rules.

Durability ``strict`` flushes file and folders (fsync) before a placement is
reported; ``fast`` skips every flush. ``strict`` with ``batched`` (the node's
default, ``flush = "batch"``) leaves the flushing of new files and folders to
:meth:`FileStore.flush_all`, one ``syncfs`` that the index's group commit runs
after each batch (``archive/index/writer.py``) and before any of its stores is
answered: the same promise, one device flush per batch instead of two or more
per instance. Removals are flushed one by one in both cases.

The digest is SHA-256 of the data set bytes as received (not the File Meta,
which names the sender): hardware-accelerated on current CPUs (~1.2 GB/s here),
collision-resistant, and the checksum object stores and DICOMweb peers use.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TypeVar

from archive.store import place
from archive.store.errors import AlreadyStored, StoreError
from archive.store.inflight import InFlight, clear_markers, scan_in_flight
from archive.store.layout import (
    INSTANCES,
    PART,
    TMP,
    is_version_name,
    relative_path,
    replacement_path,
    safe_uid,
)
from archive.store.layout import fsync_dir as _fsync_dir
from archive.store.layout import unlink_quietly as _unlink_quietly
from archive.store.lock import lock_data_folder, unlock_data_folder
from archive.store.sync import load_syncfs

__all__ = [
    "INSTANCES",
    "MAX_QUEUED",
    "TMP",
    "WRITE_BEHIND",
    "FileStore",
    "FileWriter",
    "InFlight",
    "relative_path",
    "replacement_path",
    "safe_uid",
]

T = TypeVar("T")

#: What syncfs answers on a filesystem that does not implement it.
_NO_SYNCFS = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})

#: Queued bytes at which a write job starts before the data set is complete.
WRITE_BEHIND = 64 << 10
#: Bytes that may queue behind a running write job before the receiver waits:
#: two PDUs of the default 256 KiB maximum length.
MAX_QUEUED = 512 << 10


class FileStore:
    """The filesystem store of one data folder."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        durable: bool,
        batched: bool = False,
        workers: int = 16,
        cache_new_files: bool = False,
    ) -> None:
        self.root = Path(root)
        self.root_text = str(self.root)
        self.durable = durable
        # Only durable files are clean when released: dropping dirty pages
        # would only start their writeback.
        self.drop_released = durable and not cache_new_files
        # Batched only where syncfs exists; elsewhere every file is flushed alone.
        self._syncfs = load_syncfs() if durable and batched else None
        self._flush_fds: list[int] = []
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive-io")
        self._folders: set[Path] = set()
        self._lock = -1  # the data folder's lock (lock.py), held while open
        self._folder_lock = threading.Lock()
        self._released: list[tuple[str | Path, bool]] = []
        self._release_job: Future[None] | None = None
        self._release_lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run a blocking call in the store's I/O pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """Run a blocking call in the pool without waiting for it."""
        return self._pool.submit(fn, *args)

    async def open(self) -> None:
        await self.run(self._open_sync)

    def _open_sync(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = lock_data_folder(self.root)
        try:
            for name in (INSTANCES, TMP):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(self.root / name)
            if self.durable:
                # Once per start: these entries may be new (first start).
                _fsync_dir(self.root)
            if self.batched:
                self._add_flush_fd(str(self.root))
            for name in (INSTANCES, TMP):  # links to other disks: flushed too
                self.also_flush(self.root / name)
        except BaseException:
            unlock_data_folder(self._lock)  # a failed open must not keep the folder
            self._lock = -1
            raise
        self._folders.add(self.root / INSTANCES)

    def _add_flush_fd(self, folder: str) -> None:
        """Have :meth:`flush_all` flush ``folder``'s filesystem, flushing it once now.

        A filesystem that cannot (ENOSYS, EINVAL, EOPNOTSUPP from an old FUSE,
        say) turns batching off for the whole store: each file is then flushed on
        its own. Any other error is the disk's, and the open fails with it.
        """
        assert self._syncfs is not None
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        self._flush_fds.append(fd)
        try:
            self._syncfs(fd)
        except OSError as exc:
            if exc.errno not in _NO_SYNCFS:
                raise
            self._syncfs = None
            for known in self._flush_fds:
                os.close(known)
            self._flush_fds = []

    @property
    def batched(self) -> bool:
        """New files and folders are flushed by :meth:`flush_all`, not one by one."""
        return self._syncfs is not None

    @property
    def sync_each(self) -> bool:
        """New files and folders are flushed one by one (strict, not batched)."""
        return self.durable and self._syncfs is None

    async def in_flight(self) -> list[InFlight]:
        """The markers a crash left in ``tmp/`` (``inflight.py``); debris is removed."""
        return await self.run(scan_in_flight, self.root)

    async def clear_in_flight(self, markers: Sequence[InFlight]) -> None:
        """Remove the markers once recovery has dealt with them, and flush ``tmp/``."""
        await self.run(
            functools.partial(
                clear_markers, self.root, [m.marker for m in markers], durable=self.durable
            )
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for fd in self._flush_fds:
            os.close(fd)
        self._flush_fds = []
        if self._lock >= 0:
            unlock_data_folder(self._lock)
            self._lock = -1

    def flush_all(self) -> None:
        """Flush the data folder's filesystem: every file and folder written so far
        is durable when this returns (blocking; raises :class:`StoreError`).

        A no-op unless :attr:`batched`. The descriptor was opened before any
        instance was written, so a writeback error since then is reported here.
        """
        if self._syncfs is None:
            return
        try:
            for fd in self._flush_fds:
                self._syncfs(fd)
        except OSError as exc:
            raise StoreError(f"cannot flush the data folder: {exc.strerror or exc}") from exc

    def also_flush(self, path: str | os.PathLike[str]) -> None:
        """Have :meth:`flush_all` flush the filesystem of ``path`` (a file or a
        folder) too, if it is another one (a symbolic link to another disk, say);
        that filesystem is tried once, as the data folder's was. Blocking."""
        if not self.batched:
            return
        target = os.path.realpath(path)
        folder = target if os.path.isdir(target) else os.path.dirname(target)
        known = {os.fstat(fd).st_dev for fd in self._flush_fds}
        if os.stat(folder).st_dev not in known:
            self._add_flush_fd(folder)

    def begin(self, sop_instance_uid: str, file_meta: bytes) -> FileWriter:
        """Start writing one instance; ``file_meta`` is its preamble and group 0002."""
        return FileWriter(self, sop_instance_uid, file_meta)

    def path(self, relative: str) -> str:
        """The absolute path of a stored file (a str: pathlib costs ~15 µs a file)."""
        return os.path.join(self.root_text, relative)

    async def remove(self, relative: str) -> None:
        await self.run(self._remove_sync, relative)

    def _remove_sync(self, relative: str) -> None:
        path = self.root / relative
        _unlink_quietly(path)
        if self.durable:
            _fsync_dir(path.parent)

    def ensure_folder(self, folder: Path) -> None:
        """Make ``folder`` (under ``instances/``) exist, its entry durable (blocking;
        under :attr:`batched`, durable at the next :meth:`flush_all`).

        Serialised by a lock: two threads must not both believe a folder's entry
        is durable before the one that created it has flushed its parent.
        """
        if folder in self._folders:
            return
        with self._folder_lock:
            if folder not in self._folders:
                self._make_folder(folder)

    def _make_folder(self, folder: Path) -> None:
        parent = folder.parent
        if parent not in self._folders:
            self._make_folder(parent)
        # An existing folder is flushed into its parent all the same: a crash
        # may have come between another process's mkdir and its flush.
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)
        if self.sync_each:
            _fsync_dir(parent)
        self._folders.add(folder)

    def folders_to_make(self, folder: Path) -> tuple[Path, ...]:
        """``folder`` and its parents under the data folder not known to exist, outermost first.

        For a caller that makes them itself and flushes them later (batched or
        fast only: :meth:`ensure_folder` flushes each one under ``sync_each``);
        it reports them made with :meth:`folders_made`.
        """
        missing: list[Path] = []
        while folder not in self._folders and folder != self.root:
            missing.append(folder)
            folder = folder.parent
        return tuple(reversed(missing))

    def folders_made(self, folders: Sequence[Path]) -> None:
        """These folders (from :meth:`folders_to_make`) exist now."""
        self._folders.update(folders)

    def release(self, *markers: str | Path, drop_cache: bool = False) -> Future[None]:
        """Unlink in-flight markers soon; markers released meanwhile go in one job.

        With ``drop_cache``, each marker's file (durable, so its pages are
        clean) leaves the page cache first; see the module's "Page cache". The
        future is that job's: done once these markers are gone.
        """
        with self._release_lock:
            self._released.extend((marker, drop_cache) for marker in markers)
            if self._release_job is None:
                self._release_job = self._pool.submit(self._release_sync)
            return self._release_job

    def _release_sync(self) -> None:
        with self._release_lock:
            markers, self._released = self._released, []
            self._release_job = None
        for marker, drop_cache in markers:
            if drop_cache:
                _drop_cached(marker)
            _unlink_quietly(marker)

    async def remove_other_versions(self, sop_instance_uid: str, keep: str) -> None:
        """Delete every file of this instance but ``keep`` (after a replacement)."""
        await self.run(self._remove_other_versions_sync, sop_instance_uid, keep)

    def _remove_other_versions_sync(self, uid: str, keep: str) -> None:
        removed = False
        for relative in self._version_paths(uid):
            if relative != keep:
                _unlink_quietly(self.root / relative)
                removed = True
        if removed and self.durable:
            _fsync_dir((self.root / relative_path(uid)).parent)

    async def versions(self, sop_instance_uid: str) -> list[str]:
        """Every file of this instance on disk (first place and replacements),
        relative to the data folder, the earliest written first."""
        return await self.run(self._versions_sync, sop_instance_uid)

    def _versions_sync(self, uid: str) -> list[str]:
        found: list[tuple[float, str]] = []
        for relative in self._version_paths(uid):
            with contextlib.suppress(FileNotFoundError):
                found.append((os.stat(self.root / relative).st_mtime, relative))
        return [relative for _, relative in sorted(found)]

    def _version_paths(self, uid: str) -> list[str]:
        folder = relative_path(uid).rpartition("/")[0]
        try:
            names = os.listdir(self.root / folder)
        except FileNotFoundError:
            return []
        return [f"{folder}/{name}" for name in names if is_version_name(uid, name)]


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
        result = await asyncio.wrap_future(job)
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
        try:
            if self._fd < 0:
                self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                # While the data is arriving, not once it has all arrived.
                self.store.ensure_folder((self.store.root / self.relative).parent)
            self._hash_data_set(chunks)
            start = self._offset
            self._offset += place.write_all(self._fd, chunks)
            if early and self.store.durable:
                # Linux starts the writeback of these pages (dirty, they stay
                # cached: release() drops them once clean), so the flush at the
                # end (fsync, or the batch's syncfs) waits for the tail, not the
                # whole file: 0.15 instead of 0.6 ms for 0.5 MB.
                os.posix_fadvise(self._fd, start, self._offset - start, os.POSIX_FADV_DONTNEED)
        except OSError as exc:
            raise _store_error(exc, "write") from exc

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
        final = self.store.root / self.relative
        try:
            self._close_sync()
            if self.store.sync_each:
                _fsync_dir(final.parent)
        except OSError as exc:
            _unlink_quietly(final)  # not durable, so not placed (see _place_sync)
            raise _store_error(exc, "flush") from exc
        except StoreError:
            _unlink_quietly(final)
            raise
        self._placed = True
        return True

    def _write_and_place_sync(self, chunks: list[bytes | memoryview]) -> bool:
        """Unflushed placement (batched or fast): tail, folders, link and close in one call.

        :func:`archive.store.place.write_and_link`: in C, one release of the GIL
        for all of it. A first version's folders are made with it (their entries
        are flushed by the batch's flush, like the file's).
        """
        self._hash_data_set(chunks)
        folders = self.store.folders_to_make((self.store.root / self.relative).parent)
        fd, self._fd = self._fd, -2  # closed by the call, whatever happens
        try:
            placed = place.write_and_link(
                fd,
                self._tmp,
                chunks,
                os.path.join(self.store.root_text, self.relative),
                [str(folder) for folder in folders],
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
        """Take back a placement (the index refused it); the part file stays."""
        if self._placed:
            self._placed = False
            # No flush: should the link outlive a crash, the marker (still in
            # tmp/) has recovery remove it, as nothing indexes it.
            await self.store.run(_unlink_quietly, self.store.root / self.relative)
            self.relative = relative_path(self.uid)

    async def place(self, *, replace: bool = False) -> str:
        """Link the finished file into place; returns its path (relative).

        A first version goes to :func:`relative_path`; a replacement to
        :func:`replacement_path`, beside the version it replaces, which the
        caller removes (:meth:`FileStore.remove_other_versions`) once the index
        points at the new one.
        """
        relative = replacement_path(self.uid, self._token) if replace else self.relative
        await self.store.run(self._place_sync, relative)
        self.relative = relative
        self._placed = True
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
        final = self.store.root / relative
        self._link_sync(relative)
        if self.store.sync_each:
            try:
                _fsync_dir(final.parent)
            except OSError as exc:
                # Not known to be durable, so not placed: take the link back, or
                # the UID could never be stored again.
                _unlink_quietly(final)
                raise _store_error(exc, "flush the folder of") from exc

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
            _unlink_quietly(self.store.root / self.relative)
            self._placed = False
        _unlink_quietly(self._tmp)


def _drop_cached(path: str | Path) -> None:
    """Drop a flushed file's pages from the page cache (advice: errors are ignored)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _sticky(exc: BaseException) -> StoreError:
    if isinstance(exc, StoreError):
        return StoreError(str(exc), no_space=exc.no_space)
    return StoreError(f"instance file not written: {exc!r}")


def _store_error(exc: OSError, what: str) -> StoreError:
    no_space = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return StoreError(f"cannot {what} instance file: {exc.strerror or exc}", no_space=no_space)
