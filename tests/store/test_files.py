"""archive/store/files.py and writer.py in isolation: FileWriter, in-flight markers, paths."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import mmap
import os
import random
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from archive.store import (
    AlreadyStored,
    DataFolderInUse,
    FileStore,
    FileWriter,
    StoreError,
    place,
    relative_path,
    safe_uid,
)
from archive.store.sync import load_syncfs, reports_errors
from archive.store.writer import MAX_QUEUED, WRITE_BEHIND
from tests.store.helpers import (
    cached_pages,
    dirty_pages,
    fail_part_writes,
    is_part,
    needs_cachestat,
    needs_syncfs,
    skip_unless_cache_drops,
)

FLUSH_SIZE = MAX_QUEUED  # sizes below are in units of what may queue behind a write

T = TypeVar("T")

UID = "1.2.826.0.1.3680043.8.498.12345"
META = b"\0" * 128 + b"DICM" + b"fake group 0002 bytes, the writer does not look at them"


def run(fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await fn()

    return asyncio.run(main())


@pytest.fixture
def store(tmp_path: Path) -> Any:
    store = FileStore(tmp_path / "data", durable=True, workers=2)
    run(store.open)
    yield store
    store.close()


async def recover(store: FileStore) -> list[str]:
    """Clear ``tmp/`` with no index to ask: the placed paths, their markers removed.

    What ``Storage.recover`` (archive/node.py) starts from, minus the index checks.
    """
    found = await store.in_flight()
    await store.clear_in_flight(found)
    return [m.placed for m in found if m.placed is not None]


def parts(store: FileStore) -> list[Path]:
    return sorted((store.root / "tmp").iterdir())


def fragments(total: int, size: int, seed: int = 0) -> list[bytes]:
    data = random.Random(seed).randbytes(total)
    return [data[i : i + size] for i in range(0, total, size)]


async def write_all(writer: FileWriter, chunks: list[bytes]) -> str:
    for chunk in chunks:
        await writer.write(memoryview(chunk))
    return await writer.finish()


# ---- paths ---------------------------------------------------------------------------


def test_relative_path_fans_out_by_sha1() -> None:
    digest = hashlib.sha1(UID.encode()).hexdigest()
    assert relative_path(UID) == f"instances/{digest[:2]}/{digest[2:4]}/{UID}.dcm"


@pytest.mark.parametrize(
    ("uid", "ok"),
    [
        ("1.2.3", True),
        ("1" * 64, True),
        ("1" * 65, False),
        ("", False),
        ("1.2.3/../4", False),
        ("1.2.x", False),
        ("1.2.3 ", False),
        ("1.2.\u0663", False),  # ARABIC-INDIC DIGIT THREE: isdigit() but not ASCII
    ],
)
def test_safe_uid(uid: str, ok: bool) -> None:
    assert safe_uid(uid) is ok


def test_unsafe_uid_is_refused(store: FileStore) -> None:
    with pytest.raises(StoreError) as info:
        store.begin("../../etc/passwd", META)
    assert info.value.no_space is False
    assert parts(store) == []


# ---- the write recipe ------------------------------------------------------------------


def test_write_finish_place_release(store: FileStore) -> None:
    chunks = fragments(3 * FLUSH_SIZE + 12345, 65536)
    writer = store.begin(UID, META)
    digest = run(lambda: write_all(writer, chunks))
    (part,) = parts(store)
    assert part.name.startswith(UID + ".")
    assert part.name.endswith(".part")
    relative = run(writer.place)
    # The part file is the in-flight journal until release.
    assert os.path.samefile(part, Path(store.path(relative)))
    writer.release().result(5)
    assert not part.exists()
    body = b"".join(chunks)
    assert digest == hashlib.sha256(body).hexdigest()
    assert writer.digest == digest
    assert relative == relative_path(UID)
    assert Path(store.path(relative)).read_bytes() == META + body
    assert writer.size == len(META) + len(body)
    assert parts(store) == []


@pytest.mark.parametrize(
    ("durable", "batched", "cache_new_files", "size", "dropped"),
    [
        (True, True, False, 3 * WRITE_BEHIND, True),  # the default: strict, batch
        (True, False, False, 3 * WRITE_BEHIND, True),  # strict, flush = "file"
        (True, True, True, 3 * WRITE_BEHIND, False),  # cache_new_files = true
        (True, True, False, WRITE_BEHIND // 2, False),  # a few pages: not worth it
        (False, False, False, 3 * WRITE_BEHIND, False),  # fast: the pages are dirty
    ],
)
def test_release_drops_a_durable_files_pages(
    tmp_path: Path, durable: bool, batched: bool, cache_new_files: bool, size: int, dropped: bool
) -> None:
    """Once durable and released, a file of WRITE_BEHIND or more leaves the page cache,
    unless the store keeps new files cached; the bytes on disk are all there."""
    skip_unless_cache_drops(tmp_path)
    store = FileStore(
        tmp_path / "data", durable=durable, batched=batched, cache_new_files=cache_new_files
    )
    chunks = fragments(size, 16384)

    async def go() -> Path:
        writer = store.begin(UID, META)
        for chunk in chunks:
            await writer.write(memoryview(chunk))
        assert await writer.finish_and_place()
        await store.run(store.flush_all)  # what the index's group commit does
        final = Path(store.path(writer.relative))
        cached, total = cached_pages(final)
        assert cached == total  # written moments ago: all cached until released
        await asyncio.wrap_future(writer.release())
        return final

    run(store.open)
    try:
        final = run(go)
        cached, total = cached_pages(final)
        if dropped:
            # Advice, not a command: Linux skips a folio it cannot lock at once.
            assert cached <= total // 4, (cached, total)
        else:
            assert cached == total
        assert final.read_bytes() == META + b"".join(chunks)
        assert parts(store) == []
    finally:
        store.close()


def test_a_marker_that_cannot_go_does_not_keep_the_others(
    store: FileStore, caplog: pytest.LogCaptureFixture
) -> None:
    """One release job, three markers: the one that cannot be unlinked (a folder
    here) is logged and left; the two around it go all the same."""
    tmp = store.root / "tmp"
    first, stuck, last = tmp / "a.part", tmp / "b.part", tmp / "c.part"
    first.write_bytes(b"x" * (3 * WRITE_BEHIND))
    stuck.mkdir()
    last.write_bytes(b"y")
    with caplog.at_level("WARNING", logger="archive.store"):
        store.release(str(first), str(stuck), str(last), drop_cache=True).result(5)
    assert not first.exists()
    assert not last.exists()
    assert stuck.is_dir()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"in-flight marker {stuck} not removed"
    ]


def test_writes_go_to_disk_behind_the_receiver(store: FileStore) -> None:
    """Fragments are written while later ones arrive, not all held until finish."""
    writer = store.begin(UID, META)
    chunks = fragments(4 * MAX_QUEUED, 50_000)

    async def go() -> list[int]:
        sizes = []
        for chunk in chunks:
            await writer.write(memoryview(chunk))
            sizes.append(sum(part.stat().st_size for part in parts(store)))
        # Behind the receiver: at most the running job's take and the queue.
        received = [len(META) + 50_000 * (n + 1) for n in range(len(chunks))]
        lag = 2 * (MAX_QUEUED + 50_000)
        assert all(r - s <= lag for r, s in zip(received, sizes, strict=True))
        assert writer._job is not None
        await asyncio.wrap_future(writer._job)
        (part,) = parts(store)
        # Once the job is done, less than WRITE_BEHIND is left for finish().
        assert part.stat().st_size > received[-1] - WRITE_BEHIND
        await writer.discard()
        return sizes

    sizes = run(go)
    assert sizes[-1] > 0
    assert parts(store) == []


def test_small_instance_is_written_in_the_final_trip(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below WRITE_BEHIND nothing is written before finish: one trip to the pool."""
    trips: list[str] = []
    real = store.submit

    def submit(fn: Any, *args: Any) -> Any:
        trips.append(fn.__name__)
        return real(fn, *args)

    monkeypatch.setattr(store, "submit", submit)
    writer = store.begin(UID, META)

    async def go() -> bool:
        for chunk in fragments(WRITE_BEHIND - len(META) - 1, 1000):
            await writer.write(memoryview(chunk))
        assert parts(store) == []
        return await writer.finish_and_place()

    assert run(go) is True
    assert trips == ["_drain"]
    assert Path(store.path(relative_path(UID))).stat().st_size == WRITE_BEHIND - 1


def test_write_error_is_sticky(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a failed write nothing more is written or placed: the hash covers a gap."""
    real = os.writev
    failures = {"left": 1}

    def writev(fd: int, buffers: Any) -> int:
        if is_part(fd) and failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, buffers)

    monkeypatch.setattr(os, "writev", writev)
    writer = store.begin(UID, META)

    async def go() -> None:
        await writer.write(memoryview(b"x" * WRITE_BEHIND))  # starts the failing job
        assert writer._job is not None
        with contextlib.suppress(StoreError):  # the failing job's error
            await asyncio.wrap_future(writer._job)
        with pytest.raises(StoreError):
            await writer.write(memoryview(b"y" * 10))
        with pytest.raises(StoreError):
            await writer.finish_and_place()
        await writer.discard()

    run(go)
    assert failures["left"] == 0
    assert parts(store) == []
    assert not Path(store.path(relative_path(UID))).exists()


def test_empty_dataset(store: FileStore) -> None:
    writer = store.begin(UID, META)

    async def go() -> str:
        digest = await writer.finish()
        await writer.place()
        await asyncio.wrap_future(writer.release())
        return digest

    assert run(go) == hashlib.sha256(b"").hexdigest()
    assert Path(store.path(relative_path(UID))).read_bytes() == META


def test_discard_before_finish(store: FileStore) -> None:
    writer = store.begin(UID, META)

    async def go() -> None:
        for chunk in fragments(2 * FLUSH_SIZE, 100_000):
            await writer.write(memoryview(chunk))
        assert len(parts(store)) == 1
        await writer.discard()

    run(go)
    assert parts(store) == []
    assert not Path(store.path(relative_path(UID))).exists()


def test_discard_after_place_removes_the_placed_file(store: FileStore) -> None:
    writer = store.begin(UID, META)

    async def go() -> None:
        await write_all(writer, fragments(5000, 1000))
        await writer.place()
        await writer.discard()

    run(go)
    assert parts(store) == []
    assert not Path(store.path(relative_path(UID))).exists()


def test_place_over_existing_is_already_stored(store: FileStore) -> None:
    final = Path(store.path(relative_path(UID)))
    final.parent.mkdir(parents=True)
    final.write_bytes(b"held")
    writer = store.begin(UID, META)

    async def go() -> None:
        await write_all(writer, fragments(5000, 1000))
        with pytest.raises(AlreadyStored):
            await writer.place()
        await writer.discard()

    run(go)
    assert final.read_bytes() == b"held"
    assert parts(store) == []


def test_place_replace(store: FileStore) -> None:
    """A replacement goes beside the version held, which stays until removed."""
    final = Path(store.path(relative_path(UID)))
    final.parent.mkdir(parents=True)
    final.write_bytes(b"old content")
    chunks = fragments(5000, 999)
    writer = store.begin(UID, META)
    run(lambda: write_all(writer, chunks))
    placed = run(lambda: writer.place(replace=True))
    assert placed != relative_path(UID)
    assert placed.startswith(relative_path(UID)[:-4] + ".r")
    new = Path(store.path(placed))
    (part,) = parts(store)  # the journal
    assert os.path.samefile(part, new)
    assert final.read_bytes() == b"old content"  # untouched until the index switched
    writer.release().result(5)
    run(lambda: store.remove_other_versions(UID, keep=placed))
    assert not final.exists()
    assert new.read_bytes() == META + b"".join(chunks)
    assert parts(store) == []


def test_discard_after_replace_keeps_the_old_version(store: FileStore) -> None:
    """A failed replacement removes only its own file: the version held stays."""
    final = Path(store.path(relative_path(UID)))
    final.parent.mkdir(parents=True)
    final.write_bytes(b"old content")
    writer = store.begin(UID, META)

    async def go() -> tuple[str, list[str]]:
        await write_all(writer, fragments(100, 10))
        placed = await writer.place(replace=True)
        await writer.discard()
        return placed, await recover(store)

    placed, recovered = run(go)
    assert recovered == []
    assert not Path(store.path(placed)).exists()
    assert final.read_bytes() == b"old content"
    assert parts(store) == []


def test_recover_finds_a_placed_replacement(store: FileStore) -> None:
    """A crash between placing a replacement and the index commit: recovery names it."""
    final = Path(store.path(relative_path(UID)))
    final.parent.mkdir(parents=True)
    final.write_bytes(b"old content")
    writer = store.begin(UID, META)

    async def go() -> tuple[str, list[str]]:
        await write_all(writer, fragments(100, 10))
        placed = await writer.place(replace=True)
        return placed, await recover(store)  # as if the process died here

    placed, recovered = run(go)
    assert recovered == [placed]
    assert parts(store) == []


# ---- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "no_space"),
    [(errno.ENOSPC, True), (errno.EDQUOT, True), (errno.EIO, False)],
)
def test_write_error_is_store_error(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, code: int, no_space: bool
) -> None:
    fail_part_writes(monkeypatch, code)
    writer = store.begin(UID, META)

    async def go() -> StoreError:
        with pytest.raises(StoreError) as info:
            await write_all(writer, fragments(2 * FLUSH_SIZE, 65536))
        await writer.discard()
        return info.value

    error = run(go)
    assert error.no_space is no_space
    assert os.strerror(code) in str(error)
    assert error.code == "store.io"
    assert parts(store) == []


def test_fsync_error_is_store_error(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.fsync

    def fsync(fd: int) -> None:
        if is_part(fd):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    writer = store.begin(UID, META)

    async def go() -> None:
        with pytest.raises(StoreError) as info:
            await write_all(writer, fragments(1000, 100))
        assert info.value.no_space is False
        await writer.discard()

    run(go)
    assert parts(store) == []


@pytest.mark.parametrize("seed", range(5))
def test_short_writes_are_completed(
    store: FileStore, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """os.writev may write less than asked (PS: POSIX writev); every byte still lands once."""
    real = os.writev
    rng = random.Random(seed)
    calls = {"n": 0}

    def writev(fd: int, buffers: Any) -> int:
        if not is_part(fd):
            return real(fd, buffers)
        calls["n"] += 1
        buffers = list(buffers)
        total = sum(len(b) for b in buffers)
        limit = rng.randint(1, max(1, min(total, 200_000)))
        take: list[Any] = []
        for b in buffers:
            if limit <= 0:
                break
            view = memoryview(b)[:limit]
            take.append(view)
            limit -= len(view)
        return real(fd, take)

    monkeypatch.setattr(os, "writev", writev)
    # Mixed fragment sizes, empty ones included.
    data = random.Random(100 + seed).randbytes(2 * FLUSH_SIZE + 777)
    chunks, at = [], 0
    while at < len(data):
        size = rng.choice([0, 1, 7, 4096, 65536, 300_000])
        chunks.append(data[at : at + size])
        at += size
    writer = store.begin(UID, META)

    async def go() -> str:
        digest = await write_all(writer, chunks)
        await writer.place()
        await asyncio.wrap_future(writer.release())
        return digest

    assert run(go) == hashlib.sha256(data).hexdigest()
    assert Path(store.path(relative_path(UID))).read_bytes() == META + data
    assert calls["n"] > 3


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What os.fsync is called on from now on (the paths of the descriptors)."""
    paths: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


def test_fsyncs_in_strict_mode_and_none_in_fast(tmp_path: Path, synced: list[str]) -> None:
    """strict: the file, its folder, and each new folder's parent once; fast: nothing."""
    leaf = relative_path(UID).rsplit("/", 1)[0]
    # Another UID in the same leaf folder: it finds the folder made already.
    sibling = "1.2.3.148513"  # found by search: the same instances/cb/1a/ as UID
    assert relative_path(sibling).rsplit("/", 1)[0] == leaf
    for durable in (False, True):
        root = tmp_path / f"data{durable}"
        store = FileStore(root, durable=durable, workers=1)
        try:
            run(store.open)

            async def go(uid: str, store: FileStore = store) -> None:
                writer = store.begin(uid, META)
                await write_all(writer, fragments(1000, 100))
                await writer.place()
                await asyncio.wrap_future(writer.release())

            synced.clear()
            run(lambda: go(UID))
            first = [Path(p).relative_to(root).as_posix() for p in synced]
            synced.clear()
            run(lambda: go(sibling))
            second = [Path(p).relative_to(root).as_posix() for p in synced]
        finally:
            store.close()
        if not durable:
            assert first == second == []
            continue
        part = f"tmp/{UID}"
        assert len(first) == 4
        assert first[0] == "instances"  # instances/ab is new
        assert first[1] == leaf.rsplit("/", 1)[0]  # instances/ab/cd is new
        assert first[2].startswith(part)
        assert first[2].endswith(".part")  # the file (its fd names the part file)
        assert first[3] == leaf  # the folder, after the link
        assert len(second) == 2
        assert second[0].startswith(f"tmp/{sibling}.")
        assert second[1] == leaf


#: Pages of the largest page-cache folio a write's start may fall in (64 KiB).
FOLIO_PAGES = 16


@needs_syncfs
@needs_cachestat
@pytest.mark.parametrize("twin", [False, True], ids=["native", "python"])
@pytest.mark.parametrize("size", [WRITE_BEHIND + 1, 600_000, 3 * MAX_QUEUED + 7])
def test_a_large_file_has_all_its_writeback_started_when_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int, twin: bool
) -> None:
    """Batched: no page of a file written behind the receiver is left dirty once it
    is placed (but the folio each write began in: see below), its tail's neither
    (each write ends with POSIX_FADV_DONTNEED, which on dirty pages starts their
    writeback), so the batch's flush after the index's row waits for little.
    Small files are left to the flush."""
    if twin:
        monkeypatch.setattr(place, "write_and_link", place.write_and_link_py)
    writes = 1  # the tail's, in the placement
    write_behind = FileWriter._write_sync

    def counted(self: FileWriter, *args: Any, **kwargs: Any) -> None:
        nonlocal writes
        writes += 1
        write_behind(self, *args, **kwargs)

    monkeypatch.setattr(FileWriter, "_write_sync", counted)
    skip_unless_cache_drops(tmp_path)
    store = FileStore(tmp_path / "data", durable=True, batched=True, workers=1)
    try:
        run(store.open)

        async def go(uid: str, total: int) -> Path:
            writer = store.begin(uid, META)
            for chunk in fragments(total, 16384):
                await writer.write(memoryview(chunk))
            assert await writer.finish_and_place()
            return Path(store.path(writer.relative))

        large = run(lambda: go(UID, size))
        small = run(lambda: go(UID + ".1", 20_000))
        # Small files are left to the flush: dirty, unless something else (a
        # sync elsewhere on this disk) wrote them back meanwhile.
        if dirty_pages(small) != -(-(len(META) + 20_000) // mmap.PAGESIZE):
            pytest.skip("something wrote pages back meanwhile: nothing to compare with")
        # At most the folio where each write began: it may still have been under
        # the writeback the previous write started, which skips it (more of them
        # the slower the disk; a large folio counts all its pages). Without the
        # advice every page is dirty: more than a quarter of them.
        dirty = dirty_pages(large)
        assert dirty is not None
        assert dirty <= min(writes * FOLIO_PAGES, size // 4 // mmap.PAGESIZE), writes
    finally:
        store.close()


@needs_syncfs
def test_batched_store_leaves_every_flush_to_flush_all(tmp_path: Path, synced: list[str]) -> None:
    """batched: placing fsyncs nothing; flush_all is one syncfs of the data folder."""
    root = tmp_path / "data"
    store = FileStore(root, durable=True, batched=True, workers=1)
    assert store.batched
    assert not store.sync_each
    flushed: list[str] = []
    try:
        run(store.open)
        assert store._syncfs is not None
        syncfs = store._syncfs

        def counting(fd: int) -> None:
            flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
            syncfs(fd)

        store._syncfs = counting
        synced.clear()

        async def go() -> None:
            writer = store.begin(UID, META)
            await write_all(writer, fragments(1000, 100))
            assert await writer.finish_and_place()
            await asyncio.wrap_future(writer.release())

        run(go)
        assert synced == []
        assert flushed == []
        store.flush_all()
        assert flushed == [str(root)]
        # The index's folder on the same filesystem adds nothing to flush.
        store.also_flush(root / "index.sqlite")
        flushed.clear()
        store.flush_all()
        assert flushed == [str(root)]

        def failing(fd: int) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        store._syncfs = failing
        with pytest.raises(StoreError, match="cannot flush the data folder: Input/output error"):
            store.flush_all()
    finally:
        store.close()
    assert Path(store.path(relative_path(UID))).read_bytes() == META + b"".join(
        fragments(1000, 100)
    )


def test_batched_needs_strict() -> None:
    store = FileStore("/nonexistent", durable=False, batched=True)
    assert not store.batched
    assert not store.sync_each
    store.close()


# ---- in-flight markers ------------------------------------------------------------------


def test_recover(store: FileStore) -> None:
    tmp = store.root / "tmp"
    placed_uid, half_uid = "1.2.3.4", "1.2.3.5"
    part = tmp / f"{placed_uid}.00000001.part"
    part.write_bytes(b"placed")
    final = Path(store.path(relative_path(placed_uid)))
    final.parent.mkdir(parents=True)
    os.link(part, final)
    (tmp / f"{half_uid}.00000002.part").write_bytes(b"half")
    # Same UID as a placed file but another inode (a second, unfinished copy).
    (tmp / f"{placed_uid}.00000003.part").write_bytes(b"other copy")
    (tmp / f"{half_uid}.00000004.part.dcm.new").write_bytes(b"staged")
    (tmp / "garbage.part").write_bytes(b"?")
    assert run(lambda: recover(store)) == [relative_path(placed_uid)]
    assert list(tmp.iterdir()) == []
    assert final.read_bytes() == b"placed"
    assert not Path(store.path(relative_path(half_uid))).exists()
    assert run(lambda: recover(store)) == []


def test_a_second_process_cannot_open_the_data_folder(tmp_path: Path) -> None:
    """Recovery takes in-flight markers for crash debris: only one opener at a time.
    flock is per open file description, so a second FileStore in this process
    stands for a second process (an import beside a running node)."""

    async def scenario() -> None:
        first = FileStore(tmp_path, durable=False)
        await first.open()
        second = FileStore(tmp_path, durable=False)
        with pytest.raises(DataFolderInUse, match="in use by another archive process"):
            await second.open()
        second.close()
        first.close()
        third = FileStore(tmp_path, durable=False)
        await third.open()  # released on close
        third.close()

    asyncio.run(scenario())


def test_a_failed_open_releases_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock is taken before tmp/ is made: an open that fails after it unlocks."""
    real = os.mkdir

    def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).name == "tmp":
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        real(path, *args, **kwargs)

    async def scenario() -> None:
        first = FileStore(tmp_path, durable=False)
        with monkeypatch.context() as patch:
            patch.setattr(os, "mkdir", mkdir)
            with pytest.raises(PermissionError):
                await first.open()
        second = FileStore(tmp_path, durable=False)
        await second.open()  # DataFolderInUse if the failed open kept the lock
        second.close()
        first.close()

    asyncio.run(scenario())


@needs_syncfs
def test_syncfs_flushes_and_reports_a_bad_descriptor(tmp_path: Path) -> None:
    syncfs = load_syncfs()
    assert syncfs is not None  # Linux, glibc: CI runs here
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        syncfs(fd)
    finally:
        os.close(fd)
    with pytest.raises(OSError, match="Bad file descriptor") as info:
        syncfs(-1)  # never a descriptor (a closed one could be reused by another thread)
    assert info.value.errno == errno.EBADF


@needs_syncfs
@pytest.mark.parametrize(
    ("code", "batched"), [(errno.ENOSYS, False), (errno.EINVAL, False), (errno.EIO, None)]
)
def test_a_filesystem_without_syncfs_flushes_each_file(
    tmp_path: Path, code: int, batched: bool | None
) -> None:
    """The probe at open: "not implemented" falls back to fsync per file; EIO fails."""
    store = FileStore(tmp_path / "data", durable=True, batched=True, workers=1)

    def syncfs(fd: int) -> None:
        raise OSError(code, os.strerror(code))

    store._syncfs = syncfs
    try:
        if batched is None:
            with pytest.raises(OSError, match="Input/output error"):
                run(store.open)
            # A failed open keeps nothing: the folder can be opened again.
            again = FileStore(tmp_path / "data", durable=True, batched=True, workers=1)
            run(again.open)
            assert again.batched
            again.close()
            return
        run(store.open)
        assert store.batched is batched
        assert store.sync_each
        store.flush_all()  # a no-op now
    finally:
        store.close()


@pytest.mark.parametrize(
    ("release", "reports"),
    [
        ("6.18.44-fc-v595", True),
        ("5.8.0", True),
        ("5.10.0-28-amd64", True),
        ("5.4.0-150-generic", False),
        ("4.18.0-553.el8_10.x86_64", False),
        ("garbage", False),
    ],
)
def test_syncfs_is_relied_on_from_linux_5_8(release: str, reports: bool) -> None:
    """Before 5.8 syncfs returns 0 after a failed writeback: each file is fsynced."""
    assert reports_errors(release) is reports


@pytest.fixture
def tmp_on_another_disk(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A data folder whose tmp/ links to /dev/shm (another filesystem): (root, there)."""
    elsewhere = Path("/dev/shm") / f"archive-test-{os.getpid()}"
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same filesystem as tmp_path")
    elsewhere.mkdir()
    root = tmp_path / "data"
    root.mkdir()
    (root / "tmp").symlink_to(elsewhere)
    try:
        yield root, elsewhere
    finally:
        shutil.rmtree(elsewhere)


@needs_syncfs
def test_a_folder_linked_to_another_filesystem_is_flushed_too(
    tmp_on_another_disk: tuple[Path, Path],
) -> None:
    root, elsewhere = tmp_on_another_disk
    store = FileStore(root, durable=True, batched=True, workers=1)
    flushed: list[str] = []
    try:
        run(store.open)
        assert store._syncfs is not None
        store._syncfs = lambda fd: flushed.append(os.readlink(f"/proc/self/fd/{fd}"))
        store.flush_all()
        assert flushed == [str(root), str(elsewhere)]
    finally:
        store.close()


@needs_syncfs
def test_a_linked_filesystem_without_syncfs_turns_batching_off(
    tmp_on_another_disk: tuple[Path, Path],
) -> None:
    """Each filesystem added for flushing is tried once, as the data folder's is: one
    that cannot syncfs makes the store flush each file, instead of failing every
    flush_all (and so every start) later."""
    root, elsewhere = tmp_on_another_disk
    store = FileStore(root, durable=True, batched=True, workers=1)

    def syncfs(fd: int) -> None:
        if os.fstat(fd).st_dev == elsewhere.stat().st_dev:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    store._syncfs = syncfs
    try:
        run(store.open)
        assert not store.batched
        assert store.sync_each
        assert store._flush_fds == []
        store.flush_all()  # a no-op now, not an error
    finally:
        store.close()
