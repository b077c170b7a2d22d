"""No patient data in the logs, on the ingest path's refusals either.

A length error in a data set's SOP Instance UID makes its value swallow the
elements after it (names, IDs, accession numbers): the refusal must say what
is wrong without repeating that value, in the C-STORE path (``archive import``
takes the same one) and in ``archive check --repair``, which must not index
such a file.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest

from archive.dicom.filemeta import FileMeta, encode_file_meta
from archive.dicom.uids import EXPLICIT_VR_LE
from archive.node import Storage
from archive.reconcile import check
from archive.store import relative_path
from tests.conftest import RunningNode, make_config
from tests.index import run
from tests.store.helpers import (
    DOES_NOT_MATCH,
    INVALID_SOP_INSTANCE,
    Item,
    archive_store,
    instance_files,
    make_dataset,
)

MARKERS = ("ZZNAME", "ZZPID")


def swallowing() -> Item:
    """A data set whose SOP Instance UID's length runs over the elements after it,
    Patient Name included, up to Patient ID's (an element boundary)."""
    item = Item.of(make_dataset(patient_name="ZZNAME^QQ", patient_id="ZZPID123"), EXPLICIT_VR_LE)
    data = bytearray(item.data)
    start = data.index(b"\x08\x00\x18\x00UI")
    end = data.index(b"\x10\x00\x20\x00LO", start)
    struct.pack_into("<H", data, start + 6, end - (start + 8))
    assert b"ZZNAME" in data[start + 8 : end]
    return Item(item.sop_class, item.uid, bytes(data))


def assert_logged_without_markers(caplog: pytest.LogCaptureFixture, telling: str) -> None:
    """Some line at INFO or above holds ``telling``; none holds a marker value."""
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert any(telling in line for line in lines), lines
    assert not any(marker in line for line in lines for marker in MARKERS), lines


def test_a_swallowing_uid_is_refused_without_repeating_it(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert archive_store(node.port, [swallowing()], EXPLICIT_VR_LE) == [DOES_NOT_MATCH]
    assert_logged_without_markers(caplog, "<not a UID: ")


def test_an_affected_sop_instance_uid_that_is_no_uid_is_not_repeated(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    item = Item.of(make_dataset(), EXPLICIT_VR_LE)
    bad = Item(item.sop_class, "ZZNAME^QQ ZZPID123", item.data)
    assert archive_store(node.port, [bad], EXPLICIT_VR_LE) == [INVALID_SOP_INSTANCE]
    assert_logged_without_markers(caplog, "<not a UID: 18 characters>")


def test_check_repair_does_not_index_a_file_ingest_would_refuse(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file copied into instances/ whose data set's UID disagrees with its File
    Meta's: indexed, retrieves logged the swallowed values (and could not list
    its UID). It is not an instance this node could have stored: unreadable."""
    caplog.set_level(logging.INFO)
    config = make_config(data_dir=str(tmp_path / "data"))
    item = swallowing()
    meta = FileMeta(
        media_storage_sop_class_uid=item.sop_class,
        media_storage_sop_instance_uid=item.uid,
        transfer_syntax_uid=EXPLICIT_VR_LE,
    )
    copied = tmp_path / "data" / relative_path(item.uid)

    async def scenario() -> tuple[list[str], int]:
        storage = await Storage(config).open()
        try:
            copied.parent.mkdir(parents=True, exist_ok=True)
            copied.write_bytes(encode_file_meta(meta) + item.data)
            report = await check(storage, repair=True)
            assert storage.index is not None
            return report.unreadable_files, (await storage.index.stats()).instances
        finally:
            await storage.close()

    unreadable, indexed = run(scenario())
    assert unreadable == [relative_path(item.uid)]
    assert indexed == 0
    assert instance_files(tmp_path / "data") == []  # removed, as unreadable files are
    assert_logged_without_markers(caplog, "check: unreadable")
