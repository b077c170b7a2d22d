"""Start-up recovery: the situations a crash leaves in a data folder, then Storage.open().

A crash can leave (see archive/store/files.py and Storage.recover): a part file
being written (removed); a part file hard-linked to its final path with no index
row for that path (never acknowledged: removed); one whose row was committed
while the file's flush had not completed (kept only if the file reads back with
the row's size and digest, otherwise row and file removed); a row whose file
never got its link (removed); debris in tmp/ (removed). Each situation is made by
hand here, then :class:`archive.node.Storage` opens the folder as ``archive
serve`` would.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID

import archive.node
from archive.dicom.dimse import Status
from archive.dicom.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_LE, IMPLICIT_VR_LE
from archive.index import Index, IndexWriteError
from archive.node import Storage
from archive.store import StoreError, relative_path
from archive.store.files import replacement_path
from tests.conftest import RunningNode, make_config
from tests.store.helpers import (
    OUT_OF_RESOURCES,
    SUCCESS,
    Item,
    all_rows,
    archive_store,
    data_dir,
    deflated_unchecked,
    encode_dataset,
    index_row,
    instance_files,
    leftovers,
    make_dataset,
    read_stored,
    sha256,
    split_part10,
    stored_path,
)


def part10(ds: Dataset, transfer_syntax: str = EXPLICIT_VR_LE) -> tuple[bytes, bytes]:
    """A Part 10 file written by pydicom and its data set bytes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.SourceApplicationEntityTitle = "MODALITY"
    ds.file_meta = meta
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    blob = buffer.getvalue()
    _, offset = split_part10(blob)
    return blob, blob[offset:]


def open_storage(root: Path, toml: str = "") -> None:
    """Open the data folder (running recovery) and close it again."""

    async def run() -> None:
        storage = await Storage(make_config(toml, data_dir=str(root))).open()
        await storage.close()

    asyncio.run(run())


def fresh(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    open_storage(root)  # creates instances/, tmp/ and the index
    return root


def ingest(
    root: Path,
    ds: Dataset,
    transfer_syntax: str = EXPLICIT_VR_LE,
    toml: str = "",
    data: bytes | None = None,
) -> int:
    """Store ``ds`` through the node's own ingest path (no network); the status.
    ``data``: the data set bytes sent, if not ``ds`` encoded."""
    if data is None:
        data = encode_dataset(ds, transfer_syntax)

    async def fragments() -> AsyncIterator[memoryview]:
        yield memoryview(data)

    async def run() -> int:
        storage = await Storage(make_config(toml, data_dir=str(root))).open()
        try:
            assert storage.ingest is not None
            outcome = await storage.ingest.ingest(
                sop_class_uid=str(ds.SOPClassUID),
                sop_instance_uid=str(ds.SOPInstanceUID),
                transfer_syntax=transfer_syntax,
                source_ae="MODALITY",
                fragments=fragments(),
            )
        finally:
            await storage.close()
        return outcome.status

    return asyncio.run(run())


def mark_in_flight(root: Path, relative: str, token: str = "0badc0de") -> Path:
    """Re-create the marker of a stored file, as if the crash came before its removal."""
    uid = relative.rsplit("/", 1)[1].split(".dcm")[0].split(".r")[0]
    marker = root / "tmp" / f"{uid}.{token}.part"
    os.link(root / relative, marker)
    return marker


def place_in_flight(root: Path, uid: str, blob: bytes, token: str = "abcd1234") -> Path:
    """A part file with ``blob``, hard-linked to its final path: placed, maybe not indexed."""
    part = root / "tmp" / f"{uid}.{token}.part"
    part.write_bytes(blob)
    final = root / relative_path(uid)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.link(part, final)
    return part


def test_half_written_part_file_is_removed(tmp_path: Path) -> None:
    root = fresh(tmp_path)
    ds = make_dataset(pixel_bytes=5000)
    blob, _ = part10(ds)
    part = root / "tmp" / f"{ds.SOPInstanceUID}.0badf00d.part"
    part.write_bytes(blob[: len(blob) // 2])
    open_storage(root)
    assert not part.exists()
    assert instance_files(root) == []
    assert all_rows(root) == {}
    assert leftovers(root) == []


def test_placed_but_not_indexed_is_removed(tmp_path: Path) -> None:
    """No row: Success was never sent, and a whole-looking file may be half flushed."""
    root = fresh(tmp_path)
    ds = make_dataset(pixel_bytes=5000, patient_name="Placed^Only")
    blob, _ = part10(ds)
    part = place_in_flight(root, ds.SOPInstanceUID, blob)
    open_storage(root)
    assert not part.exists()
    assert not stored_path(root, ds.SOPInstanceUID).exists()
    assert all_rows(root) == {}
    assert leftovers(root) == []


def test_placed_and_indexed_but_not_released(
    tmp_path: Path, node_factory: Callable[..., RunningNode]
) -> None:
    """The commit happened, the part file's unlink did not: one row, unchanged content."""
    root = tmp_path / "data"
    node = node_factory(data_dir=str(root))
    item = Item.of(make_dataset(pixel_bytes=3000), IMPLICIT_VR_LE)
    assert archive_store(node.port, [item], IMPLICIT_VR_LE) == [SUCCESS]
    node.stop()
    before = index_row(root, item.uid)
    assert before is not None
    # Re-create the in-flight marker as if the crash came just before release().
    os.link(stored_path(root, item.uid), root / "tmp" / f"{item.uid}.01234567.part")
    open_storage(root)
    after = index_row(root, item.uid)
    assert after is not None
    assert (after["digest"], after["size"], after["path"]) == (
        before["digest"],
        before["size"],
        before["path"],
    )
    assert stored_path(root, item.uid).read_bytes()[-len(item.data) :] == item.data
    assert len(all_rows(root)) == 1
    assert leftovers(root) == []


def test_row_without_file_is_removed(tmp_path: Path) -> None:
    """The row was durable, the link was not: nothing to serve, never acknowledged."""
    root = fresh(tmp_path)
    keep = make_dataset(pixel_bytes=1000, seed=1)
    ds = make_dataset(pixel_bytes=3000, seed=2, study_uid=keep.StudyInstanceUID)
    assert ingest(root, keep) == ingest(root, ds) == Status.SUCCESS
    relative = relative_path(ds.SOPInstanceUID)
    marker = mark_in_flight(root, relative)
    (root / relative).unlink()
    open_storage(root)
    assert index_row(root, ds.SOPInstanceUID) is None
    assert not marker.exists()
    # The other instance of the study is untouched, and the study's counts follow.
    row = index_row(root, keep.SOPInstanceUID)
    assert row is not None
    assert row["study_instances"] == 1
    assert set(all_rows(root)) == {keep.SOPInstanceUID}
    assert leftovers(root) == []


@pytest.mark.parametrize("error", [errno.EIO, errno.EACCES, errno.ELOOP], ids=errno.errorcode.get)
@pytest.mark.parametrize("marker", ["its own", "a duplicate's"])
def test_a_file_that_cannot_be_stat_ed_stops_the_start_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int, marker: str
) -> None:
    """An acknowledged instance with a marker left in tmp/ (its own, linked to it, or
    that of a duplicate being received, never linked) whose file cannot be stat'ed
    at the next start. That is no "the file is missing": taken for one, its row
    went, then at the start after (the disk mended) its file, as unindexed. The
    start fails naming the path, nothing changed; once the disk answers, the
    instance is kept as it was."""
    root = fresh(tmp_path)
    ds = make_dataset(pixel_bytes=3000)
    uid = str(ds.SOPInstanceUID)
    assert ingest(root, ds) == Status.SUCCESS
    relative = relative_path(uid)
    if marker == "its own":
        left = mark_in_flight(root, relative)
    else:
        left = root / "tmp" / f"{uid}.feedbeef.part"
        left.write_bytes(part10(make_dataset(sop_instance_uid=uid, pixel_bytes=9000))[0])
    before = index_row(root, uid)
    final = str(root / relative)
    real = os.stat

    def stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if os.fspath(path) == final:
            raise OSError(error, os.strerror(error), final)
        return real(path, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "stat", stat)
        with pytest.raises(StoreError, match=re.escape(relative)):
            open_storage(root)
    assert index_row(root, uid) == before
    assert left.exists()
    assert read_stored(root, uid)[1] == encode_dataset(ds, EXPLICIT_VR_LE)
    open_storage(root)
    assert index_row(root, uid) == before
    assert read_stored(root, uid)[1] == encode_dataset(ds, EXPLICIT_VR_LE)
    assert leftovers(root) == []


def _truncate_to(keep: int) -> Callable[[Path], None]:
    def damage(final: Path) -> None:
        os.truncate(final, keep % final.stat().st_size)

    return damage


def _zero_the_tail(final: Path) -> None:
    """Same size, other bytes: zeros in the pixel data, as unwritten blocks read back."""
    blob = bytearray(final.read_bytes())
    blob[-100:] = bytes(100)
    assert bytes(blob) != final.read_bytes()
    final.write_bytes(bytes(blob))  # in place: the same inode as the marker


@pytest.mark.parametrize(
    "damage",
    [_truncate_to(0), _truncate_to(132), _truncate_to(1000), _truncate_to(-1), _zero_the_tail],
    ids=["empty", "cut-in-meta", "cut-in-dataset", "one-byte-short", "different-digest"],
)
def test_row_with_a_damaged_file_is_removed(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    """The row was durable, the file's flush was not: the row AND the file go.

    Truncated (at nothing, inside the File Meta, inside the data set, one byte short:
    the size tells) or the same size with other bytes (the digest tells).
    """
    root = fresh(tmp_path)
    ds = make_dataset(pixel_bytes=6000)
    assert ingest(root, ds) == Status.SUCCESS
    relative = relative_path(ds.SOPInstanceUID)
    mark_in_flight(root, relative)
    final = root / relative
    damage(final)
    open_storage(root)
    assert index_row(root, ds.SOPInstanceUID) is None
    assert not final.exists()
    assert instance_files(root) == []
    assert leftovers(root) == []


def test_held_instance_is_untouched_by_a_duplicate_in_flight(tmp_path: Path) -> None:
    """A second copy was being received (never linked): the version held stays."""
    root = fresh(tmp_path)
    ds = make_dataset(pixel_bytes=2000)
    assert ingest(root, ds) == Status.SUCCESS
    before = index_row(root, ds.SOPInstanceUID)
    blob = stored_path(root, ds.SOPInstanceUID).read_bytes()
    other, _ = part10(make_dataset(sop_instance_uid=ds.SOPInstanceUID, pixel_bytes=9000))
    (root / "tmp" / f"{ds.SOPInstanceUID}.feedbeef.part").write_bytes(other)
    open_storage(root)
    assert index_row(root, ds.SOPInstanceUID) == before
    assert stored_path(root, ds.SOPInstanceUID).read_bytes() == blob
    assert leftovers(root) == []


def test_replacement_placed_but_not_indexed(tmp_path: Path) -> None:
    """A replacement linked beside the held version, its row never committed: removed."""
    root = fresh(tmp_path)
    old = make_dataset(pixel_bytes=2000, seed=1)
    assert ingest(root, old) == Status.SUCCESS
    before = index_row(root, old.SOPInstanceUID)
    blob_old = stored_path(root, old.SOPInstanceUID).read_bytes()
    new = make_dataset(sop_instance_uid=old.SOPInstanceUID, pixel_bytes=4000, seed=2)
    blob_new, _ = part10(new)
    uid = str(old.SOPInstanceUID)
    part = root / "tmp" / f"{uid}.feedbeef.part"
    part.write_bytes(blob_new)
    beside = root / replacement_path(uid, "feedbeef")
    os.link(part, beside)
    open_storage(root)
    assert not beside.exists()
    assert index_row(root, uid) == before
    assert stored_path(root, uid).read_bytes() == blob_old
    assert [p.relative_to(root).as_posix() for p in instance_files(root)] == [before["path"]]
    assert leftovers(root) == []


def test_replacement_indexed_but_old_version_not_removed(tmp_path: Path) -> None:
    """The replacement's row committed, then the crash: the new one stays, the old goes."""
    root = fresh(tmp_path)
    toml = '[store]\nduplicates = "replace"\n'
    old = make_dataset(pixel_bytes=2000, seed=1)
    new = make_dataset(sop_instance_uid=old.SOPInstanceUID, pixel_bytes=4000, seed=2)
    assert ingest(root, old, toml=toml) == Status.SUCCESS
    old_path = root / relative_path(old.SOPInstanceUID)
    saved = old_path.read_bytes()
    assert ingest(root, new, IMPLICIT_VR_LE, toml=toml) == Status.SUCCESS
    row = index_row(root, old.SOPInstanceUID)
    assert row is not None
    assert row["path"] != relative_path(old.SOPInstanceUID)
    # As if the crash came after the commit, before the old file and the marker went.
    old_path.write_bytes(saved)
    token = row["path"].rsplit(".r", 1)[1][: -len(".dcm")]
    mark_in_flight(root, row["path"], token)
    open_storage(root, toml)
    assert index_row(root, old.SOPInstanceUID) == row
    assert not old_path.exists()
    assert [p.relative_to(root).as_posix() for p in instance_files(root)] == [row["path"]]
    _, offset = split_part10((root / row["path"]).read_bytes())
    assert sha256((root / row["path"]).read_bytes()[offset:]) == row["digest"]
    assert leftovers(root) == []


def test_staging_leftover_is_removed(tmp_path: Path) -> None:
    root = fresh(tmp_path)
    ds = make_dataset()
    blob, _ = part10(ds)
    staging = root / "tmp" / f"{ds.SOPInstanceUID}.abcd1234.part.dcm.new"
    staging.write_bytes(blob)
    open_storage(root)
    assert not staging.exists()
    assert instance_files(root) == []
    assert all_rows(root) == {}


def test_unreadable_placed_file_is_removed(tmp_path: Path) -> None:
    """A placed file that is not Part 10 was never acknowledged: gone, with its link."""
    root = fresh(tmp_path)
    ds = make_dataset()
    part = place_in_flight(root, ds.SOPInstanceUID, b"not a dicom file at all")
    open_storage(root)
    assert not part.exists()
    assert not stored_path(root, ds.SOPInstanceUID).exists()
    assert all_rows(root) == {}


def test_part_file_with_unsafe_name_is_removed(tmp_path: Path) -> None:
    root = fresh(tmp_path)
    odd = root / "tmp" / "not-a-uid.abcd1234.part"
    odd.write_bytes(b"x" * 100)
    open_storage(root)
    assert not odd.exists()
    assert leftovers(root) == []


@pytest.mark.parametrize("name", ["someones-folder", "1.2.3.abcd1234.part"])
def test_a_folder_in_tmp_is_left_and_the_start_goes_on(
    tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing of ours is a folder: unlinking it stopped the start (a review)."""
    root = fresh(tmp_path)
    ds = make_dataset()
    part = place_in_flight(root, ds.SOPInstanceUID, b"not a dicom file at all")
    folder = root / "tmp" / name
    folder.mkdir()
    (folder / "inside").write_bytes(b"kept")
    odd = root / "tmp" / "stray.txt"
    odd.write_bytes(b"debris")
    open_storage(root)
    assert (folder / "inside").read_bytes() == b"kept"
    assert not odd.exists()  # recovery went on around it
    assert not part.exists()
    assert f"{folder} is a folder, not ours: left as it is" in caplog.messages


def test_many_in_flight_at_once(tmp_path: Path) -> None:
    """Indexed and whole (kept), indexed and cut (removed), placed only, half-written."""
    root = fresh(tmp_path)
    whole = [make_dataset(pixel_bytes=1000, seed=n) for n in range(4)]
    cut = [make_dataset(pixel_bytes=1000, seed=10 + n) for n in range(3)]
    for ds in whole + cut:
        assert ingest(root, ds) == Status.SUCCESS
    expected = {
        uid: row
        for uid, row in all_rows(root).items()
        if uid in {str(ds.SOPInstanceUID) for ds in whole}
    }
    for n, ds in enumerate(whole + cut):
        mark_in_flight(root, relative_path(ds.SOPInstanceUID), f"{n:08x}")
    for ds in cut:
        os.truncate(root / relative_path(ds.SOPInstanceUID), 500)
    for n in range(3):
        placed = make_dataset(pixel_bytes=1000, seed=20 + n)
        place_in_flight(root, placed.SOPInstanceUID, part10(placed)[0], token=f"{n:08x}")
        half = make_dataset(pixel_bytes=9000, seed=30 + n)
        blob, _ = part10(half)
        (root / "tmp" / f"{half.SOPInstanceUID}.{n:08x}.part").write_bytes(blob[:777])
    open_storage(root)
    assert all_rows(root) == expected
    assert {p.relative_to(root).as_posix() for p in instance_files(root)} == {
        path for path, _, _ in expected.values()
    }
    assert leftovers(root) == []


def test_restart_after_failed_replace_reconciles(
    tmp_path: Path, node_factory: Callable[..., RunningNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an index failure during a replace, a restart makes row and file agree."""
    root = tmp_path / "data"
    toml = '[store]\nduplicates = "replace"\n'
    node = node_factory(toml=toml, data_dir=str(root))
    first = Item.of(make_dataset(pixel_bytes=3000, seed=1), EXPLICIT_VR_LE)
    ds = make_dataset(pixel_bytes=5000, seed=2, sop_instance_uid=first.uid)
    second = Item.of(ds, EXPLICIT_VR_LE)
    assert archive_store(node.port, [first], EXPLICIT_VR_LE) == [SUCCESS]

    async def replace(self: Index, item: object) -> None:
        raise IndexWriteError("disk I/O error")

    monkeypatch.setattr(Index, "replace", replace)
    assert archive_store(node.port, [second], EXPLICIT_VR_LE) == [OUT_OF_RESOURCES]
    node.stop()
    monkeypatch.undo()
    open_storage(root, toml)
    _, data = read_stored(root, first.uid)
    row = index_row(root, first.uid)
    assert row is not None
    assert row["digest"] == sha256(data)
    assert row["size"] == stored_path(root, first.uid).stat().st_size
    assert leftovers(root) == []


def test_reopen_is_idempotent(tmp_path: Path, node_factory: Callable[..., RunningNode]) -> None:
    """Opening a clean folder again changes nothing."""
    root = tmp_path / "data"
    node = node_factory(data_dir=str(root))
    items = [Item.of(make_dataset(pixel_bytes=1000, seed=n), EXPLICIT_VR_LE) for n in range(4)]
    assert archive_store(node.port, items, EXPLICIT_VR_LE) == [SUCCESS] * 4
    node.stop()
    rows = all_rows(root)
    stats = {p: p.stat().st_mtime_ns for p in instance_files(root)}
    open_storage(root)
    open_storage(root)
    assert all_rows(root) == rows
    assert {p: p.stat().st_mtime_ns for p in instance_files(root)} == stats
    assert leftovers(root) == []
    assert data_dir(node) == root


# ---- flush = "batch": the last batch's journal ---------------------------------------------


def journal(root: Path, *uids: str) -> None:
    """Name ``uids`` in the unflushed journal, as a batch whose flush was cut short does."""
    with closing(sqlite3.connect(root / "index.sqlite")) as conn, conn:
        conn.executemany("INSERT OR IGNORE INTO unflushed VALUES (?)", [(u,) for u in uids])


def journaled(root: Path) -> list[str]:
    with closing(sqlite3.connect(root / "index.sqlite")) as conn:
        return [row[0] for row in conn.execute("SELECT sop_instance_uid FROM unflushed")]


@pytest.mark.parametrize(
    "damage",
    [_truncate_to(0), _truncate_to(1000), _zero_the_tail, Path.unlink],
    ids=["empty", "cut-in-dataset", "different-digest", "missing"],
)
def test_last_batch_with_a_file_not_whole_loses_row_and_file(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    """A power cut during the batch's flush: its rows durable, one file not whole.

    No marker is left in tmp/ (its entry may be what the cut lost): only the
    journal tells recovery which instances to read back.
    """
    root = fresh(tmp_path)
    earlier = make_dataset(pixel_bytes=2000, seed=1)
    whole = make_dataset(pixel_bytes=3000, seed=2, study_uid=earlier.StudyInstanceUID)
    cut = make_dataset(pixel_bytes=4000, seed=3, study_uid=earlier.StudyInstanceUID)
    for ds in (earlier, whole, cut):
        assert ingest(root, ds) == Status.SUCCESS
    assert journaled(root) == []  # each clean close empties it
    journal(root, whole.SOPInstanceUID, cut.SOPInstanceUID)
    damage(root / relative_path(cut.SOPInstanceUID))
    open_storage(root)
    assert set(all_rows(root)) == {earlier.SOPInstanceUID, whole.SOPInstanceUID}
    assert not stored_path(root, cut.SOPInstanceUID).exists()
    row = index_row(root, whole.SOPInstanceUID)
    assert row is not None
    assert row["study_instances"] == 2
    assert read_stored(root, whole.SOPInstanceUID)[1] == encode_dataset(whole, EXPLICIT_VR_LE)
    # The removal's batch emptied the journal; the next start reads nothing back.
    assert journaled(root) == []
    assert leftovers(root) == []


def test_last_batch_whole_on_disk_is_kept(tmp_path: Path) -> None:
    root = fresh(tmp_path)
    ds = make_dataset(pixel_bytes=3000)
    assert ingest(root, ds) == Status.SUCCESS
    before = index_row(root, ds.SOPInstanceUID)
    journal(root, ds.SOPInstanceUID, "1.2.3.999")  # a UID without a row: nothing to do
    open_storage(root)
    assert index_row(root, ds.SOPInstanceUID) == before
    assert read_stored(root, ds.SOPInstanceUID)[1] == encode_dataset(ds, EXPLICIT_VR_LE)
    assert leftovers(root) == []


def test_a_journal_that_cannot_be_emptied_does_not_stop_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk full at start-up: emptying the journal, the one write of recovery that
    repairs nothing, failed and the start with it, so the node (and its queries and
    retrieves, README) stayed down until space was freed. Now a WARNING; the next
    start checks the same instances again and empties it."""
    root = fresh(tmp_path)
    ds = make_dataset(pixel_bytes=3000)
    assert ingest(root, ds) == Status.SUCCESS
    journal(root, ds.SOPInstanceUID)
    before = index_row(root, ds.SOPInstanceUID)

    async def disk_full(self: Index) -> None:
        raise IndexWriteError(
            "index transaction of 1 operation(s) failed: database or disk is full"
        )

    with monkeypatch.context() as patch, caplog.at_level("WARNING", logger="archive.node"):
        patch.setattr(Index, "clear_unflushed", disk_full)
        open_storage(root)
    assert any("could not be emptied" in r.getMessage() for r in caplog.records)
    assert journaled(root) == [ds.SOPInstanceUID]
    assert index_row(root, ds.SOPInstanceUID) == before
    open_storage(root)
    assert journaled(root) == []
    assert index_row(root, ds.SOPInstanceUID) == before


def test_a_clean_stop_that_cannot_empty_the_journal_leaves_it_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk full at a clean stop: the writer thread's last write, emptying the
    journal, raised out of the thread ("Exception in thread index-writer"). Now a
    WARNING, and the next start finds the journal's instance as it is."""
    import archive.index.writer as writer

    root = fresh(tmp_path)
    ds = make_dataset(pixel_bytes=3000)
    raised: list[object] = []
    with monkeypatch.context() as patch, caplog.at_level("WARNING", logger="archive.index"):
        patch.setattr(writer, "CLEAR_UNFLUSHED", "DELETE FROM no_such_table")  # fails as full does
        patch.setattr(threading, "excepthook", raised.append)
        assert ingest(root, ds) == Status.SUCCESS
    assert raised == []
    assert any("left for the next start" in r.getMessage() for r in caplog.records)
    assert journaled(root) == [ds.SOPInstanceUID]
    before = index_row(root, ds.SOPInstanceUID)
    open_storage(root)
    assert journaled(root) == []
    assert index_row(root, ds.SOPInstanceUID) == before


REPLACE = '[store]\nduplicates = "replace"\n'


def replaced_twice(tmp_path: Path) -> tuple[Path, Dataset, Dataset, str]:
    """An instance stored, then replaced; the old version put back on disk, as when
    the crash came after the replacement's commit and before the old one's removal.
    Returns (root, old, new, the replacement's path)."""
    root = tmp_path / "data"
    open_storage(root, REPLACE)
    old = make_dataset(pixel_bytes=3000, seed=1, patient_name="Old^Name")
    new = make_dataset(pixel_bytes=5000, seed=2, patient_name="New^Name")
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        setattr(new, keyword, getattr(old, keyword))
    uid = old.SOPInstanceUID
    assert ingest(root, old, toml=REPLACE) == Status.SUCCESS
    first = root / relative_path(uid)
    old_bytes = first.read_bytes()
    assert ingest(root, new, toml=REPLACE) == Status.SUCCESS
    replaced = index_row(root, uid)
    assert replaced is not None
    assert replaced["path"] != relative_path(uid)
    assert not first.exists()
    first.write_bytes(old_bytes)
    return root, old, new, replaced["path"]


def assert_old_version_indexed(root: Path, old: Dataset) -> None:
    uid = old.SOPInstanceUID
    row = index_row(root, uid)
    assert row is not None
    assert row["path"] == relative_path(uid)
    assert row["digest"] == sha256(encode_dataset(old, EXPLICIT_VR_LE))
    assert read_stored(root, uid)[1] == encode_dataset(old, EXPLICIT_VR_LE)
    assert [p.relative_to(root).as_posix() for p in instance_files(root)] == [relative_path(uid)]
    assert journaled(root) == []
    assert leftovers(root) == []


def test_last_batch_replacement_not_whole_brings_back_the_version_it_replaced(
    tmp_path: Path,
) -> None:
    """duplicates = "replace": the batch that switched the row to the new version was
    cut short in its flush, so the old version, removed only after that flush, is
    still on disk: the row goes back to it."""
    root, old, _, path = replaced_twice(tmp_path)
    journal(root, old.SOPInstanceUID)
    _truncate_to(1000)(root / path)
    open_storage(root, REPLACE)
    assert_old_version_indexed(root, old)


def test_replacement_not_whole_with_its_marker_brings_back_the_old_version(
    tmp_path: Path,
) -> None:
    """The same, found through the replacement's surviving marker in tmp/."""
    root, old, _, path = replaced_twice(tmp_path)
    token = path.rsplit(".r", 1)[1][: -len(".dcm")]
    mark_in_flight(root, path, token=token)  # and no journal: the markers' check alone
    _truncate_to(1000)(root / path)
    open_storage(root, REPLACE)
    assert_old_version_indexed(root, old)


@pytest.mark.parametrize("with_its_own_marker", [True, False])
def test_a_lingering_marker_of_the_acknowledged_version_keeps_it(
    tmp_path: Path, with_its_own_marker: bool
) -> None:
    """The first store's marker outlived it (its removal not yet flushed), then a
    replacement's batch was cut short: the marker must not take the acknowledged
    first version with it, which is what the row goes back to."""
    root, old, _, path = replaced_twice(tmp_path)
    uid = old.SOPInstanceUID
    journal(root, uid)
    for token in ("00000000", "ffffffff"):  # sorted before and after the replacement's
        mark_in_flight(root, relative_path(uid), token=token)
    if with_its_own_marker:
        mark_in_flight(root, path, token=path.rsplit(".r", 1)[1][: -len(".dcm")])
    _truncate_to(1000)(root / path)
    open_storage(root, REPLACE)
    assert_old_version_indexed(root, old)


def test_a_lingering_marker_beside_an_intact_replacement_goes(tmp_path: Path) -> None:
    """The same marker when the replacement is whole: the row stays on it and the
    superseded first version is removed, as the replacement would have done."""
    root, old, new, path = replaced_twice(tmp_path)
    uid = old.SOPInstanceUID
    journal(root, uid)
    mark_in_flight(root, relative_path(uid), token="00000000")
    open_storage(root, REPLACE)
    row = index_row(root, uid)
    assert row is not None
    assert row["path"] == path
    assert read_stored(root, uid)[1] == encode_dataset(new, EXPLICIT_VR_LE)
    assert [p.relative_to(root).as_posix() for p in instance_files(root)] == [path]
    assert leftovers(root) == []


def test_a_recovery_cut_short_is_finished_by_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovery's own writes leave the journal alone until it is done: dying after
    dropping the replacement's row, before indexing the old version, loses nothing."""
    root, old, _, path = replaced_twice(tmp_path)
    journal(root, old.SOPInstanceUID)
    _truncate_to(1000)(root / path)

    async def die(self: Storage, uid: str) -> int:
        raise RuntimeError("killed during recovery")

    monkeypatch.setattr(Storage, "_index_earlier_version", die)
    with pytest.raises(RuntimeError, match="killed during recovery"):
        open_storage(root, REPLACE)
    assert index_row(root, old.SOPInstanceUID) is None  # the row went...
    assert journaled(root) == [old.SOPInstanceUID]  # ...the journal stayed
    monkeypatch.undo()
    open_storage(root, REPLACE)
    assert_old_version_indexed(root, old)


def test_markers_and_journal_together(tmp_path: Path) -> None:
    """A batch of two cut short: one marker survived, the other did not. The
    markers' check must not hide the other from the journal's."""
    root = fresh(tmp_path)
    a = make_dataset(pixel_bytes=3000, seed=1)
    b = make_dataset(pixel_bytes=4000, seed=2, study_uid=a.StudyInstanceUID)
    assert ingest(root, a) == ingest(root, b) == Status.SUCCESS
    journal(root, a.SOPInstanceUID, b.SOPInstanceUID)
    mark_in_flight(root, relative_path(a.SOPInstanceUID))
    _truncate_to(1000)(root / relative_path(a.SOPInstanceUID))
    _truncate_to(1000)(root / relative_path(b.SOPInstanceUID))
    open_storage(root)
    assert all_rows(root) == {}
    assert instance_files(root) == []
    assert journaled(root) == []
    assert leftovers(root) == []


def test_an_unreadable_journaled_file_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An I/O error reading back the last batch's instance says nothing about it:
    it was most likely flushed and acknowledged, so row and file stay."""
    root = fresh(tmp_path)
    ds = make_dataset(pixel_bytes=3000)
    uid = str(ds.SOPInstanceUID)
    assert ingest(root, ds) == Status.SUCCESS
    journal(root, uid)
    real = archive.node.scan_file

    def failing(path: str) -> Any:
        if path.endswith(relative_path(uid)):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(path)

    monkeypatch.setattr(archive.node, "scan_file", failing)
    open_storage(root)
    assert uid in all_rows(root)
    assert read_stored(root, uid)[1] == encode_dataset(ds, EXPLICIT_VR_LE)


# ---- what ingest acknowledged unchecked ----------------------------------------------------


@pytest.mark.parametrize("found_by", ["marker", "journal"])
def test_an_instance_acknowledged_unchecked_is_kept(tmp_path: Path, found_by: str) -> None:
    """Recovery reads back an instance in flight at the crash (its marker left, or
    its batch the last one) to tell whether the file holds what was acknowledged:
    the row's size and SHA-256 say that, not a stricter reading of its content
    than ingest's. Judged so, this one was called cut, and row and file went."""
    root = fresh(tmp_path)
    ds, sent = deflated_unchecked()
    uid = str(ds.SOPInstanceUID)
    assert ingest(root, ds, DEFLATED_EXPLICIT_VR_LE, data=sent) == Status.SUCCESS
    before = index_row(root, uid)
    if found_by == "marker":
        mark_in_flight(root, relative_path(uid))
    else:
        journal(root, uid)
    open_storage(root)
    assert index_row(root, uid) == before
    assert read_stored(root, uid)[1] == sent
    assert leftovers(root) == []


def test_an_earlier_version_acknowledged_unchecked_is_indexed_again(tmp_path: Path) -> None:
    """duplicates = "replace", the replacement's batch cut short in its flush: the
    version it replaced is read back to be indexed again, with no row to compare
    it with. It is judged by ingest's own rule, which acknowledged it: judged
    stricter, it was called cut and removed, and the instance was lost."""
    root = tmp_path / "data"
    open_storage(root, REPLACE)
    old, sent = deflated_unchecked(seed=1)
    new = make_dataset(pixel_bytes=5000, seed=2)
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        setattr(new, keyword, getattr(old, keyword))
    uid = str(old.SOPInstanceUID)
    assert ingest(root, old, DEFLATED_EXPLICIT_VR_LE, REPLACE, data=sent) == Status.SUCCESS
    first = root / relative_path(uid)
    old_bytes = first.read_bytes()
    assert ingest(root, new, toml=REPLACE) == Status.SUCCESS
    replaced = index_row(root, uid)
    assert replaced is not None
    first.write_bytes(old_bytes)  # the crash came before its removal
    journal(root, uid)
    _truncate_to(1000)(root / replaced["path"])
    open_storage(root, REPLACE)
    row = index_row(root, uid)
    assert row is not None
    assert (row["path"], row["digest"]) == (relative_path(uid), sha256(sent))
    assert read_stored(root, uid)[1] == sent
    assert instance_files(root) == [first]
    assert leftovers(root) == []


def test_a_taken_back_replacement_gives_way_to_the_acknowledged_version(tmp_path: Path) -> None:
    """A replacement whose flush failed has its row taken back; should the node
    stop before its file is discarded, the version indexed again is the one that
    was acknowledged (the earliest), not the newer file."""
    root = fresh(tmp_path)
    old = make_dataset(pixel_bytes=3000, seed=1)
    uid = str(old.SOPInstanceUID)
    assert ingest(root, old) == Status.SUCCESS
    new = make_dataset(pixel_bytes=3000, seed=2)
    new.SOPInstanceUID = old.SOPInstanceUID
    replacement = root / replacement_path(uid, "0badc0de")
    replacement.write_bytes(part10(new)[0])
    os.link(replacement, root / "tmp" / f"{uid}.0badc0de.part")  # its marker

    async def take_back() -> None:
        async with await Index.open(root / "index.sqlite", durability="fast") as index:
            await index.remove([uid])

    asyncio.run(take_back())
    journal(root, uid)
    open_storage(root)
    assert read_stored(root, uid)[1] == encode_dataset(old, EXPLICIT_VR_LE)
    assert not replacement.exists()
