"""Instance files under the data folder: the store, atomic placement, recovery.

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
O(archive). Writing one instance is :class:`~archive.store.writer.FileWriter`'s
(``writer.py``: write-behind, the page cache).

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
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from archive.store.errors import StoreError
from archive.store.inflight import InFlight, clear_markers, scan_in_flight
from archive.store.layout import (
    INSTANCES,
    QUARANTINE,
    TMP,
    is_version_name,
    relative_path,
    replacement_path,
    safe_uid,
)
from archive.store.layout import fsync_dir as _fsync_dir
from archive.store.layout import unlink_quietly as _unlink_quietly
from archive.store.lock import lock_data_folder, unlock_data_folder
from archive.store.scan import local_filesystem
from archive.store.sync import load_syncfs
from archive.store.writer import FileWriter

__all__ = [
    "INSTANCES",
    "QUARANTINE",
    "TMP",
    "FileStore",
    "InFlight",
    "relative_path",
    "replacement_path",
    "safe_uid",
]

T = TypeVar("T")

log = logging.getLogger("archive.store")

#: What syncfs answers on a filesystem that does not implement it.
_NO_SYNCFS = frozenset({errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP})


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
        #: ``instances/`` is on a local filesystem (set by :meth:`open`): cached
        #: files may be opened on the event loop (``store/sources.py``).
        self.local = False
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
        self.local = local_filesystem(self.root / INSTANCES)

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

    async def set_aside(self, relative: str) -> str:
        """Move a file out of ``instances/`` into ``quarantine/``, under the same
        relative path (``archive check --repair``: a file no instance can be made
        of, which may still be all someone has); returns its new relative path."""
        return await self.run(self._set_aside_sync, relative)

    def _set_aside_sync(self, relative: str) -> str:
        moved = Path(QUARANTINE) / Path(relative).relative_to(INSTANCES)
        target = self.root / moved
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.root / relative, target)
        if self.durable:
            _fsync_dir(target.parent)
            _fsync_dir((self.root / relative).parent)
        return moved.as_posix()

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
        clean) leaves the page cache first; see writer.py's "Page cache". The
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
            try:
                if drop_cache:
                    _drop_cached(marker)
                _unlink_quietly(marker)
            except OSError as exc:
                # Left behind, a marker only makes the next start check an
                # instance already indexed; the others go all the same.
                log.warning("in-flight marker %s not removed: %s", marker, exc)

    async def missing(self, relative: str) -> bool:
        """Whether the stored file ``relative`` is known to be gone (ENOENT or
        ENOTDIR); any other error to look at it says nothing, so False."""
        return await self.run(_missing, self.path(relative))

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


def _drop_cached(path: str | Path) -> None:
    """Drop a flushed file's pages from the page cache (advice: errors are ignored)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    with contextlib.suppress(OSError):
        os.close(fd)


def _missing(path: str) -> bool:
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        pass  # cannot tell: taken as there
    return False
