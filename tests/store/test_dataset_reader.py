"""archive/store/scan.py DatasetReader: the blocking reads and the never-blocking ones.

``first_cached`` / ``next_cached`` read only what the page cache holds
(``RWF_NOWAIT``) and return None otherwise. Whichever way each chunk is read, the
data set must come out whole and in order. A file is taken out of the page cache
with ``fsync`` then ``POSIX_FADV_DONTNEED`` (clean pages are dropped at once).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from archive.dicom.filemeta import FileMeta, encode_file_meta
from archive.store import DatasetReader, scan
from tests.store.helpers import cachestat, evict, needs_cachestat, needs_openat2, twins

needs_nowait = pytest.mark.skipif(
    not hasattr(os, "RWF_NOWAIT"), reason="no preadv RWF_NOWAIT on this platform"
)


def _file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    meta = encode_file_meta(
        FileMeta(
            media_storage_sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
            media_storage_sop_instance_uid="1.2.3.4",
            transfer_syntax_uid=str(ExplicitVRLittleEndian),
        )
    )
    dataset = random.Random(size).randbytes(size)
    path = tmp_path / "f.dcm"
    path.write_bytes(meta + dataset)
    return path, dataset


def _read_all(reader: DatasetReader, *, cached: bool) -> tuple[bytes, int]:
    """The data set through the cached reads where they succeed; how many did."""
    hits = 0
    first = reader.first_cached() if cached else None
    if first is None:
        first = reader.first_read()
    else:
        hits += 1
    blocks = [bytes(first)]
    while not reader.done:
        block = reader.next_cached() if cached else None
        if block is None:
            block = reader.next()
        else:
            hits += 1
        blocks.append(bytes(block))
    return b"".join(blocks), hits


def _read_file(path: Path) -> tuple[DatasetReader, bytes, int]:
    """A reader of ``path`` in chunks of 64 KiB, the cached reads tried first."""
    reader = DatasetReader(path, chunk=65536)
    reader.open()
    try:
        data, hits = _read_all(reader, cached=True)
    finally:
        reader.close()
    return reader, data, hits


@needs_nowait
@pytest.mark.parametrize("size", [0, 1000, 200_000])
def test_a_cached_file_is_read_without_blocking(tmp_path: Path, size: int) -> None:
    path, dataset = _file(tmp_path, size)
    reader, data, hits = _read_file(path)
    assert data == dataset
    assert hits == max(1, -(-(len(dataset) + (path.stat().st_size - size)) // 65536))
    assert reader.meta is not None
    assert reader.meta.media_storage_sop_instance_uid == "1.2.3.4"


@needs_nowait
def test_an_evicted_file_is_left_to_the_blocking_read(tmp_path: Path) -> None:
    path, dataset = _file(tmp_path, 300_000)
    evict(path)
    reader = DatasetReader(path, chunk=65536)
    reader.open()
    try:
        assert reader.first_cached() is None  # would have waited for the disk
        first = reader.first_read()
        rest = []
        while not reader.done:
            rest.append(bytes(reader.next()))
    finally:
        reader.close()
    assert bytes(first) + b"".join(rest) == dataset


def test_first_is_open_and_first_read(tmp_path: Path) -> None:
    path, dataset = _file(tmp_path, 100_000)
    reader = DatasetReader(path, chunk=1 << 20)
    try:
        assert bytes(reader.first()) == dataset
        assert reader.done  # one chunk: closed after it
        assert reader.size == path.stat().st_size
    finally:
        reader.close()


@needs_nowait
def test_read_cached_and_its_twin_agree(tmp_path: Path) -> None:
    """Cached, evicted, past the end, empty, a closed descriptor, bad arguments."""
    path, _ = _file(tmp_path, 300_000)
    whole = path.read_bytes()
    fd = os.open(path, os.O_RDONLY)
    closed = os.open(path, os.O_RDONLY)
    os.close(closed)
    try:
        results: dict[str, list[object]] = {}
        for name, read_cached in twins("read_cached", scan.read_cached_py).items():
            os.pread(fd, len(whole), 0)  # all of it in the cache
            got: list[object] = [
                read_cached(fd, 0, len(whole)),
                read_cached(fd, 1000, 5000),
                read_cached(fd, len(whole) - 10, 100),  # past the end: not all there
                read_cached(fd, 0, 0),
                read_cached(closed, 0, 10),
            ]
            evict(path)
            got.append(read_cached(fd, 0, len(whole)))  # would wait for the disk
            for bad in ((-1, 10), (0, -1)):
                with pytest.raises(ValueError, match="negative"):
                    read_cached(fd, *bad)
            results[name] = got
    finally:
        os.close(fd)
    expected = [whole, whole[1000:6000], None, b"", None, None]
    for name, got in results.items():
        assert got == expected, name


@needs_nowait
@needs_cachestat
def test_a_native_miss_starts_no_readahead(tmp_path: Path) -> None:
    """The C read_cached asks cachestat first, so a miss on the event loop does not
    start the readahead (page allocation and I/O submission) in the loop's thread;
    the Python twin's preadv2 does. Same results either way."""
    _native: Any = pytest.importorskip("archive._native")
    path, _ = _file(tmp_path, 300_000)
    size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    try:
        evict(path)
        assert cachestat(fd) == 0
        assert _native.read_cached(fd, 0, size) is None
        assert cachestat(fd) == 0  # nothing read, nothing on its way
        assert scan.read_cached_py(fd, 0, size) is None
        assert cachestat(fd)  # the twin's miss started the readahead
        # Cached in part: the first half, or all but the last page. This descriptor
        # reads only what it asks for (FADV_RANDOM: no readahead of its own).
        page = os.sysconf("SC_PAGE_SIZE")
        for cached in (size // 2 // page * page, (size - 1) // page * page):
            evict(path)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            os.pread(fd, cached, 0)
            before = cachestat(fd)
            assert before == cached // page
            assert _native.read_cached(fd, 0, size) is None
            assert cachestat(fd) == before, cached
            assert _native.read_cached(fd, 0, cached) == path.read_bytes()[:cached]
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_NORMAL)
        os.pread(fd, size, 0)
        assert _native.read_cached(fd, 0, size) == path.read_bytes()
        assert _native.read_cached(fd, 100, 1) == path.read_bytes()[100:101]
    finally:
        os.close(fd)


@needs_nowait
def test_a_file_cached_only_in_part_is_read_whole_from_where_the_cache_ends(
    tmp_path: Path,
) -> None:
    """The head cached, the tail not: the cached reads stop at the first miss and the
    blocking reads go on from that offset (no chunk twice, none skipped)."""
    path, dataset = _file(tmp_path, 400_000)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 200_000, 0, os.POSIX_FADV_DONTNEED)  # the tail out
    finally:
        os.close(fd)
    _, data, hits = _read_file(path)
    assert data == dataset
    assert 1 <= hits < 7  # some chunks from the cache, the rest (7 in all) blocking


@needs_openat2
def test_open_cached_and_its_twin_agree(tmp_path: Path) -> None:
    """A cached file opens (read-only, close-on-exec) by str, bytes or path; a
    missing one, or one under a missing folder, gives -1; a NUL is refused."""
    path, _ = _file(tmp_path, 1000)
    path.read_bytes()
    results: dict[str, list[object]] = {}
    for name, open_cached in twins("open_cached", scan.open_cached_py).items():
        got: list[object] = []
        for spelling in (str(path), os.fsencode(path), path):
            fd = open_cached(spelling)
            assert fd >= 0, (name, spelling)
            try:
                assert os.read(fd, 4) == path.read_bytes()[:4]
                assert not os.get_inheritable(fd)
                with pytest.raises(OSError, match="Bad file descriptor"):
                    os.write(fd, b"x")  # read-only
                got.append(os.fstat(fd).st_ino == path.stat().st_ino)
            finally:
                os.close(fd)
        got.append(open_cached(tmp_path / "missing.dcm"))
        got.append(open_cached(tmp_path / "no" / "such.dcm"))
        with pytest.raises(ValueError, match="null"):
            open_cached("bad\0path")
        results[name] = got
    for name, got in results.items():
        assert got == [True, True, True, -1, -1], name


@needs_openat2
def test_open_cached_reader(tmp_path: Path) -> None:
    path, dataset = _file(tmp_path, 100_000)
    path.read_bytes()
    reader = DatasetReader(path, chunk=1 << 20)
    try:
        assert reader.open_cached()
        assert reader.size == path.stat().st_size
        block = reader.first_cached()
        assert block is not None
        assert bytes(block) == dataset
    finally:
        reader.close()
    missing = DatasetReader(tmp_path / "missing.dcm")
    assert not missing.open_cached()
    assert missing.closed  # no descriptor kept from the failed open


def test_only_regular_files_open(tmp_path: Path) -> None:
    """A folder (or a FIFO) in a file's place: open_cached leaves it to open(),
    which refuses it, closing what it opened."""
    folder = tmp_path / "a.dcm"
    folder.mkdir()
    reader = DatasetReader(folder)
    assert not reader.open_cached()
    with pytest.raises(OSError, match="not a regular file"):
        reader.open()
    assert reader.done  # nothing left open
    fifo = tmp_path / "b.dcm"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        DatasetReader(fifo).open()  # at once: O_NONBLOCK, no writer needed


def test_local_filesystems(tmp_path: Path) -> None:
    assert scan.local_filesystem(tmp_path)
    assert not scan.local_filesystem("/proc/self")  # procfs: not a place for files
    assert scan._filesystem_type(os.stat(tmp_path).st_dev) != ""  # found in the table
    # A device the mount table does not name is not taken for local.
    assert not scan.local_device(os.makedev(4095, 1048575))
