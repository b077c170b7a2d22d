"""Failures lose nothing: disk full, I/O errors, index errors, associations cut short.

Each failure must give 0xA700 Refused: Out of Resources (PS3.4 Table B.2-1) where a
status can still be sent, leave no file in ``instances/`` or ``tmp/`` and no index
row, and the node must go on serving. Disk full is a real 2 MiB tmpfs when this
sandbox lets us mount one (we run as root), and fault injection besides: the
in-process node runs in a thread of the test process, so patching ``os.writev``,
``os.fsync`` and ``os.link`` reaches its I/O pool. The patches are process-wide
(archive/store/ calls them through the ``os`` module), so each one fails only
for the store's own part files, found by their /proc/self/fd link.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from archive.dicom.dimse import CStoreRq, command_pdus
from archive.dicom.uids import EXPLICIT_VR_LE
from archive.index import Index, IndexWriteError
from archive.net import associate
from archive.store import files, relative_path, writer
from tests.conftest import RunningNode
from tests.net.rawpeer import RawPeer, abort_bytes, p_data_pdu, wait_until
from tests.store.helpers import (
    CT_IMAGE,
    OUT_OF_RESOURCES,
    SUCCESS,
    Item,
    archive_store,
    archive_store_async,
    data_dir,
    fail_part_writes,
    index_row,
    instance_files,
    is_part,
    leftovers,
    make_dataset,
    needs_syncfs,
    raw_association,
    read_stored,
    record,
    sha256,
    stored_path,
)

NodeFactory = Callable[..., RunningNode]
MiB = 1 << 20


def settled(root: Path) -> None:
    """Nothing left behind. A stored instance's in-flight marker goes after its
    response (FileWriter.release: nobody waits for it), so it may linger a moment
    on a loaded machine; it must not stay."""
    wait_until(lambda: leftovers(root) == [], 5, f"no leftovers in {root}")


def assert_clean(node: RunningNode, *uids: str, stored: int = 0) -> None:
    """Nothing of ``uids`` anywhere; ``stored`` instance files in all."""
    root = data_dir(node)
    settled(root)
    assert len(instance_files(root)) == stored
    for uid in uids:
        assert not stored_path(root, uid).exists()
        assert record(node, uid) is None


def still_serving(node: RunningNode, stored: int) -> None:
    """A good instance is stored after the failure."""
    item = Item.of(make_dataset(pixel_bytes=1000), EXPLICIT_VR_LE)
    assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [SUCCESS]
    root = data_dir(node)
    assert read_stored(root, item.uid)[1] == item.data
    assert len(instance_files(root)) == stored + 1
    settled(root)


# ---- disk full: a real small filesystem -----------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted under tmp_path (skip where mount is not permitted)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
        timeout=10,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False, timeout=10).returncode:
            subprocess.run(["umount", "-l", str(mount_point)], check=False, timeout=10)


def test_disk_full_on_a_real_filesystem(small_disk: Path, node_factory: NodeFactory) -> None:
    node = node_factory(data_dir=str(small_disk / "data"))
    first = Item.of(make_dataset(pixel_bytes=100_000), EXPLICIT_VR_LE)
    assert archive_store(node.port, [first], EXPLICIT_VR_LE) == [SUCCESS]
    big = Item.of(make_dataset(pixel_bytes=3 * MiB), EXPLICIT_VR_LE)
    assert archive_store(node.port, [big], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    assert_clean(node, big.uid, stored=1)
    assert read_stored(data_dir(node), first.uid)[1] == first.data
    # The space is back: the same association takes small instances again.
    smalls = [Item.of(make_dataset(pixel_bytes=20_000), EXPLICIT_VR_LE) for _ in range(3)]
    assert archive_store(node.port, [big, *smalls], EXPLICIT_VR_LE) == [
        OUT_OF_RESOURCES,
        SUCCESS,
        SUCCESS,
        SUCCESS,
    ]
    assert_clean(node, big.uid, stored=4)


def fill(disk: Path) -> Path:
    """Take every free block of ``disk`` (a file of zeros); returns that file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        for size in (64 << 10, 512, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, bytes(size)):
                    pass
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("flush", ["batch", "file"])
@pytest.mark.parametrize("policy", ["keep", "reject", "replace"])
def test_a_full_disk_still_answers_what_is_held(
    small_disk: Path, node_factory: NodeFactory, policy: str, flush: str
) -> None:
    """A modality's retries of what the archive holds are answered while the
    disk is full: identical content needs no new file, nor other content under
    keep or reject. What needs space (new, or a replacement) gets 0xA700."""
    toml = f'[store]\nduplicates = "{policy}"\nflush = "{flush}"\n'
    node = node_factory(data_dir=str(small_disk / "data"), toml=toml)
    # One below the write-behind size (placed in one trip), one above (written behind).
    uids = ["1.2.826.0.1.3680043.2.1125.7001", "1.2.826.0.1.3680043.2.1125.7002"]
    held = [
        Item.of(make_dataset(sop_instance_uid=uid, pixel_bytes=size), EXPLICIT_VR_LE)
        for uid, size in zip(uids, (2_000, 200_000), strict=True)
    ]
    other = [
        Item.of(
            make_dataset(sop_instance_uid=uid, pixel_bytes=size, patient_id="PID-2"),
            EXPLICIT_VR_LE,
        )
        for uid, size in zip(uids, (2_000, 200_000), strict=True)
    ]
    assert archive_store(node.port, held, EXPLICIT_VR_LE) == [SUCCESS, SUCCESS]
    filler = fill(small_disk)
    new = Item.of(make_dataset(pixel_bytes=2_000), EXPLICIT_VR_LE)
    statuses = archive_store(node.port, [*held, *other, new], EXPLICIT_VR_LE)
    other_status = {"keep": SUCCESS, "reject": 0x0111, "replace": OUT_OF_RESOURCES}[policy]
    assert statuses == [SUCCESS, SUCCESS, other_status, other_status, OUT_OF_RESOURCES]
    root = data_dir(node)
    for item in held:
        assert read_stored(root, item.uid)[1] == item.data
    assert_clean(node, new.uid, stored=2)
    filler.unlink()
    assert archive_store(node.port, [new], EXPLICIT_VR_LE) == [SUCCESS]


# ---- disk full and I/O errors: fault injection ------------------------------------------


@pytest.mark.usefixtures("python_twin")
def test_disk_full_injected_in_writev(node: RunningNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """writev writes part of a batch, then ENOSPC: 0xA700, the part file removed."""
    real = os.writev
    written = {"bytes": 0}

    def writev(fd: int, buffers: Any) -> int:
        if not is_part(fd):
            return real(fd, buffers)
        if written["bytes"] >= MiB:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real(fd, [memoryview(buffers[0])[:4096]])  # a short write first
        written["bytes"] += n + MiB
        return n

    monkeypatch.setattr(os, "writev", writev)
    big = Item.of(make_dataset(pixel_bytes=3 * MiB), EXPLICIT_VR_LE)
    assert archive_store(node.port, [big], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    assert written["bytes"] >= MiB
    assert_clean(node, big.uid)
    monkeypatch.undo()
    still_serving(node, stored=0)


@pytest.mark.usefixtures("python_twin")
def test_enospc_is_reported_as_no_space(node: RunningNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """The error comment of the 0xA700 names the cause (PS3.7 C.4.2 Error Comment)."""
    fail_part_writes(monkeypatch, errno.ENOSPC)
    item = Item.of(make_dataset(pixel_bytes=10_000), EXPLICIT_VR_LE)
    (rsp,) = asyncio.run(archive_store_async(node.port, [item], EXPLICIT_VR_LE))
    assert rsp.status == OUT_OF_RESOURCES
    assert rsp.error_comment is not None
    assert "No space left on device" in rsp.error_comment
    assert_clean(node, item.uid)


def test_io_error_on_fsync(node_factory: NodeFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """flush = "file": each file is flushed alone, and a failed fsync fails its store."""
    node = node_factory(toml='[store]\nflush = "file"\n')
    real = os.fsync
    failed: list[int] = []

    def fsync(fd: int) -> None:
        if is_part(fd):
            failed.append(fd)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    items = [Item.of(make_dataset(pixel_bytes=n), EXPLICIT_VR_LE) for n in (500, 2 * MiB)]
    assert archive_store(node.port, items, EXPLICIT_VR_LE) == [OUT_OF_RESOURCES] * 2
    assert len(failed) == 2
    assert_clean(node, *(item.uid for item in items))
    monkeypatch.undo()
    still_serving(node, stored=0)


@pytest.mark.usefixtures("python_twin")
def test_enospc_on_link(node: RunningNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """Placing the file fails (a full directory): 0xA700, the part file removed."""
    real = os.link

    def link(src: Any, dst: Any, **kw: Any) -> None:
        if str(src).endswith(".part"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(src, dst, **kw)

    monkeypatch.setattr(os, "link", link)
    item = Item.of(make_dataset(pixel_bytes=5000), EXPLICIT_VR_LE)
    assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    assert_clean(node, item.uid)
    monkeypatch.undo()
    still_serving(node, stored=0)


@pytest.mark.parametrize("module", [files, writer], ids=["new folder", "after the link"])
def test_directory_fsync_error(
    node_factory: NodeFactory, monkeypatch: pytest.MonkeyPatch, module: object
) -> None:
    """flush = "file": EIO flushing a directory under instances/, the parent of a new
    fan-out folder (files.py) or the folder of the file just linked (writer.py),
    gives 0xA700, and the linked file is removed (not left at its final path with
    no row)."""
    node = node_factory(toml='[store]\nflush = "file"\n')
    real = files._fsync_dir
    failed: list[Path] = []

    def fsync_dir(path: Path) -> None:
        if "instances" in str(path):
            failed.append(path)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(path)

    monkeypatch.setattr(module, "_fsync_dir", fsync_dir)
    item = Item.of(make_dataset(pixel_bytes=5000), EXPLICIT_VR_LE)
    assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    assert failed  # the patched flush was the one that failed
    monkeypatch.undo()
    # The same instance sent again once the disk is healthy is stored.
    assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [SUCCESS]
    assert_clean(node, stored=1)


def two_versions() -> tuple[Item, Item]:
    """An instance and another data set with its SOP Instance UID (a replacement)."""
    first = Item.of(make_dataset(pixel_bytes=3000, seed=1), EXPLICIT_VR_LE)
    other = make_dataset(pixel_bytes=5000, seed=2, patient_name="New^Name")
    other.SOPInstanceUID = first.uid
    return first, Item.of(other, EXPLICIT_VR_LE)


@contextlib.contextmanager
def failing_flush(node: RunningNode) -> Iterator[list[int]]:
    """The node's syncfs fails with EIO while inside; yields the descriptors it got."""
    assert node.node is not None
    files_ = node.node.storage.files
    assert files_.batched
    real = files_._syncfs
    calls: list[int] = []

    def syncfs(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    files_._syncfs = syncfs
    try:
        yield calls
    finally:
        files_._syncfs = real


@needs_syncfs
def test_failed_batch_flush_refuses_and_stops_ingest_until_restart(
    node_factory: NodeFactory,
) -> None:
    """flush = "batch" (the default): the syncfs after a commit fails with EIO.

    Its stores get 0xA700 and leave nothing (row taken back, file discarded);
    as the OS may have dropped what it could not write, no later store is
    acknowledged until a restart (PostgreSQL's rule after a failed fsync), which
    reads the last batch back and serves again.
    """
    node = node_factory()
    first, second = (
        Item.of(make_dataset(pixel_bytes=n, seed=n), EXPLICIT_VR_LE) for n in (700, 900)
    )
    with failing_flush(node) as calls:
        rsps = asyncio.run(archive_store_async(node.port, [first, second], EXPLICIT_VR_LE))
    assert [r.status for r in rsps] == [OUT_OF_RESOURCES] * 2
    assert "not durable" in (rsps[0].error_comment or "")
    assert "until restart" in (rsps[1].error_comment or "")
    assert len(calls) == 1  # the second was never committed
    assert_clean(node, first.uid, second.uid)
    root = data_dir(node)
    node.stop()
    restarted = node_factory(data_dir=str(root))
    assert_clean(restarted, first.uid, second.uid)
    still_serving(restarted, stored=0)


@needs_syncfs
def test_failed_flush_of_a_replacement_keeps_the_old_version(
    node_factory: NodeFactory,
) -> None:
    """duplicates = "replace" and the flush after the replacement's commit fails: 0xA700,
    the SCU's retries get 0xA700 too (nothing is acknowledged until a restart), and
    after the restart the version acknowledged first is the one indexed. (That an
    identical duplicate is refused too: see
    test_no_duplicate_is_acknowledged_after_a_failed_flush.)"""
    node = node_factory(toml='[store]\nduplicates = "replace"\n')
    old, new = two_versions()
    assert archive_store(node.port, [old], EXPLICIT_VR_LE) == [SUCCESS]
    with failing_flush(node):
        assert archive_store(node.port, [new], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    # Taken back: no row names the replacement's discarded file (the version
    # acknowledged first is indexed again at the restart, below).
    assert record(node, old.uid) is None
    assert archive_store(node.port, [new], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    assert archive_store(node.port, [old], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    root = data_dir(node)
    node.stop()
    restarted = node_factory(data_dir=str(root), toml='[store]\nduplicates = "replace"\n')
    stored = record(restarted, old.uid)
    assert stored is not None
    assert stored.digest == sha256(old.data)
    assert read_stored(root, old.uid)[1] == old.data
    settled(root)
    assert len(instance_files(root)) == 1


@needs_syncfs
def test_no_duplicate_is_acknowledged_after_a_failed_flush(node_factory: NodeFactory) -> None:
    """An instance held and flushed long ago, sent again identical after a flush
    failed: 0xA700 too, as nothing at all is acknowledged until the restart."""
    node = node_factory()
    held = Item.of(make_dataset(pixel_bytes=2000, seed=1), EXPLICIT_VR_LE)
    other = Item.of(make_dataset(pixel_bytes=2000, seed=2), EXPLICIT_VR_LE)
    assert archive_store(node.port, [held], EXPLICIT_VR_LE) == [SUCCESS]
    with failing_flush(node):
        assert archive_store(node.port, [other], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    (rsp,) = asyncio.run(archive_store_async(node.port, [held], EXPLICIT_VR_LE))
    assert rsp.status == OUT_OF_RESOURCES
    assert "until restart" in (rsp.error_comment or "")
    assert record(node, held.uid) is not None  # still held, untouched


# ---- index failures -----------------------------------------------------------------------


def test_index_failure_removes_the_placed_file(
    node: RunningNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    async def add(self: Index, item: Any) -> None:
        # The file is in place when the index is asked: the failure must undo it.
        assert stored_path(data_dir(node), item.attrs.sop_instance_uid).exists()
        seen.append(item.attrs.sop_instance_uid)
        raise IndexWriteError("disk I/O error")

    monkeypatch.setattr(Index, "add", add)
    item = Item.of(make_dataset(pixel_bytes=5000), EXPLICIT_VR_LE)
    assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    assert seen == [item.uid]
    assert_clean(node, item.uid)
    monkeypatch.undo()
    # The same instance, sent again, is stored: nothing of the failed one is in the way.
    assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [SUCCESS]
    assert read_stored(data_dir(node), item.uid)[1] == item.data


def test_index_failure_on_replace_keeps_the_old_instance(
    node_factory: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replacement whose index transaction fails leaves the instance held, file and
    row, as it was (PS3.4 B.2.3: a failure status means nothing was stored)."""
    node = node_factory(toml='[store]\nduplicates = "replace"\n')
    first, other = two_versions()
    assert archive_store(node.port, [first], EXPLICIT_VR_LE) == [SUCCESS]

    async def replace(self: Index, item: Any) -> None:
        raise IndexWriteError("disk I/O error")

    monkeypatch.setattr(Index, "replace", replace)
    assert archive_store(node.port, [other], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    root = data_dir(node)
    stored = record(node, first.uid)
    assert stored is not None
    assert stored.digest == sha256(first.data)
    assert read_stored(root, first.uid)[1] == first.data
    settled(root)


# ---- cleanup failures: the status stands --------------------------------------------------


@contextlib.contextmanager
def failing_unlink(fails: Callable[[str], bool], error: int) -> Iterator[list[str]]:
    """os.unlink fails with ``error`` for the paths ``fails`` picks; yields them."""
    real = os.unlink
    failed: list[str] = []

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        if fails(os.fspath(path)):
            failed.append(os.fspath(path))
            raise OSError(error, os.strerror(error), os.fspath(path))
        real(path, *args, **kwargs)

    os.unlink = unlink
    try:
        yield failed
    finally:
        os.unlink = real


def _is_part_path(path: str) -> bool:
    return path.endswith(".part")


@pytest.mark.usefixtures("python_twin")
def test_a_part_file_that_cannot_be_removed_after_a_write_error(
    node_factory: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EIO writing, then EROFS removing the part file (ext4 with errors=remount-ro):
    still 0xA700, not an aborted association; the part file is the next start's."""
    node = node_factory()
    fail_part_writes(monkeypatch, errno.EIO)
    item = Item.of(make_dataset(pixel_bytes=MiB), EXPLICIT_VR_LE)
    with failing_unlink(_is_part_path, errno.EROFS) as failed:
        assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    assert failed
    monkeypatch.undo()
    root = data_dir(node)
    assert [p.name for p in leftovers(root)] == [Path(failed[0]).name]
    node.stop()
    restarted = node_factory(data_dir=str(root))
    assert_clean(restarted, item.uid)
    still_serving(restarted, stored=0)


def test_a_part_file_that_cannot_be_removed_after_an_identical_duplicate(
    node_factory: NodeFactory,
) -> None:
    """An identical duplicate is a Success with nothing to keep; failing to remove
    its part file must not turn that into an aborted association."""
    node = node_factory()
    item = Item.of(make_dataset(pixel_bytes=3000), EXPLICIT_VR_LE)
    assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [SUCCESS]
    root = data_dir(node)
    settled(root)
    before = index_row(root, item.uid)
    with failing_unlink(_is_part_path, errno.EIO) as failed:
        assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [SUCCESS]
    assert failed
    assert index_row(root, item.uid) == before
    node.stop()
    restarted = node_factory(data_dir=str(root))
    assert index_row(root, item.uid) == before
    assert read_stored(root, item.uid)[1] == item.data
    assert_clean(restarted, stored=1)


def test_a_placed_file_that_cannot_be_taken_back_after_a_flush_error(
    node_factory: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flush = "file": EIO flushing the folder of the file just linked, then EROFS
    taking the link back. Still 0xA700; the file stays at its place with no row,
    and its marker with it, so that the next start removes it (without the
    marker, nothing would ever find it)."""
    node = node_factory(toml='[store]\nflush = "file"\n')
    real = writer._fsync_dir

    def fsync_dir(path: Path) -> None:
        if "instances" in str(path):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(path)

    monkeypatch.setattr(writer, "_fsync_dir", fsync_dir)
    item = Item.of(make_dataset(pixel_bytes=5000), EXPLICIT_VR_LE)
    root = data_dir(node)
    final = stored_path(root, item.uid)
    with failing_unlink(lambda path: path == str(final), errno.EROFS) as failed:
        assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    assert failed
    monkeypatch.undo()
    assert final.exists()
    assert record(node, item.uid) is None
    assert leftovers(root)  # the marker
    node.stop()
    restarted = node_factory(data_dir=str(root))
    assert_clean(restarted, item.uid)
    still_serving(restarted, stored=0)


@pytest.mark.parametrize("fails", ["once", "until restart"])
def test_a_first_place_that_cannot_be_taken_back(node_factory: NodeFactory, fails: str) -> None:
    """duplicates = "replace": the instance is held as a replacement, so its first
    place is free; a new version is linked there, the index refuses the add (the
    UID is held) and the link must be taken back before the duplicate rules run.
    EIO doing so: 0xA700, the version held untouched, and the link removed by
    the discard or, failing that too, by the next start (its marker is kept)."""
    toml = '[store]\nduplicates = "replace"\n'
    node = node_factory(toml=toml)
    first, second = two_versions()
    third = make_dataset(pixel_bytes=4000, seed=3, patient_name="Third^Name")
    third.SOPInstanceUID = first.uid
    assert archive_store(node.port, [first, second], EXPLICIT_VR_LE) == [SUCCESS] * 2
    root = data_dir(node)
    held = index_row(root, first.uid)
    assert held is not None
    first_place = root / relative_path(first.uid)
    assert held["path"] != relative_path(first.uid)
    settled(root)
    attempts = {"once": 1, "until restart": 1_000}[fails]

    def fails_at_first_place(path: str) -> bool:
        nonlocal attempts
        if path != str(first_place) or not attempts:
            return False
        attempts -= 1
        return True

    with failing_unlink(fails_at_first_place, errno.EIO) as failed:
        item = Item.of(third, EXPLICIT_VR_LE)
        assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    assert failed
    assert index_row(root, first.uid) == held
    if fails == "once":
        assert not first_place.exists()
        settled(root)
    else:
        assert first_place.exists()
        assert leftovers(root)  # its marker, for the next start
    node.stop()
    restarted = node_factory(data_dir=str(root), toml=toml)
    assert not first_place.exists()
    assert index_row(root, first.uid) == held
    assert read_stored(root, first.uid)[1] == second.data
    assert_clean(restarted, stored=1)


# ---- associations cut short ---------------------------------------------------------------


def _send_half(node: RunningNode, peer: RawPeer, context_id: int, item: Item) -> None:
    """The C-STORE-RQ and the first half of its data set (PDVs without the last bit)."""
    rq = CStoreRq(message_id=1, affected_sop_class_uid=CT_IMAGE, affected_sop_instance_uid=item.uid)
    for pdu in command_pdus(context_id, rq, 65536):
        peer.send(bytes(pdu))
    half = len(item.data) // 2
    for start in range(0, half, 16_000):
        peer.send(p_data_pdu(context_id, 0x00, item.data[start : min(start + 16_000, half)]))
    # The node has begun the part file: there is something to clean up.
    tmp = data_dir(node) / "tmp"
    wait_until(lambda: any(tmp.glob("*.part")), 10, "a part file in tmp/")


def _wait_idle(node: RunningNode) -> None:
    assert node.server is not None
    server = node.server
    wait_until(lambda: node.call(lambda: server.active) == 0, 10, "no association open")


@pytest.mark.parametrize("how", ["a-abort", "tcp-close", "tcp-reset"])
def test_cut_mid_dataset_leaves_nothing(node: RunningNode, how: str) -> None:
    item = Item.of(make_dataset(pixel_bytes=4 * MiB), EXPLICIT_VR_LE)
    peer, context_id = raw_association(node)
    with peer:
        _send_half(node, peer, context_id, item)
        if how == "a-abort":
            peer.send(abort_bytes(0, 0))
        elif how == "tcp-reset":
            # SO_LINGER 0: close() sends RST instead of FIN.
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _wait_idle(node)
    root = data_dir(node)
    wait_until(lambda: not leftovers(root), 10, "tmp/ emptied")
    assert_clean(node, item.uid)
    still_serving(node, stored=0)


def test_our_scu_aborting_mid_dataset(node: RunningNode) -> None:
    """Our SCU's data source fails half way: it aborts, the node keeps nothing."""
    item = Item.of(make_dataset(pixel_bytes=3 * MiB), EXPLICIT_VR_LE)

    class SourceFailed(Exception):
        pass

    async def failing_chunks() -> Any:
        half = len(item.data) // 2
        for start in range(0, half, 65536):
            yield item.data[start : start + 65536]
        tmp = data_dir(node) / "tmp"
        for _ in range(500):
            if any(tmp.glob("*.part")):
                break
            await asyncio.sleep(0.01)
        raise SourceFailed

    async def run() -> None:
        async with await associate(
            node.host,
            node.port,
            calling_ae="OURSCU",
            called_ae="ARCHIVE",
            contexts=[(CT_IMAGE, [EXPLICIT_VR_LE])],
        ) as assoc:
            context = assoc.negotiated.context_for(CT_IMAGE)
            assert context is not None
            rq = CStoreRq(
                message_id=1, affected_sop_class_uid=CT_IMAGE, affected_sop_instance_uid=item.uid
            )
            await assoc.store(context.id, rq, failing_chunks())

    with pytest.raises(SourceFailed):
        asyncio.run(run())
    _wait_idle(node)
    assert_clean(node, item.uid)
    still_serving(node, stored=0)


def test_cut_after_success_keeps_the_instance(node: RunningNode) -> None:
    """Acknowledged, then the peer vanishes without releasing: the instance stays."""
    item = Item.of(make_dataset(pixel_bytes=50_000), EXPLICIT_VR_LE)
    peer, context_id = raw_association(node)
    with peer:
        rq = CStoreRq(
            message_id=7, affected_sop_class_uid=CT_IMAGE, affected_sop_instance_uid=item.uid
        )
        for pdu in command_pdus(context_id, rq, 65536):
            peer.send(bytes(pdu))
        chunks = [item.data[i : i + 16_000] for i in range(0, len(item.data), 16_000)]
        for n, chunk in enumerate(chunks):
            peer.send(p_data_pdu(context_id, 0x02 if n == len(chunks) - 1 else 0x00, chunk))
        rsp = peer.recv_pdu()
        assert rsp[0] == 0x04  # P-DATA-TF: the C-STORE-RSP
    _wait_idle(node)
    root = data_dir(node)
    assert read_stored(root, item.uid)[1] == item.data
    row = index_row(root, item.uid)
    assert row is not None
    assert row["digest"] == sha256(item.data)
    settled(root)
