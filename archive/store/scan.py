"""Reading a stored (or to-be-imported) Part 10 file back: meta, index attributes, digest.

Blocking functions, meant for the store's I/O pool: recovery re-indexes placed
files with them, and the importer and ``archive store`` read files with them in
bounded chunks (never the whole file in memory). :class:`DatasetReader` is the one
chunked reader of a data set: :func:`scan_file`, sub-operations and the Storage SCU
all read through it.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import os
import platform
import stat
import sys
from typing import Literal

import msgspec

from archive.dicom.filemeta import MAX_META_LENGTH, FileMeta, decode_file_meta
from archive.dicom.header import HeaderReader, InstanceAttributes, Rest
from archive.native import choose

CHUNK = 1 << 20


#: Bytes per read when only the header is wanted (:func:`scan_header`).
HEADER_CHUNK = 64 * 1024


class ScannedFile(msgspec.Struct, frozen=True, kw_only=True):
    meta: FileMeta
    attrs: InstanceAttributes
    digest: str
    size: int


class FileDigest(msgspec.Struct, frozen=True, kw_only=True):
    meta: FileMeta
    digest: str
    size: int


class ScannedHeader(msgspec.Struct, frozen=True, kw_only=True):
    meta: FileMeta
    attrs: InstanceAttributes
    size: int


def read_meta(path: str | os.PathLike[str]) -> tuple[FileMeta, int]:
    """The File Meta Information of a Part 10 file and the data set's offset."""
    with open(path, "rb") as f:
        head = f.read(MAX_META_LENGTH)
    return decode_file_meta(head)


class DatasetReader:
    """A stored file's data set, read in chunks; the first read also finds its start.

    Built for sending (sub-operations, the Storage SCU): :meth:`first` opens the file,
    reads up to ``chunk`` bytes, decodes the File Meta from them (unless given one:
    a data set without File Meta is read from its first byte) and returns a view
    of the data set bytes that followed, so a file no larger than one chunk costs
    one open and one read (one trip to an I/O thread). :meth:`next` returns the
    following chunks, empty at the end. Blocking; :meth:`close` it in a ``finally``.

    Reads ask for exactly what the file holds (its size is known): a buffer of the
    chunk size for a smaller file cost page faults on every read, and slicing the
    data set out of the first read a second copy, ~0.3 ms per 0.5 MB image.

    The same in two steps, for a caller on the event loop: :meth:`open` (blocking:
    the I/O pool), then :meth:`first_cached` / :meth:`next_cached`, which never
    block: they read only what the page cache holds (``RWF_NOWAIT``) and return
    None otherwise, when :meth:`first_read` / :meth:`next` (blocking) do it.
    """

    def __init__(
        self, path: str | os.PathLike[str], chunk: int = CHUNK, meta: FileMeta | None = None
    ) -> None:
        self.path = path
        self.chunk = max(chunk, MAX_META_LENGTH)
        self._fd = -1
        self._offset = 0
        self._left = 0
        #: Given: the file is a data set without File Meta (``archive store`` and
        #: ``import`` send those as storescu does), read from its first byte.
        self._bare = meta is not None
        self.meta: FileMeta | None = meta
        #: The file's size when :meth:`open` opened it.
        self.size = 0
        self._end = False
        # Cleared at the first cached read that missed: the rest of such a file
        # is read by the blocking reads (one miss per file at most, see below).
        self._try_cache = True

    def open(self) -> None:
        """Open the file and learn its size (blocking)."""
        # O_NONBLOCK: regular files ignore it; a FIFO in a file's place then opens
        # at once (and fails to read) instead of holding a thread forever.
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            self._adopt(fd)
        except BaseException:
            os.close(fd)
            raise

    def open_cached(self) -> bool:
        """:meth:`open` if that needs no disk I/O (the path and inode cached), else
        False; never blocks, so the event loop may call it, for a file on a local
        filesystem only (:func:`local_filesystem`: a network filesystem's open asks
        its server whatever the caches hold). On False the file is not open:
        :meth:`open` it in a thread, which reports any error."""
        fd = open_cached(self.path)
        if fd < 0:
            return False
        try:
            # The inode is in memory (the open needed it); anything but a regular
            # file is left to open(), which refuses it.
            self._adopt(fd)
        except OSError:
            os.close(fd)
            return False
        return True

    def _adopt(self, fd: int) -> None:
        """Read from ``fd`` from now on, if it is a regular file (else OSError)."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(self.path))
        self._fd = fd
        self._left = self.size = st.st_size

    def first(self) -> memoryview:
        """:meth:`open` and :meth:`first_read` (blocking)."""
        self.open()
        return self.first_read()

    def first_read(self) -> memoryview:
        """The data set's first bytes, after the File Meta (blocking)."""
        return self._head(self._read())

    def first_cached(self) -> memoryview | None:
        """:meth:`first_read` if the page cache holds all of it, else None (never blocks)."""
        block = self._read_cached()
        return None if block is None else self._head(block)

    def next(self) -> memoryview:
        return memoryview(self._read())

    def next_cached(self) -> memoryview | None:
        """:meth:`next` if the page cache holds all of it, else None (never blocks)."""
        block = self._read_cached()
        return None if block is None else memoryview(block)

    def _head(self, block: bytes) -> memoryview:
        head = memoryview(block)
        if self._bare:
            return head
        self.meta, offset = decode_file_meta(head[:MAX_META_LENGTH])
        return head[offset:]

    def _read(self) -> bytes:
        if self._fd < 0 or self._end:
            return b""
        want = min(self._left, self.chunk)
        block = os.pread(self._fd, want, self._offset) if want else b""
        while len(block) < want and (more := os.pread(self._fd, want - len(block),
                                                      self._offset + len(block))):  # fmt: skip
            block += more  # a short read before the end: rare, but not the end
        return self._advance(block, want)

    def _read_cached(self) -> bytes | None:
        if self._fd < 0 or self._end:
            return b""
        if not self._try_cache:
            return None
        want = min(self._left, self.chunk)
        block = read_cached(self._fd, self._offset, want)
        if block is None:
            # Not cached, or no RWF_NOWAIT on this filesystem: the blocking reads
            # do the rest, no more misses.
            self._try_cache = False
            return None
        return self._advance(block, want, close=False)

    def _advance(self, block: bytes, want: int, *, close: bool = True) -> bytes:
        self._offset += len(block)
        self._left -= len(block)
        if len(block) < want or not self._left:
            self._end = True  # the end (or the file shrank under us)
            if close:
                self.close()
        return block

    @property
    def closed(self) -> bool:
        """No descriptor is open (never opened, closed, or read to its end)."""
        return self._fd < 0

    @property
    def done(self) -> bool:
        """Everything has been read (no need for another :meth:`next`)."""
        return self._end or self.closed

    def close(self) -> None:
        """Close the file (blocking: the last close of a deleted file frees its blocks)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def close_if_cheap(self) -> bool:
        """Close now unless that could free disk blocks; False: :meth:`close` it in a thread.

        Never blocks: a file that still has a name is closed at once (its blocks
        stay); one deleted or replaced meanwhile (no link left) may hold the last
        reference to its blocks, and freeing them can wait for the disk.
        """
        if self._fd < 0:
            return True
        try:
            linked = os.fstat(self._fd).st_nlink > 0
        except OSError:
            linked = False
        if linked:
            self.close()
        return linked


#: preadv's "only what the page cache holds" flag (Linux 4.14+), or None.
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


def read_cached_py(fd: int, offset: int, size: int) -> bytes | None:
    """The ``size`` bytes at ``offset`` if the page cache holds them all, else None.

    Never waits for the disk (``RWF_NOWAIT``): None when it would have, when only
    part is cached, on any error (the caller's blocking read reports it), and
    where the flag does not exist. The twin of ``archive._native.read_cached``,
    which fills the bytes in place instead of a zeroed buffer copied after, and
    asks cachestat(2) first where it exists (Linux 6.5+): a preadv2 that misses
    starts the readahead of what it lacks in the calling thread (0.1-0.2 ms for
    0.5 MB here), and this is called on the event loop. The results are the same.
    """
    if offset < 0 or size < 0:
        raise ValueError("negative offset or size")
    if size == 0:
        return b""  # nothing to wait for
    if _NOWAIT is None:
        return None
    block = bytearray(size)
    try:
        got = os.preadv(fd, [block], offset, _NOWAIT)
    except OSError:
        return None
    return bytes(block) if got == size else None


read_cached = choose("read_cached", read_cached_py)


class _OpenHow(ctypes.Structure):
    _fields_ = (
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    )


_OPENAT2 = 437  # x86-64 and arm64
_RESOLVE_CACHED = 0x20
_AT_FDCWD = -100
_openat2_missing = sys.platform != "linux" or platform.machine() not in ("x86_64", "aarch64")


def open_cached_py(path: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> int:
    """``path`` opened read-only if that needs no disk I/O, else -1 (never blocks).

    openat2 with RESOLVE_CACHED, which fails with EAGAIN rather than read a
    directory or inode the caches lack; -1 also on any error (the caller opens
    in its I/O pool, which reports it) and where the call or flag is missing or
    refused (then remembered). The twin of ``archive._native.open_cached``: the
    same system call, through ctypes.
    """
    global _openat2_missing
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise ValueError("embedded null byte")
    if _openat2_missing:
        return -1
    how = _OpenHow(os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK, 0, _RESOLVE_CACHED)
    while True:
        # syscall(2) is variadic: every argument in its C type, none left to ctypes'
        # int default (the size is a size_t, whose upper half must be zero).
        fd = int(
            _libc().syscall(
                ctypes.c_long(_OPENAT2),
                ctypes.c_int(_AT_FDCWD),
                ctypes.c_char_p(raw),
                ctypes.byref(how),
                ctypes.c_size_t(ctypes.sizeof(how)),
            )
        )
        if fd >= 0:
            return fd
        error = ctypes.get_errno()
        if error != errno.EINTR:
            break
    if error in (errno.ENOSYS, errno.EINVAL, errno.EPERM, errno.E2BIG):
        _openat2_missing = True
    return -1


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


open_cached = choose("open_cached", open_cached_py)

#: Filesystems whose open, once the path and inode are cached, never waits: their
#: data is on this machine. A network or FUSE filesystem may ask its server on
#: every open (NFSv4 sends OPEN), so its files are opened in a thread.
LOCAL_FILESYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "bcachefs",
     "tmpfs", "ramfs", "zfs", "overlay"}
)  # fmt: skip


def local_filesystem(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (which must exist) is on a local filesystem (blocking: it
    stats ``path``; call it in a thread)."""
    return local_device(os.stat(path).st_dev)


def local_device(device: int) -> bool:
    """Whether the filesystem on ``device`` (``st_dev``) is local. From the mount
    table, read once per device (blocking the first time: call it in a thread)."""
    return _filesystem_type(device) in LOCAL_FILESYSTEMS


@functools.cache
def _filesystem_type(device: int) -> str:
    """The type of the filesystem mounted from ``device`` (/proc/self/mountinfo),
    "" if unknown."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as table:
            for line in table:
                fields = line.split()
                if len(fields) > 4 and fields[2] == wanted and " - " in line:
                    return line.split(" - ", 1)[1].split()[0]
    except OSError:
        pass
    return ""


def scan_file(
    path: str | os.PathLike[str], *, rest: Literal["checked", "bounded"] = "checked"
) -> ScannedFile:
    """Meta, index attributes, SHA-256 of the data set bytes and file size.

    ``rest`` is how far a Deflated data set is checked past its header
    (:data:`archive.dicom.header.Rest`): to the end of its stream by default, as
    for a file of unknown origin; ``"bounded"`` judges it as the C-STORE path
    did, for a file ingest acknowledged (recovery's earlier versions).
    """
    digest = hashlib.sha256()
    header = _scan(path, CHUNK, digest, rest)
    return ScannedFile(
        meta=header.meta, attrs=header.attrs, digest=digest.hexdigest(), size=header.size
    )


def digest_file(path: str | os.PathLike[str]) -> FileDigest:
    """Meta, SHA-256 of the data set bytes and file size; the data set is not parsed.

    How a file the index holds is told from one not whole: its row has the size
    and digest of what ingest acknowledged, and the same bytes are that
    instance, whatever a parse of them would say now (a Deflated data set too
    compressible to check past its header was stored unchecked, and a scan to
    the end of its stream may refuse it). Raises ``FileMetaError`` when the File
    Meta does not decode, ``OSError``.
    """
    digest = hashlib.sha256()
    source = DatasetReader(path, CHUNK)
    try:
        block = source.first()
        while block:
            digest.update(block)
            block = source.next()
    finally:
        source.close()
    assert source.meta is not None  # first() decoded it
    return FileDigest(meta=source.meta, digest=digest.hexdigest(), size=source.size)


def scan_header(path: str | os.PathLike[str], meta: FileMeta | None = None) -> ScannedHeader:
    """Meta, index attributes and file size, reading only as far as the header goes.

    The header reader is done at Pixel Data (or the last attribute it keeps), so a
    large image costs one or two reads of :data:`HEADER_CHUNK`, not the whole file;
    no digest. Raises like :func:`scan_file`. Given ``meta``, the file is a data
    set without File Meta in ``meta``'s transfer syntax (:class:`DatasetReader`).
    """
    return _scan(path, HEADER_CHUNK, None, "skipped", meta)


def _scan(
    path: str | os.PathLike[str],
    chunk: int,
    digest: hashlib._Hash | None,
    rest: Rest,
    given: FileMeta | None = None,
) -> ScannedHeader:
    """Read the data set into the header reader (and ``digest``, when given: then
    all of it; without one, only until the header reader is done)."""
    source = DatasetReader(path, chunk, given)
    try:
        block = source.first()
        assert source.meta is not None  # first() decoded it
        meta = source.meta
        # A whole read checks a Deflated stream as ``rest`` says; a header-only
        # one stops at the header, whatever the chunk holds after it.
        header = HeaderReader(meta.transfer_syntax_uid, rest=rest)
        while block:
            done = header.feed(block)
            if digest is not None:
                digest.update(block)
            elif done:
                break
            block = source.next()
        # Stopped at the header's end: the rest is not checked (finish(whole=False)).
        whole = digest is not None or not header.done
    finally:
        source.close()
    return ScannedHeader(meta=meta, attrs=header.finish(whole=whole), size=source.size)
