"""Start-up recovery: the situations a crash leaves in a data folder, then Storage.open().

A crash can leave (see archive/store/files.py): a part file being written (removed),
a part file already hard-linked to its final path whose index row may or may not
be committed (re-indexed from the file), a ``.dcm.new`` staging link of a
replacement (removed). Each situation is made by hand here, then
:class:`archive.node.Storage` opens the folder as ``archive serve`` would.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import Dataset, dcmwrite
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID

from archive.dicom.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from archive.index import Index, IndexWriteError
from archive.node import Storage
from archive.store import relative_path
from tests.conftest import RunningNode, make_config
from tests.store.helpers import (
    OUT_OF_RESOURCES,
    SUCCESS,
    Item,
    all_rows,
    archive_store,
    data_dir,
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


def test_placed_but_not_indexed_is_reindexed(tmp_path: Path) -> None:
    root = fresh(tmp_path)
    ds = make_dataset(pixel_bytes=5000, patient_name="Placed^Only")
    blob, data = part10(ds)
    part = place_in_flight(root, ds.SOPInstanceUID, blob)
    open_storage(root)
    assert not part.exists()
    row = index_row(root, ds.SOPInstanceUID)
    assert row is not None
    assert row["digest"] == sha256(data)
    assert row["size"] == len(blob)
    assert row["path"] == relative_path(ds.SOPInstanceUID)
    assert row["transfer_syntax_uid"] == EXPLICIT_VR_LE
    assert row["source_ae"] == "MODALITY"
    assert row["patient_name"] == "Placed^Only"
    assert row["study_instance_uid"] == ds.StudyInstanceUID
    assert stored_path(root, ds.SOPInstanceUID).read_bytes() == blob
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
    assert len(all_rows(root)) == 1
    assert leftovers(root) == []


def test_replacement_placed_but_not_indexed(tmp_path: Path) -> None:
    """A replace crashed after os.replace: the row is rebuilt from the new file."""
    root = fresh(tmp_path)
    old = make_dataset(pixel_bytes=2000, seed=1)
    blob_old, _ = part10(old)
    part = place_in_flight(root, old.SOPInstanceUID, blob_old)
    open_storage(root)  # indexed as the first version
    assert not part.exists()
    new = make_dataset(
        sop_instance_uid=old.SOPInstanceUID, pixel_bytes=4000, seed=2, patient_id="PID-NEW"
    )
    blob_new, data_new = part10(new, IMPLICIT_VR_LE)
    final = stored_path(root, old.SOPInstanceUID)
    part = root / "tmp" / f"{old.SOPInstanceUID}.feedbeef.part"
    part.write_bytes(blob_new)
    staging = root / "tmp" / f"{part.name}.dcm.new"
    os.link(part, staging)
    os.replace(staging, final)
    open_storage(root)
    row = index_row(root, old.SOPInstanceUID)
    assert row is not None
    assert row["digest"] == sha256(data_new)
    assert row["size"] == len(blob_new)
    assert row["transfer_syntax_uid"] == IMPLICIT_VR_LE
    assert row["patient_id"] == "PID-NEW"
    assert row["study_instance_uid"] == new.StudyInstanceUID
    assert len(all_rows(root)) == 1
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


def test_many_in_flight_at_once(tmp_path: Path) -> None:
    """Placed (re-indexed), half-written (removed) and staged (removed) together."""
    root = fresh(tmp_path)
    placed = [make_dataset(pixel_bytes=1000, seed=n) for n in range(5)]
    expected = {}
    for n, ds in enumerate(placed):
        blob, data = part10(ds)
        place_in_flight(root, ds.SOPInstanceUID, blob, token=f"{n:08x}")
        expected[ds.SOPInstanceUID] = (relative_path(ds.SOPInstanceUID), len(blob), sha256(data))
    for n in range(3):
        half = make_dataset(pixel_bytes=9000, seed=10 + n)
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


def test_replacement_staged_but_not_renamed(tmp_path: Path) -> None:
    """A replace crashed between the staging link and the rename: the old one stands."""
    root = fresh(tmp_path)
    old = make_dataset(pixel_bytes=2000, seed=1)
    blob_old, data_old = part10(old)
    place_in_flight(root, old.SOPInstanceUID, blob_old)
    open_storage(root)
    new = make_dataset(sop_instance_uid=old.SOPInstanceUID, pixel_bytes=4000, seed=2)
    blob_new, _ = part10(new)
    part = root / "tmp" / f"{old.SOPInstanceUID}.feedbeef.part"
    part.write_bytes(blob_new)
    os.link(part, root / "tmp" / f"{part.name}.dcm.new")
    open_storage(root)
    assert stored_path(root, old.SOPInstanceUID).read_bytes() == blob_old
    row = index_row(root, old.SOPInstanceUID)
    assert row is not None
    assert row["digest"] == sha256(data_old)
    assert leftovers(root) == []
