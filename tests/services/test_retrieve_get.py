"""The C-GET provider (archive/services/retrieve.py) without a network.

A real index, real stored files and a fake channel (the caller's association)
whose C-STORE answers are chosen per instance: final statuses and counts, the
asynchronous operations window, C-CANCEL, Pending responses; and the stored files
themselves: a missing or empty file fails its sub-operation only, each file is
closed once, never under a read still in the I/O pool, and closing the provider
early stops its workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import struct
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import pytest

from archive.dicom.dataset import Element, encode_dataset
from archive.dicom.dimse import CGetRq, CGetRsp, CStoreRq, CStoreRsp
from archive.dicom.filemeta import FileMeta, encode_file_meta
from archive.index import Index, IndexReadError, InstanceRow, StoredInstance
from archive.services import retrieve
from archive.services.base import Cancel, Request, Response
from archive.services.retrieve import Retriever, c_get_provider
from archive.store import DatasetReader, scan, sources
from archive.store.sources import FileSource
from tests.index import run
from tests.interop.qrhelpers import CT_IMAGE, MR_IMAGE, STUDY_ROOT_GET
from tests.interop.storehelpers import split_part10
from tests.services.retrievehelpers import (
    ELE,
    ILE,
    Channel,
    Context,
    Files,
    T,
    counts,
    failed_uids,
    indexed,
    retrieve_request,
)
from tests.store.helpers import evict, needs_openat2


def get(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    channel: Channel,
    *,
    level: str = "STUDY",
    uid: str | None = None,
    cancel_after: int | None = None,
) -> list[Response]:
    """The C-GET provider's responses; ``cancel_after`` stores, the caller cancels."""
    root, stored = corpus_files

    async def go() -> list[Response]:
        async with indexed(tmp_path, stored) as index:
            cancel = Cancel()
            channel.cancel, channel.cancel_after = cancel, cancel_after
            command = CGetRq(message_id=3, affected_sop_class_uid=STUDY_ROOT_GET)
            req = retrieve_request(
                command,
                level,
                uid or stored[0].attrs.study_instance_uid,
                channel=channel,
                cancel=cancel,
            )
            return [r async for r in c_get_provider(index, Files(root))(req)]

    return run(go())


class SlowChannel(Channel):
    """A peer that takes 20 ms per C-STORE: the provider reports between them."""

    async def store(
        self, context_id: int, command: CStoreRq, chunks: AsyncIterator[bytes | memoryview]
    ) -> CStoreRsp:
        await asyncio.sleep(0.02)
        return await super().store(context_id, command, chunks)


# ---- the C-GET provider -----------------------------------------------------------------


def test_get_all_completed_bytes_as_stored(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    root, stored = corpus_files
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get(corpus_files, tmp_path, channel)
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    assert responses[-1].dataset is None
    for item in stored:
        data = split_part10((root / item.path).read_bytes())[1]
        assert channel.received[item.attrs.sop_instance_uid] == data
    # Each instance went on the context of its own transfer syntax.
    by_uid = {c.affected_sop_instance_uid: cx for cx, c in channel.commands}
    for item in stored:
        assert by_uid[item.attrs.sop_instance_uid] == (1 if item.transfer_syntax_uid == ELE else 3)
    assert [c.message_id for _, c in channel.commands] == [1, 2, 3, 4, 5]
    assert all(c.move_originator_ae is None for _, c in channel.commands)


class PoolFiles(Files):
    """InstanceFiles whose ``run`` uses a real thread, as the store's I/O pool does."""

    def __init__(self, root: Path, pool: ThreadPoolExecutor) -> None:
        super().__init__(root)
        self.pool = pool

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)


def c_get_in_pool(
    root: Path,
    stored: list[StoredInstance],
    tmp_path: Path,
    files: Callable[[Path, ThreadPoolExecutor], PoolFiles] = PoolFiles,
) -> tuple[list[Response], Channel]:
    """A C-GET of the study from the files under ``root`` through ``files`` over a
    real thread pool (10 s at most): its responses and the channel it sent on."""
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])

    async def go() -> list[Response]:
        with ThreadPoolExecutor(2) as pool:
            async with indexed(tmp_path, stored) as index:
                command = CGetRq(message_id=3, affected_sop_class_uid=STUDY_ROOT_GET)
                req = retrieve_request(
                    command, "STUDY", stored[0].attrs.study_instance_uid, channel=channel
                )
                provider = c_get_provider(index, files(root, pool))
                return [r async for r in provider(req)]

    return asyncio.run(asyncio.wait_for(go(), 10)), channel


def get_through_pool(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    files: Callable[[Path, ThreadPoolExecutor], PoolFiles],
) -> None:
    """A C-GET of the study with ``files`` over a real thread pool: all five sent,
    each byte for byte."""
    root, stored = corpus_files
    responses, channel = c_get_in_pool(root, stored, tmp_path, files)
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    for item in stored:
        data = split_part10((root / item.path).read_bytes())[1]
        assert channel.received[item.attrs.sop_instance_uid] == data


@pytest.mark.skipif(not hasattr(os, "RWF_NOWAIT"), reason="no preadv RWF_NOWAIT here")
@pytest.mark.parametrize("evicted", [False, True])
def test_files_are_read_on_the_loop_only_when_cached(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    evicted: bool,
) -> None:
    """Cached files are read on the loop; files out of the page cache in the I/O
    pool (never a wait for the disk on the loop). The bytes are the same either way."""
    root, stored = corpus_files
    for item in stored:
        if evicted:
            evict(root / item.path)
        else:
            (root / item.path).read_bytes()  # in the cache, whatever ran before
    reads: list[tuple[str, bool]] = []  # (how, on the loop's thread)
    for name in ("first_read", "first_cached"):
        real = getattr(DatasetReader, name)

        def spy(self: DatasetReader, real: Any = real, name: str = name) -> Any:
            result = real(self)
            if result is not None:
                reads.append((name, threading.current_thread() is threading.main_thread()))
            return result

        monkeypatch.setattr(DatasetReader, name, spy)
    get_through_pool(corpus_files, tmp_path, PoolFiles)
    expected = ("first_read", False) if evicted else ("first_cached", True)
    assert reads == [expected] * 5


@pytest.mark.parametrize(
    "where",
    [pytest.param("cached", marks=needs_openat2), "uncached", "remote", "remote-evicted"],
)
def test_files_are_opened_on_the_loop_when_local_and_cached(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """Opening a file whose path and inode are cached, on a local filesystem, needs
    no pool job; one that would wait for the disk (open_cached gives -1), or any on
    a network filesystem (whose open may ask its server), is opened, and closed,
    in the pool.
    The bytes sent are the same either way."""
    if where == "uncached":
        monkeypatch.setattr(scan, "open_cached", lambda path: -1)
    if where == "remote-evicted":
        # Every read in the pool: the last one closes the file there.
        monkeypatch.setattr(scan, "read_cached", lambda fd, offset, size: None)
    jobs: list[str] = []

    class CountingFiles(PoolFiles):
        def __init__(self, root: Path, pool: ThreadPoolExecutor) -> None:
            super().__init__(root, pool)
            self.local = not where.startswith("remote")

        async def run(self, fn: Callable[..., T], *args: object) -> T:
            jobs.append(getattr(fn, "__name__", ""))
            return await super().run(fn, *args)

    get_through_pool(corpus_files, tmp_path, CountingFiles)
    opens = jobs.count("_open_all")
    assert opens == 0 if where == "cached" else opens >= 1
    # A remote file's fstat and close may ask its server: in the pool, each one,
    # unless its last read, in the pool, closed it already.
    assert jobs.count("close") == (5 if where == "remote" else 0)


@needs_openat2  # else every file opens in the pool: no mixed batch
def test_a_batch_of_cached_uncached_and_missing_files(tmp_path: Path) -> None:
    """One open_ahead: each source gets its own file's bytes or its own error,
    whichever way it was opened."""
    files = [tmp_path / f"{n}.dcm" for n in range(4)]
    for n, path in enumerate(files):
        meta = FileMeta(
            media_storage_sop_class_uid="1.2",
            media_storage_sop_instance_uid=f"1.2.{n}",
            transfer_syntax_uid=ELE,
        )
        path.write_bytes(encode_file_meta(meta) + bytes([n]) * 10)
    files[2].unlink()  # missing
    real = scan.open_cached
    uncached = {str(files[1]), str(files[3])}

    async def go() -> list[bytes | str]:
        sources = FileSource.open_ahead(Files(tmp_path), [p.name for p in files])
        got: list[bytes | str] = []
        for source in sources:
            try:
                got.append(bytes(await source.first()))
            except OSError as exc:
                got.append(type(exc).__name__)
            finally:
                source.close()
        return got

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scan, "open_cached", lambda p: -1 if str(p) in uncached else real(p))
        got = asyncio.run(go())
    assert got == [bytes([0]) * 10, bytes([1]) * 10, "FileNotFoundError", bytes([3]) * 10]


@pytest.mark.parametrize("cached", [True, False])
def test_a_fifo_in_place_of_a_stored_file_fails_its_sub_operation(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cached: bool,
) -> None:
    """A named pipe where a stored file was: opened without waiting for a writer
    (on the loop or in the pool), it fails that sub-operation only, at once."""
    shared, stored = corpus_files
    root = tmp_path / "store"  # a copy: the corpus is the module's
    shutil.copytree(shared, root)
    if not cached:
        monkeypatch.setattr(scan, "open_cached", lambda path: -1)
    target = root / stored[0].path
    target.unlink()
    os.mkfifo(target)
    responses, channel = c_get_in_pool(root, stored, tmp_path)
    assert counts(responses[-1]) == (0xB000, None, 4, 1, 0)
    assert stored[0].attrs.sop_instance_uid not in channel.received


def test_a_file_deleted_while_sent_is_closed_in_the_pool(tmp_path: Path) -> None:
    """Its last close may free its blocks: not on the loop. One still linked is
    closed at once, on the loop (cheap)."""
    kept, gone = tmp_path / "kept.dcm", tmp_path / "gone.dcm"
    part10 = encode_file_meta(
        FileMeta(
            media_storage_sop_class_uid=CT_IMAGE,
            media_storage_sop_instance_uid="1.2.3",
            transfer_syntax_uid=ELE,
        )
    )
    for path in (kept, gone):
        path.write_bytes(part10 + b"data")
    closes: list[tuple[str, bool]] = []
    real = DatasetReader.close

    def close(self: DatasetReader) -> None:
        if not self.done or self._fd >= 0:
            on_loop = threading.current_thread() is threading.main_thread()
            closes.append((Path(self.path).name, on_loop))
        real(self)

    async def go() -> None:
        with ThreadPoolExecutor(1) as pool:
            files = PoolFiles(tmp_path, pool)
            sources = FileSource.open_ahead(files, ["kept.dcm", "gone.dcm"])
            for source in sources:
                await source.first()
            gone.unlink()
            for source in sources:
                source.close()
            for _ in range(100):
                if len(closes) == 2:
                    break
                await asyncio.sleep(0.01)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatasetReader, "close", close)
        asyncio.run(go())
    assert sorted(closes) == [("gone.dcm", False), ("kept.dcm", True)]


@pytest.mark.parametrize("window", [2, 3, 8])
def test_get_with_an_asynchronous_operations_window(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path, window: int
) -> None:
    """With a window agreed, sub-operations overlap, never more than the window, and
    five instances keep as many busy as the window allows (a worker opens the next
    one ahead only while the queue holds one for every worker); each instance goes
    exactly once."""
    root, stored = corpus_files
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)], window=window)
    responses = get(corpus_files, tmp_path, channel)
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    # A worker that held a second file while another had none would starve it
    # (and, in a C-MOVE, leave rows for a failing association to fail).
    assert channel.most_in_flight == min(window, 5)
    assert sorted(c.affected_sop_instance_uid for _, c in channel.commands) == sorted(
        s.attrs.sop_instance_uid for s in stored
    )
    for item in stored:
        data = split_part10((root / item.path).read_bytes())[1]
        assert channel.received[item.attrs.sop_instance_uid] == data
    assert sorted(c.message_id for _, c in channel.commands) == [1, 2, 3, 4, 5]


def test_get_statuses_per_suboperation(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    _, stored = corpus_files
    explicit = [s.attrs.sop_instance_uid for s in stored if s.transfer_syntax_uid == ELE]
    implicit = [s.attrs.sop_instance_uid for s in stored if s.transfer_syntax_uid == ILE]
    channel = Channel(
        [Context(1, CT_IMAGE, ELE)],  # Implicit VR instances have no context
        answers={explicit[0]: 0xA700, explicit[1]: 0xB007},
    )
    responses = get(corpus_files, tmp_path, channel)
    assert counts(responses[-1]) == (0xB000, None, 1, 3, 1)
    assert sorted(failed_uids(responses[-1])) == sorted([explicit[0], *implicit])
    final = responses[-1].command
    assert isinstance(final, CGetRsp)
    assert final.has_dataset
    assert sorted(channel.received) == sorted(explicit)


def test_a_destination_s_error_comment_stays_out_of_the_log(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """PACSs put patient IDs and names in an Error Comment: the failure is logged
    (WARNING, its status), the peer's free text only at DEBUG."""
    _, stored = corpus_files
    explicit = [s.attrs.sop_instance_uid for s in stored if s.transfer_syntax_uid == ELE]
    channel = Channel(
        [Context(1, CT_IMAGE, ELE)],
        answers={explicit[0]: 0xA700},
        comments={explicit[0]: "ZZPID123 conflicts with ZZNAME^QQ"},
    )
    caplog.set_level(logging.DEBUG, logger="archive.retrieve")
    get(corpus_files, tmp_path, channel)
    shown = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any(f"{explicit[0]}: status 0xa700" in line for line in shown), shown
    assert not any("ZZ" in line for line in shown), shown
    assert any("ZZPID123" in r.getMessage() for r in caplog.records)  # at DEBUG


def test_get_all_failed_is_a702_with_the_list(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    _, stored = corpus_files
    channel = Channel([Context(1, MR_IMAGE, ELE)])
    responses = get(corpus_files, tmp_path, channel)
    assert counts(responses[-1]) == (0xA702, None, 0, 5, 0)
    assert sorted(failed_uids(responses[-1])) == sorted(s.attrs.sop_instance_uid for s in stored)
    assert channel.received == {}


def test_get_cancelled_reports_remaining(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get(corpus_files, tmp_path, channel, cancel_after=2)
    # PS3.4 C.4.3.1.4: after a cancel the final response carries Remaining too.
    assert counts(responses[-1]) == (0xFE00, 3, 2, 0, 0)
    assert len(channel.received) == 2
    assert responses[-1].dataset is None


def test_get_cancelled_with_a_window_counts_what_was_in_flight(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """Sub-operations already in flight when the cancel arrives finish and count as
    completed; none starts after it; the rest are Remaining (PS3.4 C.4.3.1.4)."""
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)], window=3)
    responses = get(corpus_files, tmp_path, channel, cancel_after=2)
    status, remaining, completed, failed, warning = counts(responses[-1])
    assert status == 0xFE00
    assert completed == len(channel.received)
    assert 2 <= completed <= 4  # the two, and those in flight beside them
    assert channel.begun_after_cancel == []
    assert remaining == 5 - completed
    assert (failed, warning) == (0, 0)


def test_no_pending_response_follows_a_cancel(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """Sub-operations in flight at a C-CANCEL end; each worker's end woke the
    progress loop, and a Pending response went out for it after the cancel (three
    within 10 ms in a review's run). PS3.4 C.4.3.3.1: interrupt, and answer
    Canceled: the final response is all that follows."""
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)], window=3)
    responses = get(corpus_files, tmp_path, channel, cancel_after=2)
    assert [counts(r)[0] for r in responses] == [0xFE00]


def test_an_index_that_cannot_be_read_refuses_the_retrieve(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQLite failing to read (here: too many variables, a disk I/O error) ended in
    an aborted association (review); A701, Unable to calculate number of matches
    (PS3.4 Table C.4-3), now."""

    async def broken(self: Index, query: object) -> list[InstanceRow]:
        raise IndexReadError("the index could not be read: disk I/O error")

    monkeypatch.setattr(Index, "retrieve", broken)
    channel = Channel([Context(1, CT_IMAGE, ELE)])
    responses = get(corpus_files, tmp_path, channel)
    final = responses[-1].command
    assert isinstance(final, CGetRsp)
    assert (len(responses), final.status) == (1, 0xA701)
    assert final.error_comment == "the index could not be read"
    assert channel.received == {}


def test_get_nothing_selected_is_success(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    channel = Channel([Context(1, CT_IMAGE, ELE)])
    responses = get(corpus_files, tmp_path, channel, uid="9.9.9")
    assert [counts(r) for r in responses] == [(0x0000, None, 0, 0, 0)]


def test_get_without_the_unique_key_is_a900(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """SERIES level with only a Study Instance UID: the level's unique key is missing."""
    channel = Channel([Context(1, CT_IMAGE, ELE)])
    root, stored = corpus_files

    async def go() -> list[Response]:
        async with await Index.open(tmp_path / "index.sqlite", durability="fast") as index:
            data = encode_dataset(
                [
                    Element(0x00080052, "CS", b"SERIES"),
                    Element(0x0020000D, "UI", stored[0].attrs.study_instance_uid.encode()),
                ],
                ELE,
            )
            command = CGetRq(message_id=3, affected_sop_class_uid=STUDY_ROOT_GET)
            req = retrieve_request(command, "STUDY", "1")
            req = Request(
                **{
                    **{f: getattr(req, f) for f in req.__struct_fields__},
                    "identifier": data,
                    "channel": channel,
                }
            )
            return [r async for r in c_get_provider(index, Files(root))(req)]

    responses = run(go())
    assert len(responses) == 1
    final = responses[0].command
    assert isinstance(final, CGetRsp)
    assert final.status == 0xA900
    assert final.offending_element == (0x0020000E,)  # the Series Instance UID it lacks
    assert channel.received == {}


def test_get_pending_responses_carry_the_counts(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pending C-GET-RSPs (at most one per PENDING_INTERVAL): remaining falls and
    every response adds up to the total (PS3.4 C.4.3.1.4)."""
    monkeypatch.setattr(retrieve, "PENDING_INTERVAL", 0.001)
    channel = SlowChannel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get(corpus_files, tmp_path, channel)
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    pendings = [counts(r) for r in responses[:-1]]
    assert len(pendings) >= 3  # one per sub-operation, bar the last
    assert all(p[0] == 0xFF00 for p in pendings)
    remaining = [p[1] for p in pendings]
    assert remaining == sorted(remaining, reverse=True)  # type: ignore[type-var]
    assert len(set(remaining)) == len(remaining)
    assert all(p[1] + p[2] + p[3] + p[4] == 5 for p in pendings)  # type: ignore[operator]


# ---- the stored files -------------------------------------------------------------------


def test_get_with_a_missing_file_fails_that_suboperation_only(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """The file is read (ahead) before its C-STORE-RQ goes out: nothing half-sent."""
    root, stored = corpus_files
    lost = stored[1]
    broken = [msgspec.structs.replace(s, path="instances/gone.dcm") if s is lost else s
              for s in stored]  # fmt: skip
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get((root, broken), tmp_path, channel)
    assert counts(responses[-1]) == (0xB000, None, 4, 1, 0)
    assert failed_uids(responses[-1]) == [lost.attrs.sop_instance_uid]
    assert lost.attrs.sop_instance_uid not in channel.received
    assert len(channel.commands) == 4


@pytest.mark.parametrize("change", ["cut", "another instance", "another syntax"])
def test_get_of_a_file_changed_on_disk_fails_that_suboperation_only(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path, change: str
) -> None:
    """A file cut, overwritten by another instance's, or not in the transfer syntax
    its row names: sent, the peer would store a cut or another instance under this
    UID and answer Success (it did). Its sub-operation fails instead, unsent."""
    original, stored = corpus_files
    root = tmp_path / "store"
    shutil.copytree(original, root)
    changed = stored[1]
    uid = changed.attrs.sop_instance_uid
    path = root / changed.path
    rows = list(stored)
    if change == "cut":
        path.write_bytes(path.read_bytes()[:-100])
    elif change == "another instance":
        shutil.copyfile(root / stored[0].path, path)
    else:
        other = ILE if changed.transfer_syntax_uid == ELE else ELE
        rows = [msgspec.structs.replace(s, transfer_syntax_uid=other) if s is changed else s
                for s in stored]  # fmt: skip
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get((root, rows), tmp_path, channel)
    assert counts(responses[-1]) == (0xB000, None, 4, 1, 0)
    assert failed_uids(responses[-1]) == [uid]
    assert uid not in channel.received
    assert len(channel.commands) == 4


def test_get_of_an_instance_replaced_since_its_row_was_read(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """duplicates = "replace": a replacement committed after the rows were read
    removes the version a row names. The instance is held: its row is read again
    and the version it names now is sent, not a failed sub-operation."""
    root, stored = corpus_files
    replaced = stored[1]
    uid = replaced.attrs.sop_instance_uid

    class RowsReadBefore:
        """The index as the C-GET saw it when it selected: one row names the
        version the replacement removed since."""

        def __init__(self, index: Index) -> None:
            self.index = index

        async def retrieve(self, query: Any) -> list[InstanceRow]:
            rows = await self.index.retrieve(query)
            old = "instances/old-version.dcm"  # gone: removed after the commit
            return [msgspec.structs.replace(r, path=old) if r.sop_instance_uid == uid else r
                    for r in rows]  # fmt: skip

        async def instance(self, sop_instance_uid: str) -> InstanceRow | None:
            return await self.index.instance(sop_instance_uid)

    async def go(channel: Channel) -> list[Response]:
        async with indexed(tmp_path, stored) as index:
            command = CGetRq(message_id=3, affected_sop_class_uid=STUDY_ROOT_GET)
            req = retrieve_request(
                command, "STUDY", replaced.attrs.study_instance_uid, channel=channel
            )
            provider = c_get_provider(RowsReadBefore(index), Files(root))
            return [r async for r in provider(req)]

    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = run(go(channel))
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    assert channel.received[uid] == split_part10((root / replaced.path).read_bytes())[1]


def test_get_with_an_empty_file_fails_that_suboperation_only(
    corpus_files: tuple[Path, list[StoredInstance]], tmp_path: Path
) -> None:
    """A stored file cut to nothing (power loss under durability = "fast") is no
    Part 10 file: its sub-operation fails, the C-GET goes on."""
    root, stored = corpus_files
    empty = tmp_path / "instances" / "empty.dcm"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    lost = stored[2]
    broken = [msgspec.structs.replace(s, path=str(empty)) if s is lost else s for s in stored]
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get((root, broken), tmp_path, channel)
    assert counts(responses[-1]) == (0xB000, None, 4, 1, 0)
    assert failed_uids(responses[-1]) == [lost.attrs.sop_instance_uid]
    assert len(channel.commands) == 4


def test_each_file_is_closed_once(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[str] = []
    real = FileSource._closed

    def spy(self: FileSource, read: asyncio.Future[memoryview]) -> None:
        closed.append(str(self.reader.path))
        real(self, read)

    monkeypatch.setattr(FileSource, "_closed", spy)
    channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
    responses = get(corpus_files, tmp_path, channel)
    assert counts(responses[-1]) == (0x0000, None, 5, 0, 0)
    assert len(closed) == 5
    assert len(set(closed)) == 5


def test_cancelled_read_closes_the_file_after_the_read(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sub-operation cancelled while a chunk is read in the I/O pool: a read there
    cannot be stopped, so the file is closed once it ends, never under it (its
    descriptor could meanwhile be another file's)."""
    root, stored = corpus_files
    source = stored[0]
    big = tmp_path / "big.dcm"
    # Data Set Trailing Padding (FFFC,FFFC) OB: a data set of several chunks.
    padding = struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, 300_000) + bytes(300_000)
    big.write_bytes((root / source.path).read_bytes() + padding)
    monkeypatch.setattr(sources, "CHUNK", 1 << 16)  # the least a reader takes
    events: list[str] = []
    closed = asyncio.Event()
    real_close = DatasetReader.close

    def close(self: DatasetReader) -> None:
        events.append("close")
        closed.set()  # on the loop's thread: the reader is closed from callbacks
        real_close(self)

    monkeypatch.setattr(DatasetReader, "close", close)
    # As if the page cache held none of it: every chunk is read in the pool.
    monkeypatch.setattr(DatasetReader, "next_cached", lambda self: None)
    started, gate = threading.Event(), threading.Event()

    class GatedFiles(PoolFiles):
        """Runs calls in a real thread pool; the first chunk after the first one
        waits for ``gate``."""

        async def run(self, fn: Callable[..., T], *args: object) -> T:
            def call() -> T:
                if getattr(fn, "__name__", "") == "next" and not started.is_set():
                    started.set()
                    gate.wait(10)
                    result = fn(*args)
                    events.append("read end")
                    return result
                return fn(*args)

            return await super().run(call)

    row = InstanceRow(
        source.attrs.sop_instance_uid,
        source.attrs.study_instance_uid,
        source.attrs.series_instance_uid,
        source.attrs.sop_class_uid,
        str(big),
        big.stat().st_size,
        source.digest,
        source.transfer_syntax_uid,
    )

    async def scenario() -> list[str]:
        with ThreadPoolExecutor(2) as pool:
            try:
                retriever = Retriever(
                    GatedFiles(root, pool), [row], None, priority=0, originator=None
                )
                channel = Channel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])
                task = asyncio.ensure_future(retriever.run(channel))
                await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                for _ in range(5):
                    await asyncio.sleep(0)  # any close callback already due runs now
                before = list(events)
                gate.set()
                await closed.wait()
                return before
            finally:
                gate.set()

    assert run(scenario()) == []  # nothing closed while the read was in the pool
    assert events == ["read end", "close"]


def test_get_closed_early_stops_its_workers_at_once(
    corpus_files: tuple[Path, list[StoredInstance]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The driver closes the provider after a pending response (the association
    went away): the sub-operations stop then, not when the GC gets to them."""
    monkeypatch.setattr(retrieve, "PENDING_INTERVAL", 0.001)
    root, stored = corpus_files
    channel = SlowChannel([Context(1, CT_IMAGE, ELE), Context(3, CT_IMAGE, ILE)])

    async def go() -> list[asyncio.Task[object]]:
        async with indexed(tmp_path, stored) as index:
            command = CGetRq(message_id=3, affected_sop_class_uid=STUDY_ROOT_GET)
            req = retrieve_request(
                command, "STUDY", stored[0].attrs.study_instance_uid, channel=channel
            )
            responses = c_get_provider(index, Files(root))(req)
            assert isinstance(responses, AsyncGenerator)
            first = await anext(responses)
            assert counts(first)[0] == 0xFF00
            await responses.aclose()
            return [
                task
                for task in asyncio.all_tasks()
                if task.get_coro().__qualname__ == "Retriever.run" and not task.done()
            ]

    assert run(go()) == []
    # Stopped then: not every sub-operation went on to the end after the close.
    assert len(channel.received) < 5
