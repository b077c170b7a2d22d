"""``archive store``: our node, pynetdicom's SCP and DCMTK storescp as receivers.

The CLI runs in-process (``main([...])``) against a peer on 127.0.0.1. Every
stored file is compared with the sent one on the data set bytes (what follows
the File Meta), which is what a C-STORE carries.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt

from archive.cli import EXIT_ABORTED, main
from archive.dicom.uids import STORAGE_SOP_CLASSES
from archive.progress import Progress
from archive.scu import CHUNK, FileItem, plan
from archive.scu import files as files_module
from archive.scu import store as store_module
from archive.store import DatasetReader, read_meta, relative_path
from tests.conftest import RunningNode, require_tool
from tests.interop.conftest import (
    DCMTK_ENV,
    LISTEN_TIMEOUT,
    dcmconv_implicit,
    free_port,
    run_tool,
    stop,
    wait_listening,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"

#: pydicom test files with distinct SOP Instance UIDs: several SOP classes
#: (CT, MR, SC, SR, RT Dose, Segmentation) and transfer syntaxes (Explicit LE,
#: Deflated, RLE, JPEG baseline and extended, JPEG 2000).
TEST_FILES = (
    "CT_small.dcm",  # CT, Explicit VR LE
    "MR_small_RLE.dcm",  # MR, RLE Lossless
    "JPEG2000.dcm",  # SC, JPEG 2000
    "SC_rgb_jpeg_dcmtk.dcm",  # SC, JPEG Baseline
    "JPEG-lossy.dcm",  # SC, JPEG Extended
    "image_dfl.dcm",  # SC, Deflated Explicit VR LE
    "reportsi.dcm",  # Basic Text SR, Explicit VR LE
    "rtdose_rle.dcm",  # RT Dose, RLE Lossless
    "liver_1frame.dcm",  # Segmentation, Explicit VR LE
)


# ---- helpers (also used by test_import.py) ---------------------------------------------


def make_instance(
    path: Path,
    *,
    sop_instance_uid: str | None = None,
    study: str = "1.2.3.4",
    series: str = "1.2.3.4.5",
    patient: str = "P1",
    sop_class: str = CT_IMAGE,
    transfer_syntax: str = ExplicitVRLittleEndian,
    pixels: int = 64,
) -> str:
    """Write a small Part 10 instance with pydicom; returns its SOP Instance UID."""
    uid = sop_instance_uid or generate_uid()
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = uid
    ds.PatientID = patient
    ds.PatientName = f"Test^{patient}"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.Modality = "OT"
    ds.InstanceNumber = 1
    ds.Rows = 1
    ds.Columns = pixels // 2
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(i & 0xFF for i in range(pixels))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return uid


def hook_probe(monkeypatch: pytest.MonkeyPatch, after: Callable[[Path, Any], object]) -> None:
    """Call ``after(path, probed)`` once each file is probed: what happens to a file
    between its probe and its turn to be sent."""
    real_probe = files_module.probe

    def probe(path: Path) -> Any:
        result = real_probe(path)
        after(path, result)
        return result

    monkeypatch.setattr(files_module, "probe", probe)


def dataset_bytes(path: Path) -> bytes:
    """What follows the File Meta of a Part 10 file."""
    _, offset = read_meta(path)
    return path.read_bytes()[offset:]


def bare_copy(part10: Path, bare: Path) -> bytes:
    """Write the data set of the Part 10 file ``part10`` alone to ``bare``."""
    data = dataset_bytes(part10)
    bare.parent.mkdir(parents=True, exist_ok=True)
    bare.write_bytes(data)
    return data


def bare_folder(tmp_path: Path) -> dict[str, tuple[Path, bytes, str]]:
    """Data sets without File Meta in ``tmp_path / "in"``, one per syntax the probe
    tells apart: SOP Instance UID -> (path, data set bytes, transfer syntax)."""
    out = {}
    for i, transfer_syntax in enumerate(
        (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)
    ):
        part10 = tmp_path / f"{i}.part10"
        uid = make_instance(part10, transfer_syntax=transfer_syntax, series=f"1.2.3.4.{i}")
        bare = tmp_path / "in" / f"{i}.raw"
        out[uid] = (bare, bare_copy(part10, bare), transfer_syntax)
    return out


def sent_bytes(path: Path) -> bytes:
    """The data set as sent: an odd deflated stream gets its pad byte (PS3.5 A.5)."""
    data = dataset_bytes(path)
    if len(data) % 2 and read_meta(path)[0].transfer_syntax_uid == DeflatedExplicitVRLittleEndian:
        return data + b"\x00"
    return data


def stored_path(data_dir: str | Path, uid: str) -> Path:
    return Path(data_dir) / relative_path(uid)


def copy_test_files(folder: Path, names: tuple[str, ...] = TEST_FILES) -> list[Path]:
    """Copy pydicom test files into ``folder`` (half of them in a sub-folder)."""
    out = []
    for i, name in enumerate(names):
        source = get_testdata_file(name)
        assert source is not None, name
        target = folder / ("sub" if i % 2 else "") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        out.append(target)
    return out


def store(*args: str) -> int:
    return main(["store", *args])


def index_stats(node: RunningNode) -> Any:
    assert node.loop is not None
    assert node.node is not None
    index = node.node.storage.index
    assert index is not None
    return asyncio.run_coroutine_threadsafe(index.stats(), node.loop).result(10)


# ---- against our node ----------------------------------------------------------------


def test_store_pydicom_files_byte_identical(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    files = copy_test_files(folder)
    (folder / "notes.txt").write_text("not DICOM\n")
    status = store("--aec", "ARCHIVE", node.host, str(node.port), str(folder))
    out = capsys.readouterr().out
    assert status == 0, out
    lines = out.splitlines()
    total = sum(len(dataset_bytes(f)) for f in files)
    assert lines[0].startswith(
        f"sent {len(files)}, failed 0, skipped 1 of {len(files) + 1} file(s); "
    )
    assert f"({total} bytes)" in lines[0]
    assert lines[1:] == [f"skipped: {folder / 'notes.txt'}  not a DICOM Part 10 file"]
    for path in files:
        meta, _ = read_meta(path)
        stored = stored_path(node.config.node.data_dir, meta.media_storage_sop_instance_uid)
        assert dataset_bytes(stored) == sent_bytes(path), path.name
        stored_meta, _ = read_meta(stored)
        assert stored_meta.transfer_syntax_uid == meta.transfer_syntax_uid
        assert stored_meta.source_application_entity_title == "ARCHIVE"
    assert index_stats(node).instances == len(files)


def test_store_jobs_4_many_small_files(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "many"
    uids = {}
    for i in range(50):
        ts = ImplicitVRLittleEndian if i % 3 == 0 else ExplicitVRLittleEndian
        path = folder / f"s{i % 5}" / f"{i:03d}.dcm"
        uids[path] = make_instance(path, series=f"1.2.3.4.{i % 5}", transfer_syntax=ts)
    status = store("-j", "4", "--aec", "ARCHIVE", node.host, str(node.port), str(folder))
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.startswith("sent 50, failed 0, skipped 0 of 50 file(s); ")
    assert len(out.splitlines()) == 1
    for path, uid in uids.items():
        assert dataset_bytes(stored_path(node.config.node.data_dir, uid)) == dataset_bytes(path)
    stats = index_stats(node)
    assert (stats.patients, stats.studies, stats.series, stats.instances) == (1, 1, 5, 50)


def test_store_more_than_128_contexts(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """65 SOP classes x 2 transfer syntaxes = 130 contexts: two associations."""
    classes = sorted(STORAGE_SOP_CLASSES)[:65]
    folder = tmp_path / "classes"
    for i, sop_class in enumerate(classes):
        for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            make_instance(folder / f"{i:02d}-{ts}.dcm", sop_class=sop_class, transfer_syntax=ts)
    assert status_ok(store("--aec", "ARCHIVE", node.host, str(node.port), str(folder)), capsys)
    assert index_stats(node).instances == 130


def status_ok(status: int, capsys: pytest.CaptureFixture[str]) -> bool:
    out = capsys.readouterr().out
    assert status == 0, out
    return True


def test_store_rejected_context_is_a_failure(
    node_factory: Callable[..., RunningNode],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An Implicit VR file for a peer that takes Explicit VR only: nothing converts it."""
    node = node_factory(
        toml="[association]\naccept_all_transfer_syntaxes = false\n"
        'transfer_syntaxes = ["1.2.840.10008.1.2.1"]\n'
    )
    explicit = tmp_path / "in" / "explicit.dcm"
    implicit = tmp_path / "in" / "implicit.dcm"
    explicit_uid = make_instance(explicit)
    implicit_uid = make_instance(implicit, transfer_syntax=ImplicitVRLittleEndian)
    status = store("--aec", "ARCHIVE", node.host, str(node.port), str(tmp_path / "in"))
    lines = capsys.readouterr().out.splitlines()
    assert status == 5
    assert lines[0].startswith("sent 1, failed 1, skipped 0 of 2 file(s); ")
    assert lines[1:] == [
        f"failed: {implicit}  {implicit_uid}  presentation context rejected: "
        f"transfer syntaxes not supported ({CT_IMAGE} in {ImplicitVRLittleEndian})"
    ]
    assert stored_path(node.config.node.data_dir, explicit_uid).exists()
    assert not stored_path(node.config.node.data_dir, implicit_uid).exists()


def test_an_explicit_vr_file_goes_to_an_implicit_only_peer_converted(
    node_factory: Callable[..., RunningNode],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Implicit VR LE is the default every SCP takes (PS3.5 10.1): storescu converts
    to it, and so do we. The peer stores the same data set, headers re-encoded."""
    node = node_factory(
        toml="[association]\naccept_all_transfer_syntaxes = false\n"
        'transfer_syntaxes = ["1.2.840.10008.1.2"]\n'
    )
    folder = tmp_path / "in"
    explicit = folder / "explicit.dcm"
    make_instance(explicit)
    implicit = folder / "implicit.dcm"
    implicit_uid = make_instance(implicit, transfer_syntax=ImplicitVRLittleEndian)
    files = copy_test_files(folder, ("test-SR.dcm", "liver_1frame.dcm"))  # sequences, pixels
    status = store("-j", "2", "--aec", "ARCHIVE", node.host, str(node.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 0, lines
    assert lines[0].startswith("sent 4, failed 0, skipped 0 of 4 file(s); ")
    assert lines[1:] == [
        "note: 3 file(s) sent converted (inflated, swapped to Little Endian, or to"
        " Implicit VR Little Endian): the peer accepted their SOP class only so"
    ]
    data_dir = node.config.node.data_dir
    for path in [explicit, *files]:
        meta, _ = read_meta(path)
        stored = stored_path(data_dir, meta.media_storage_sop_instance_uid)
        assert read_meta(stored)[0].transfer_syntax_uid == ImplicitVRLittleEndian
        assert dataset_bytes(stored) == implicit_bytes(path, tmp_path), path.name
        before, after = pydicom.dcmread(path), pydicom.dcmread(stored)
        assert after.SOPInstanceUID == before.SOPInstanceUID
        if "PixelData" in before:
            assert after.PixelData == before.PixelData
    # The Implicit VR file went as stored, on the context of its own syntax.
    assert dataset_bytes(stored_path(data_dir, implicit_uid)) == dataset_bytes(implicit)


def test_a_file_that_cannot_be_converted_fails_alone(
    node_factory: Callable[..., RunningNode],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An Explicit VR file whose data set cannot be followed (here an item longer
    than its sequence, which a peer taking it as stored steps over) is half sent
    when that shows: the association is
    aborted, the peer stores nothing of it, and the next file goes on a new one."""
    node = node_factory(
        toml="[association]\naccept_all_transfer_syntaxes = false\n"
        'transfer_syntaxes = ["1.2.840.10008.1.2"]\n'
    )
    folder = tmp_path / "in"
    bad, good = folder / "a-bad.dcm", folder / "b-good.dcm"
    bad_uid = make_instance(bad)
    good_uid = make_instance(good)
    with bad.open("ab") as f:  # a sequence of 16 bytes holding an item of 100
        f.write(struct.pack("<HH2s2xL", 0x7FE1, 0x1010, b"SQ", 16))
        f.write(struct.pack("<HHL", 0xFFFE, 0xE000, 100) + bytes(8))
    status = store("--aec", "ARCHIVE", node.host, str(node.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 5, lines
    assert lines[0].startswith("sent 1, failed 1, skipped 0 of 2 file(s); ")
    assert lines[1].startswith(
        "note: 1 file(s) sent converted (inflated, swapped to Little Endian, or to"
    )
    assert lines[2].startswith(f"failed: {bad}  {bad_uid}  cannot be sent as Implicit VR")
    assert "runs past its container" in lines[2]
    data_dir = node.config.node.data_dir
    assert not stored_path(data_dir, bad_uid).exists()
    assert stored_path(data_dir, good_uid).exists()


def implicit_bytes(path: Path, tmp_path: Path) -> bytes:
    """The data set of ``path`` as it goes to a peer taking Implicit VR LE alone."""
    if read_meta(path)[0].transfer_syntax_uid == ImplicitVRLittleEndian:
        return sent_bytes(path)
    return dataset_bytes(dcmconv_implicit(path, tmp_path))


def test_store_wrong_called_ae_is_rejected(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.dcm"
    uid = make_instance(path)
    status = store("--aec", "NOT-ME", node.host, str(node.port), str(path))
    lines = capsys.readouterr().out.splitlines()
    assert status == 2
    assert lines[0].startswith("sent 0, failed 1, skipped 0 of 1 file(s); ")
    assert lines[1] == (
        f"failed: {path}  {uid}  association rejected: rejected-permanent, "
        "service user: called AE title not recognized"
    )


def test_store_nothing_listening(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.dcm"
    make_instance(path)
    port = free_port()
    status = store("--timeout", "5", "127.0.0.1", str(port), str(path))
    lines = capsys.readouterr().out.splitlines()
    assert status == 3
    assert lines[1].startswith(f"failed: {path}  ")
    assert f"cannot connect to 127.0.0.1:{port}: " in lines[1]


def test_store_no_dicom_files_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    assert store("127.0.0.1", str(free_port()), str(tmp_path)) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("sent 0, failed 0, skipped 1 of 1 file(s); ")
    assert captured.err == "archive store: no DICOM instances found\n"


def test_store_missing_path_is_reported(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.dcm"
    make_instance(path)
    missing = tmp_path / "nope"
    status = store("--aec", "ARCHIVE", node.host, str(node.port), str(path), str(missing))
    lines = capsys.readouterr().out.splitlines()
    assert status == 5
    assert lines[0].startswith("sent 1, failed 1, skipped 0 of 2 file(s); ")
    assert lines[1] == f"failed: {missing}  no such file"


def test_store_bad_ae_title_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert store("--aet", "X" * 17, "127.0.0.1", "104", "somewhere") == 1
    assert "--aet: must be 1 to 16 characters, got 17" in capsys.readouterr().err
    # The config file's rules (PS3.5 6.2), not a length check only.
    assert store("--aec", "A\tB", "127.0.0.1", "104", "somewhere") == 1
    assert "--aec: must use printable ASCII only" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["store", "echo", "find", "move", "get"])
@pytest.mark.parametrize("port", ["0", "65536", "70000", "-1", "x"])
def test_a_port_out_of_range_is_a_usage_error(
    command: str, port: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not sent anywhere: uvloop takes a port modulo 65536, so 70000 had stored the
    files on whatever listened on 4464 and reported success."""
    path = tmp_path / "a.dcm"
    make_instance(path)
    rest = [str(path)] if command == "store" else []
    with pytest.raises(SystemExit) as exited:
        main([command, "127.0.0.1", "--", port, *rest])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert f"archive {command}: error: argument" in err
    assert "between 1 and 65535" in err or f"invalid port '{port}'" in err, err


def test_store_file_changed_since_its_probe(
    node: RunningNode,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file of another size than probed (rewritten in between): it fails before any
    of it is sent, and the association goes on with the others."""
    folder = tmp_path / "in"
    uids = [make_instance(folder / f"{i}.dcm") for i in range(3)]
    shrunk = folder / "0.dcm"

    def after_probe(path: Path, item: Any) -> None:
        if path == shrunk:
            item.size += 2

    hook_probe(monkeypatch, after_probe)
    size = shrunk.stat().st_size
    status = store("--aec", "ARCHIVE", node.host, str(node.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 5
    assert lines[0].startswith("sent 2, failed 1, skipped 0 of 3 file(s); ")
    why = f"file changed since it was read ({size} bytes, not {size + 2})"
    assert lines[1:] == [f"failed: {shrunk}  {uids[0]}  {why}"]
    assert not stored_path(node.config.node.data_dir, uids[0]).exists()
    assert all(stored_path(node.config.node.data_dir, uid).exists() for uid in uids[1:])


@pytest.mark.interop
def test_store_file_cut_while_sending(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file that ends early once its first chunk went out: the message is half sent,
    so the association is aborted, that file fails, and the others go on a new one."""
    folder = tmp_path / "in"
    big = folder / "0.dcm"
    uids = [padded_instance(big, 2)]
    uids += [make_instance(folder / f"{i}.dcm") for i in (1, 2)]
    monkeypatch.setattr(DatasetReader, "next_cached", lambda self: None)
    real_next = DatasetReader.next

    def next_block(self: DatasetReader) -> memoryview:
        return memoryview(b"") if Path(self.path) == big else real_next(self)

    monkeypatch.setattr(DatasetReader, "next", next_block)
    scp = pyscp_factory(lambda event: 0)
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    size = len(dataset_bytes(big))
    assert status == 5
    assert lines[0].startswith("sent 2, failed 1, skipped 0 of 3 file(s); ")
    assert lines[1:] == [
        # The first read is a chunk of the file, File Meta included.
        f"failed: {big}  {uids[0]}  file changed while sending"
        f" ({CHUNK - (big.stat().st_size - size)} bytes, not {size})"
    ]
    assert set(scp.received) == set(uids[1:])
    assert len(scp.associations) == 2


def test_store_timeout_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.dcm"
    uid = make_instance(path)
    with socket.socket() as mute:  # listens (the kernel accepts) and never answers
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        port = mute.getsockname()[1]
        status = store("--timeout", "0.5", "127.0.0.1", str(port), str(path))
    lines = capsys.readouterr().out.splitlines()
    assert status == 4
    assert lines[1] == (
        f"failed: {path}  {uid}  association timed out: no association response within 0.5 s"
    )


# ---- units -----------------------------------------------------------------------------


def test_plan_splits_at_128_contexts(tmp_path: Path) -> None:
    from archive.dicom.filemeta import FileMeta

    def item(i: int, ts: str) -> FileItem:
        meta = FileMeta(
            media_storage_sop_class_uid=f"1.2.3.{i}",
            media_storage_sop_instance_uid=f"9.{i}.{ts}",
            transfer_syntax_uid=ts,
        )
        return FileItem(tmp_path / f"{i}", meta, 0, 0)

    items = [item(i, ts) for i in range(100) for ts in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")]
    items.append(item(0, "1.2.840.10008.1.2"))  # a second file of a known pair
    groups = plan(items)
    assert [len(g.contexts) for g in groups] == [128, 72]
    assert [len(g.items) for g in groups] == [129, 72]
    assert groups[0].contexts[:2] == [
        ("1.2.3.0", ["1.2.840.10008.1.2"]),
        ("1.2.3.0", ["1.2.840.10008.1.2.1"]),
    ]
    for group in groups:
        keys = {(c, ts[0]) for c, ts in group.contexts}
        assert all(i.key in keys for i in group.items)
    # Explicit VR LE alone: each class is offered in Implicit VR LE too.
    groups = plan([item(i, "1.2.840.10008.1.2.1") for i in range(100)])
    assert [len(g.contexts) for g in groups] == [128, 72]
    assert [len(g.items) for g in groups] == [64, 36]
    assert groups[1].contexts[:2] == [
        ("1.2.3.64", ["1.2.840.10008.1.2.1"]),
        ("1.2.3.64", ["1.2.840.10008.1.2"]),
    ]


def test_progress_only_on_a_terminal_and_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = io.StringIO()
    bar = Progress(3, stream=quiet)  # StringIO is not a TTY
    bar.advance(1, 10)
    bar.close()
    assert quiet.getvalue() == ""

    clock = iter([0.0, 1.0, 1.01, 1.02, 2.0, 2.0, 2.0])
    monkeypatch.setattr("archive.progress.time.monotonic", lambda: next(clock))
    shown = io.StringIO()
    bar = Progress(3, stream=shown, enabled=True)  # started at 0.0
    bar.advance(1, 1_000_000)  # 1.0: drawn
    bar.advance(1, 1_000_000)  # 1.01: throttled
    bar.advance(1, 1_000_000)  # 1.02: the last one is always drawn
    bar.close()
    text = shown.getvalue()
    assert text.count("\r[") == 2
    assert "1/3 files  976.6 KiB  1.0 MB/s" in text
    assert "3/3 files  2.9 MiB  2.9 MB/s" in text
    assert text.endswith("\r\x1b[K")


def test_a_log_record_erases_the_bar_before_it_is_written() -> None:
    """A WARNING (a kept duplicate, a refusal) written while the bar is shown starts
    on a clean line; written after the bar, the next redraw overwrote it. Once the
    bar is closed the handler is as it was."""
    shown = io.StringIO()
    handler = logging.StreamHandler(shown)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        bar = Progress(3, stream=shown, enabled=True)
        bar.advance(1, 10)
        logging.getLogger("archive.store").warning("held with other content: kept")
        bar.advance(1, 10)
        bar.close()
        logging.getLogger("archive.store").warning("after")
    finally:
        root.removeHandler(handler)
    text = shown.getvalue()
    assert text.startswith("\r[########")  # the bar, then erased before the record:
    assert "\x1b[K\r\x1b[KWARNING held with other content: kept\n" in text, repr(text)
    assert text.endswith("kept\nWARNING after\n"), repr(text)  # closed: left alone
    assert handler.filters == []


# ---- against pynetdicom's SCP -------------------------------------------------------------


class PynetdicomScp:
    """pynetdicom's Storage SCP in its own threads, recording what it receives."""

    def __init__(
        self,
        handler: Callable[[Any], int] | None = None,
        transfer_syntaxes: list[str] = ALL_TRANSFER_SYNTAXES,
    ) -> None:
        self.received: dict[str, tuple[str, bytes]] = {}  # uid -> (transfer syntax, bytes)
        self.associations: set[int] = set()
        self.lock = threading.Lock()
        self.handler = handler
        #: Called with each EVT_ACCEPTED event (in pynetdicom's thread).
        self.on_accepted: Callable[[Any], None] | None = None
        ae = AE(ae_title="PYSCP")
        ae.maximum_pdu_size = 16384
        for sop_class in sorted(STORAGE_SOP_CLASSES):
            ae.add_supported_context(sop_class, transfer_syntaxes)
        server = ae.start_server(
            ("127.0.0.1", 0),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._store), (evt.EVT_ACCEPTED, self._accepted)],
        )
        assert server is not None
        assert server.socket is not None
        self.server = server
        self.port: int = server.socket.getsockname()[1]

    def _accepted(self, event: Any) -> None:
        with self.lock:
            self.associations.add(id(event.assoc))
        if self.on_accepted is not None:
            self.on_accepted(event)

    def _store(self, event: Any) -> int:
        if self.handler is not None:
            status = self.handler(event)
            if status:
                return status
        uid = event.request.AffectedSOPInstanceUID
        with self.lock:
            self.received[uid] = (event.context.transfer_syntax, event.request.DataSet.getvalue())
        return 0x0000


@pytest.fixture
def pyscp_factory() -> Iterator[Callable[..., PynetdicomScp]]:
    servers: list[PynetdicomScp] = []

    def start(
        handler: Callable[[Any], int] | None = None,
        transfer_syntaxes: list[str] = ALL_TRANSFER_SYNTAXES,
    ) -> PynetdicomScp:
        scp = PynetdicomScp(handler, transfer_syntaxes)
        servers.append(scp)
        return scp

    yield start
    for scp in servers:
        scp.server.shutdown()


@pytest.mark.interop
def test_store_to_pynetdicom(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scp = pyscp_factory()
    files = copy_test_files(tmp_path / "in")
    status = store("-j", "4", "--aec", "PYSCP", "127.0.0.1", str(scp.port), str(tmp_path / "in"))
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.startswith(f"sent {len(files)}, failed 0, skipped 0 of {len(files)} file(s); ")
    assert len(scp.associations) == 4
    for path in files:
        meta, _ = read_meta(path)
        ts, data = scp.received[meta.media_storage_sop_instance_uid]
        assert ts == meta.transfer_syntax_uid
        assert data == sent_bytes(path), path.name


@pytest.mark.interop
def test_store_to_pynetdicom_statuses(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """0xA700 is a failure (exit 5, status listed); 0xB000 a warning (a success, listed)."""
    folder = tmp_path / "in"
    good = make_instance(folder / "1.dcm")
    refused = make_instance(folder / "2.dcm")
    coerced = make_instance(folder / "3.dcm")
    answers = {refused: 0xA700, coerced: 0xB000}
    scp = pyscp_factory(lambda event: answers.get(event.request.AffectedSOPInstanceUID, 0))
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 5
    assert lines[0].startswith("sent 2, failed 1, skipped 0 of 3 file(s) (1 with warnings); ")
    assert lines[1:] == [
        f"failed: {folder / '2.dcm'}  {refused}  status 0xA700",
        f"warning: {folder / '3.dcm'}  {coerced}  status 0xB000",
    ]
    assert set(scp.received) == {good}


@pytest.mark.interop
def test_store_retries_once_after_an_abort(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The peer aborts on the first C-STORE: the file goes again on a new association."""
    folder = tmp_path / "in"
    uids = [make_instance(folder / f"{i}.dcm") for i in range(3)]
    aborted: list[str] = []

    def abort_once(event: Any) -> int:
        if not aborted:
            aborted.append(event.request.AffectedSOPInstanceUID)
            event.assoc.abort()
        return 0

    scp = pyscp_factory(abort_once)
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.startswith("sent 3, failed 0, skipped 0 of 3 file(s); ")
    assert aborted == [uids[0]]
    assert set(scp.received) == set(uids)
    assert len(scp.associations) == 2


@pytest.mark.interop
def test_a_file_gone_before_its_turn_fails_alone(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A file removed between the probe and its C-STORE fails with the reason; nothing
    of it was sent, so the association goes on with the others (one association)."""
    folder = tmp_path / "in"
    uids = [make_instance(folder / f"{i}.dcm") for i in range(4)]
    gone = folder / "1.dcm"
    hook_probe(monkeypatch, lambda path, _: path.unlink() if path == gone else None)
    scp = pyscp_factory(lambda event: 0)
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 5
    assert lines[0].startswith("sent 3, failed 1, skipped 0 of 4 file(s); ")
    assert lines[1] == f"failed: {gone}  {uids[1]}  cannot read: No such file or directory"
    assert set(scp.received) == {uids[0], *uids[2:]}
    assert len(scp.associations) == 1


@pytest.mark.interop
def test_a_file_replaced_by_a_larger_one_is_not_sent_cut(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rewritten between the probe and its turn with more bytes (exactly a chunk's
    worth were probed): it fails before any of it is sent, never goes out cut at
    the probed size and counted sent."""
    folder = tmp_path / "in"
    path = folder / "a.dcm"
    uid = make_instance(path)

    def padded(total: int) -> bytes:
        data = path.read_bytes()[:first_size]
        n = total - len(data) - 12
        return data + struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, n) + bytes(n)

    first_size = path.stat().st_size
    path.write_bytes(padded(CHUNK))
    hook_probe(monkeypatch, lambda _, __: path.write_bytes(padded(CHUNK + 4096)))
    scp = pyscp_factory(lambda event: 0)
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 5
    why = f"file changed since it was read ({CHUNK + 4096} bytes, not {CHUNK})"
    assert lines[1:] == [f"failed: {path}  {uid}  {why}"]
    assert scp.received == {}


@pytest.mark.interop
@pytest.mark.parametrize(("files", "spread"), [(2, [1, 1]), (4, [1, 1, 1, 1])])
def test_few_files_spread_over_the_associations(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    files: int,
    spread: list[int],
) -> None:
    """-j 4 with as many files as associations or fewer: one file each; no session
    holds a second file opened ahead while another association has none."""
    folder = tmp_path / "in"
    for i in range(files):
        make_instance(folder / f"{i}.dcm")
    per_association: dict[int, int] = {}
    # Held, so that no association's id() is reused by a later one (a flake: an
    # association ended and freed could lend its id to the next, counted as one).
    associations: list[object] = []

    everyone = threading.Condition()

    def handler(event: Any) -> int:
        with everyone:
            associations.append(event.assoc)
            key = id(event.assoc)
            per_association[key] = per_association.get(key, 0) + 1
            everyone.notify_all()
            # The peer storing it until every file has arrived somewhere: an
            # association is not free again before the last one is connected
            # (a fixed sleep was too short on a loaded machine). Bounded: should
            # the files go to fewer associations, the spread tells.
            everyone.wait_for(lambda: len(associations) >= files, timeout=5)
        return 0

    scp = pyscp_factory(handler)
    assert store("-j", "4", "--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder)) == 0
    capsys.readouterr()
    assert sorted(per_association.values()) == spread


@pytest.mark.interop
def test_a_fifo_in_the_folder_is_skipped_not_waited_for(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A named pipe among the files would block whoever opens it: skipped."""
    folder = tmp_path / "in"
    uid = make_instance(folder / "a.dcm")
    fifo = folder / "b.dcm"
    os.mkfifo(fifo)
    scp = pyscp_factory(lambda event: 0)
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0].startswith("sent 1, failed 0, skipped 1 of 2 file(s); ")
    assert lines[1:] == [f"skipped: {fifo}  not a regular file"]
    assert set(scp.received) == {uid}


@pytest.mark.interop
def test_a_peer_that_aborts_every_association_is_at_fault_not_the_files(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An SCP that aborts every association, having answered no file: each file
    was blamed ("may be malformed", exit 5) after two associations. The peer is
    at fault (exit 3), and after two files so failed the rest fail at once."""
    folder = tmp_path / "in"
    uids = [make_instance(folder / f"{n}.dcm") for n in range(5)]
    attempts: list[str] = []

    def abort(event: Any) -> int:
        attempts.append(event.request.AffectedSOPInstanceUID)
        event.assoc.abort()
        return 0

    scp = pyscp_factory(abort)
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 3, lines
    assert lines[0].startswith("sent 0, failed 5, skipped 0 of 5 file(s)")
    reasons = sorted(line.split(f"{uid}  ", 1)[1] for line in lines[1:] for uid in uids
                     if f"  {uid}  " in line)  # fmt: skip
    assert (
        reasons
        == [
            "the peer aborted the association twice while this file was sent, and"
            " answered no file in between: the peer's fault, more likely (association"
            " aborted by the peer (source 0, reason 0))",
        ]
        * 2
        + ["the peer aborts every association (it answers no file now)"] * 3
    )
    assert len(attempts) <= 7  # two files twice, the others once at most: not 10


@pytest.mark.interop
def test_store_gives_up_after_the_second_abort(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A peer that stores one file and aborts on the other twice: that file's
    failure (exit 5), as a peer that cannot parse a data set aborts."""
    good = tmp_path / "0.dcm"
    make_instance(good)
    path = tmp_path / "1.dcm"
    uid = make_instance(path)

    def abort(event: Any) -> int:
        if event.request.AffectedSOPInstanceUID == uid:
            event.assoc.abort()
        return 0

    scp = pyscp_factory(abort)
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(good), str(path))
    lines = capsys.readouterr().out.splitlines()
    assert status == 5
    assert lines[1] == (
        f"failed: {path}  {uid}  the peer aborted the association twice while this file"
        " was sent; the file may be malformed (association aborted by the peer"
        " (source 0, reason 0))"
    )
    assert len(scp.associations) == 2


# ---- against DCMTK storescp ----------------------------------------------------------------


def run_storescp(tmp_path: Path, *options: str, accept: str = "+xa") -> Iterator[tuple[int, Path]]:
    """DCMTK storescp accepting every transfer syntax (or ``accept``'s), with
    ``options``, writing into a folder; yields its port and that folder, and stops it."""
    binary = require_tool("storescp")
    out = tmp_path / "storescp"
    out.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [binary, "-aet", "STORESCP", accept, *options, "-od", str(out), str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=DCMTK_ENV,
    )
    try:
        wait_listening(port, proc, LISTEN_TIMEOUT)
        yield port, out
    finally:
        stop(proc)


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """storescp writing data sets bit for bit (``--bit-preserving``)."""
    yield from run_storescp(tmp_path, "--bit-preserving")


@pytest.mark.interop
def test_store_to_dcmtk_storescp(
    storescp: tuple[int, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port, out_dir = storescp
    files = copy_test_files(tmp_path / "in")
    status = store("-j", "2", "--aec", "STORESCP", "127.0.0.1", str(port), str(tmp_path / "in"))
    out = capsys.readouterr().out
    assert status == 0, out
    received = {}
    for path in out_dir.iterdir():
        ds = pydicom.dcmread(path)
        received[ds.SOPInstanceUID] = path
        code, dump = run_tool(["dcmdump", str(path)])
        assert code == 0, dump
        assert "E: " not in dump, dump
    assert len(received) == len(files)
    for path in files:
        meta, _ = read_meta(path)
        got = received[meta.media_storage_sop_instance_uid]
        assert read_meta(got)[0].transfer_syntax_uid == meta.transfer_syntax_uid
        assert dataset_bytes(got) == sent_bytes(path), path.name


@pytest.mark.interop
def test_store_data_sets_without_file_meta_to_dcmtk_storescp(
    storescp: tuple[int, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """storescp writes them as Part 10 files of the syntax we guessed; dcmdump reads them."""
    port, out_dir = storescp
    bare = bare_folder(tmp_path)
    status = store("--aec", "STORESCP", "127.0.0.1", str(port), str(tmp_path / "in"))
    out = capsys.readouterr().out
    assert status == 0, out
    received = {pydicom.dcmread(path).SOPInstanceUID: path for path in out_dir.iterdir()}
    assert received.keys() == bare.keys()
    for uid, (_, data, transfer_syntax) in bare.items():
        code, dump = run_tool(["dcmdump", str(received[uid])])
        assert code == 0, dump
        assert "E: " not in dump, dump
        assert read_meta(received[uid])[0].transfer_syntax_uid == transfer_syntax
        assert dataset_bytes(received[uid]) == data


#: Uncompressed pydicom files: Explicit VR LE with sequences, multi-frame pixels, an
#: SR tree, a waveform; and one Implicit VR LE.
UNCOMPRESSED = ("CT_small.dcm", "test-SR.dcm", "liver_1frame.dcm", "waveform_ecg.dcm", "rtplan.dcm")
#: Those, a Deflated Explicit VR LE one and an Explicit VR Big Endian one.
CONVERTIBLE = (*UNCOMPRESSED, "image_dfl.dcm", "MR_small_bigendian.dcm")


@pytest.mark.interop
def test_store_to_an_implicit_only_dcmtk_storescp(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """storescp +xi takes Implicit VR LE alone: the Explicit VR files go converted,
    and it writes what dcmconv +ti writes (bit for bit); dcmdump reads them."""
    gen = run_storescp(tmp_path, "--bit-preserving", accept="+xi")
    port, out_dir = next(gen)
    try:
        files = copy_test_files(tmp_path / "in", CONVERTIBLE)
        status = store("-j", "2", "--aec", "STORESCP", "127.0.0.1", str(port), str(tmp_path / "in"))
        lines = capsys.readouterr().out.splitlines()
        assert status == 0, lines
        assert lines[1] == (
            "note: 6 file(s) sent converted (inflated, swapped to Little Endian, or to"
            " Implicit VR Little Endian): the peer accepted their SOP class only so"
        )
        received = {read_meta(p)[0].media_storage_sop_instance_uid: p for p in out_dir.iterdir()}
        assert len(received) == len(files)
        for path in files:
            got = received[read_meta(path)[0].media_storage_sop_instance_uid]
            code, dump = run_tool(["dcmdump", str(got)])
            assert code == 0, dump
            assert "E: " not in dump, dump
            assert "W: " not in dump, dump
            assert read_meta(got)[0].transfer_syntax_uid == ImplicitVRLittleEndian
            assert dataset_bytes(got) == implicit_bytes(path, tmp_path), path.name
    finally:
        gen.close()


@pytest.mark.interop
def test_store_to_an_implicit_only_pynetdicom_scp(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scp = pyscp_factory(transfer_syntaxes=[ImplicitVRLittleEndian])
    files = copy_test_files(tmp_path / "in", CONVERTIBLE)
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(tmp_path / "in"))
    assert status == 0, capsys.readouterr().out
    for path in files:
        ts, data = scp.received[read_meta(path)[0].media_storage_sop_instance_uid]
        assert ts == ImplicitVRLittleEndian
        assert data == implicit_bytes(path, tmp_path), path.name


@pytest.mark.interop
def test_a_deflated_file_goes_inflated_to_a_peer_taking_explicit_vr_only(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Deflated is rarely accepted; inflated it is Explicit VR LE (PS3.5 A.5)."""
    scp = pyscp_factory(transfer_syntaxes=[ExplicitVRLittleEndian])
    (path,) = copy_test_files(tmp_path / "in", ("image_dfl.dcm",))
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(tmp_path / "in"))
    lines = capsys.readouterr().out.splitlines()
    assert status == 0, lines
    assert lines[1].startswith("note: 1 file(s) sent converted (inflated, swapped")
    ts, data = scp.received[read_meta(path)[0].media_storage_sop_instance_uid]
    assert ts == ExplicitVRLittleEndian
    assert data == zlib.decompress(dataset_bytes(path), -zlib.MAX_WBITS)


def padded_instance(path: Path, chunks: int) -> str:
    """:func:`make_instance` with Data Set Trailing Padding (FFFC,FFFC) making its
    data set ``chunks`` reads of :data:`CHUNK` long; its SOP Instance UID."""
    uid = make_instance(path)
    padding = chunks * CHUNK
    path.write_bytes(path.read_bytes() + struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, padding)
                     + bytes(padding))  # fmt: skip
    return uid


def slow_first_reads(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """A file's first read before sending takes ``seconds`` more (a cold cache)."""
    real_first_block = store_module.first_block

    async def slow_first_block(item: FileItem, source: Any) -> memoryview:
        await asyncio.sleep(seconds)
        return await real_first_block(item, source)

    monkeypatch.setattr(store_module, "first_block", slow_first_block)


def slow_reads(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every read of a file being sent takes ``seconds`` more (none from the cache)."""
    monkeypatch.setattr(DatasetReader, "next_cached", lambda self: None)
    real_next = DatasetReader.next

    def slow_next(self: DatasetReader) -> memoryview:
        time.sleep(seconds)
        return real_next(self)

    monkeypatch.setattr(DatasetReader, "next", slow_next)


@pytest.mark.interop
def test_a_big_endian_file_goes_swapped_to_a_peer_taking_little_endian_only(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Explicit VR Big Endian is retired (PS3.5 A.3) and often refused: swapped,
    it is what DCMTK's dcmconv +te writes, byte for byte."""
    scp = pyscp_factory(transfer_syntaxes=[ExplicitVRLittleEndian])
    (path,) = copy_test_files(tmp_path / "in", ("MR_small_bigendian.dcm",))
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(tmp_path / "in"))
    lines = capsys.readouterr().out.splitlines()
    assert status == 0, lines
    ts, data = scp.received[read_meta(path)[0].media_storage_sop_instance_uid]
    assert ts == ExplicitVRLittleEndian
    out = tmp_path / "little.dcm"
    code, text = run_tool([require_tool("dcmconv"), "+te", str(path), str(out)])
    assert code == 0, text
    assert data == dataset_bytes(out)
    assert pydicom.dcmread(out).pixel_array.tolist() == pydicom.dcmread(path).pixel_array.tolist()


@pytest.mark.interop
def test_an_association_lost_while_a_file_is_converted_is_no_fault_of_the_file(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The peer aborts the first association while a converted file is half read:
    the conversion must not take the early end for a data set cut short (the
    file's fault, failed for good); the file goes again on a new association."""
    folder = tmp_path / "in"
    big = folder / "big.dcm"
    uid = padded_instance(big, 8)
    slow_reads(monkeypatch, 0.05)  # 8 chunks: ~0.4 s a file; the abort comes at 0.1 s
    scp = pyscp_factory(transfer_syntaxes=[ImplicitVRLittleEndian])
    first = threading.Event()

    def abort_the_first(event: Any) -> None:
        if not first.is_set():
            first.set()
            threading.Timer(0.1, event.assoc.abort).start()

    scp.on_accepted = abort_the_first
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 0, lines
    assert lines[0].startswith("sent 1, failed 0, skipped 0 of 1 file(s); ")
    assert len(scp.associations) == 2
    ts, data = scp.received[uid]
    assert ts == ImplicitVRLittleEndian
    assert data == implicit_bytes(big, tmp_path)


@pytest.mark.interop
def test_a_peer_aborting_in_the_middle_of_a_file_twice_fails_the_file(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A peer that aborts while a file's data set comes in (DCMTK's storescp does,
    on an odd fragment), on both associations, once it has answered another
    file: the file's fault (exit 5), as when it aborts after the data set. The
    send stops at the close with the A-ABORT unread: it is read before judging."""
    folder = tmp_path / "in"
    make_instance(folder / "a-good.dcm")
    big = folder / "b-big.dcm"
    uid = padded_instance(big, 8)
    slow_reads(monkeypatch, 0.05)
    scp = pyscp_factory()
    scp.on_accepted = lambda event: threading.Timer(0.15, event.assoc.abort).start()
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 5, lines
    assert lines[0].startswith("sent 1, failed 1, skipped 0 of 2 file(s); ")
    assert lines[1].startswith(
        f"failed: {big}  {uid}  the peer aborted the association twice while this file was sent;"
        " the file may be malformed"
    ), lines
    assert uid not in scp.received


@pytest.mark.interop
def test_a_large_deflated_file_goes_in_even_fragments_to_dcmtk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Deflated data set of several reads inflates in pieces of any length, each
    sent as PDV fragments of its own; storescp aborts on an odd one ("Odd
    Fragment Length"), so they go out even."""
    from tests.store.test_reencoded import deflated_instance

    path = tmp_path / "in" / "noise.dcm"
    path.parent.mkdir()
    deflated_instance(path, private=2, pixels=random.Random(3).randbytes(2048 * 1024))
    gen = run_storescp(tmp_path, "--bit-preserving", accept="+xi")
    port, out_dir = next(gen)
    try:
        status = store("--aec", "STORESCP", "127.0.0.1", str(port), str(path))
        lines = capsys.readouterr().out.splitlines()
        assert status == 0, lines
        (got,) = out_dir.iterdir()
        assert dataset_bytes(got) == implicit_bytes(path, tmp_path)
    finally:
        gen.close()


@pytest.mark.interop
@pytest.mark.parametrize("slow", ["first read", "later reads"])
def test_an_abort_before_a_file_s_data_went_out_says_nothing_of_the_file(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    slow: str,
) -> None:
    """A peer that aborts just after each answer (a review's case: a server
    restarting would do as well), the next file slow to read (a cold cache, a
    network filesystem): the association is gone before any of that file's data
    set went out (a block read is held back until the next), so the abort is
    not the file's, and no file may be called malformed (exit 5) for it."""
    folder = tmp_path / "in"
    if slow == "first read":
        for name in "abcdefgh":
            make_instance(folder / f"{name}.dcm")
        slow_first_reads(monkeypatch, 0.1)
    else:
        for name in "abcdef":
            padded_instance(folder / f"{name}.dcm", 3)
        slow_reads(monkeypatch, 0.1)

    def answer_then_abort(event: Any) -> int:
        threading.Timer(0.02, event.assoc.abort).start()
        return 0

    scp = pyscp_factory(answer_then_abort)
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert not [line for line in lines if "malformed" in line], lines
    assert status in (0, 3), lines  # lost associations at worst, not bad files


@pytest.mark.interop
def test_a_peer_aborting_every_association_before_any_data_is_given_up(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The peer aborts each association as soon as it is accepted, before any
    file's data set went out: the peer's fault, not the files', and after two
    files so failed the rest fail at once (not two associations each)."""
    folder = tmp_path / "in"
    for i in range(10):
        make_instance(folder / f"{i}.dcm")
    slow_first_reads(monkeypatch, 0.1)
    scp = pyscp_factory()
    scp.on_accepted = lambda event: threading.Timer(0.01, event.assoc.abort).start()
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 3, lines
    assert lines[0].startswith("sent 0, failed 10, skipped 0 of 10 file(s); ")
    failed = [line for line in lines if line.startswith("failed: ")]
    assert sum("the peer's fault, more likely" in line for line in failed) == 2, lines
    assert sum("the peer aborts every association" in line for line in failed) == 8, lines
    assert len(scp.associations) <= 8  # 2 files x 2 tries, then the rest at once


@pytest.mark.interop
def test_a_peer_that_took_files_and_now_aborts_every_one_is_given_up(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A review's case: the peer takes three files, then aborts every C-STORE.
    The files after are not malformed (exit 5) because it once took others: two
    fail as the peer's fault, and the rest at once, not two associations each."""
    folder = tmp_path / "in"
    for i in range(12):
        make_instance(folder / f"{i:02}.dcm")
    stores: list[str] = []

    def take_three_then_abort(event: Any) -> int:
        stores.append(event.request.AffectedSOPInstanceUID)
        if len(stores) > 3:
            event.assoc.abort()
        return 0

    scp = pyscp_factory(take_three_then_abort)
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 3, lines
    assert lines[0].startswith("sent 3, failed 9, skipped 0 of 12 file(s); ")
    failed = [line for line in lines if line.startswith("failed: ")]
    assert not [line for line in failed if "malformed" in line], lines
    assert sum("the peer's fault, more likely" in line for line in failed) == 2, lines
    assert sum("the peer aborts every association" in line for line in failed) == 7, lines
    assert len(stores) <= 10  # three taken, a few files tried once or twice: not 3 + 18


@pytest.mark.interop
def test_explicit_vr_files_go_as_stored_to_a_peer_taking_both(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """pynetdicom's SCP, offered Explicit and Implicit VR in one context, takes the
    first of its own list (Implicit VR): each gets a context of its own, so the
    files go as stored."""
    scp = pyscp_factory(transfer_syntaxes=[ImplicitVRLittleEndian, ExplicitVRLittleEndian])
    files = copy_test_files(tmp_path / "in", UNCOMPRESSED)
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(tmp_path / "in"))
    lines = capsys.readouterr().out.splitlines()
    assert status == 0, lines
    assert len(lines) == 1, lines  # no conversion note
    for path in files:
        meta, _ = read_meta(path)
        ts, data = scp.received[meta.media_storage_sop_instance_uid]
        assert ts == meta.transfer_syntax_uid
        assert data == sent_bytes(path), path.name


# ---- a data folder another process holds --------------------------------------------------


@pytest.fixture
def held_data(tmp_path: Path) -> Iterator[Path]:
    """A data folder whose lock another process holds, as a running node does."""
    data = tmp_path / "data"
    data.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(data / "lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    assert holder.stdout.readline() == "locked\n"
    yield data
    holder.communicate("")  # EOF: it exits, the kernel drops the lock


HOLD_LOCK = """\
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["check"],
        ["check", "--repair"],
        ["import", "INSTANCE"],
        ["serve", "--host", "127.0.0.1", "--port", "0"],
    ],
)
def test_a_held_data_folder_is_a_one_line_error(
    argv: list[str], held_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    instance = tmp_path / "a.dcm"
    make_instance(instance)
    argv = [str(instance) if arg == "INSTANCE" else arg for arg in argv]
    assert main([*argv, "--data", str(held_data)]) == EXIT_ABORTED
    assert capsys.readouterr().err == (
        f"archive {argv[0]}: data folder {held_data} is in use by another archive process"
        " (a running node?)\n"
    )
    assert not (held_data / "index.sqlite").exists()  # refused before touching anything


@pytest.mark.parametrize(
    "argv",
    [
        ["check"],
        ["reindex"],
        ["import", "INSTANCE"],
        ["serve", "--host", "127.0.0.1", "--port", "0"],
    ],
)
@pytest.mark.parametrize("problem", ["a file", "under a file", "a broken index"])
def test_an_unusable_data_folder_is_a_one_line_error_naming_it(
    argv: list[str], problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No traceback (import, check, reindex), and not "cannot listen" (serve): the
    key, the folder and the reason. A running node is not needed to see it."""
    instance = tmp_path / "a.dcm"
    make_instance(instance)
    argv = [str(instance) if arg == "INSTANCE" else arg for arg in argv]
    plain = tmp_path / "plain"
    plain.write_bytes(b"not a folder")
    data, reason = {
        "a file": (plain, "not a folder"),
        "under a file": (plain / "data", "Not a directory"),
        "a broken index": (tmp_path / "data", "index: file is not a database"),
    }[problem]
    if problem == "a broken index":
        data.mkdir()
        (data / "index.sqlite").write_bytes(b"\x42" * 5000)
    assert main([*argv, "--data", str(data)]) == EXIT_ABORTED
    err = capsys.readouterr().err
    assert err.startswith(f"archive {argv[0]}: node.data_dir: cannot use {data}: {reason}"), err
    assert err.count("\n") == 1, err


def test_serve_on_a_taken_port_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The node cleans up what it opened and the CLI says why, instead of a
    traceback (and, before Node.start cleaned up, a process that never exited)."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(
            ["serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(tmp_path / "d")]
        )
    assert code == EXIT_ABORTED
    err = capsys.readouterr().err
    assert err.startswith(f"archive serve: cannot listen on 127.0.0.1:{port}: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.interop
def test_a_response_to_another_message_is_no_success(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An SCP whose C-STORE-RSP names another Message ID Being Responded To
    (PS3.7 9.3.1.2): the file was counted sent on it (exit 0). It is not an
    answer to our request: the association is aborted and the file fails, as
    DCMTK's storescu does ("Unexpected Response MsgId")."""
    from pynetdicom import dimse
    from pynetdicom.dimse_primitives import C_STORE

    real = dimse.DIMSEServiceProvider.send_msg

    def send_msg(self: Any, primitive: Any, context_id: int) -> None:
        if isinstance(primitive, C_STORE) and primitive.Status is not None:
            primitive.MessageIDBeingRespondedTo = primitive.MessageIDBeingRespondedTo + 7
        real(self, primitive, context_id)

    monkeypatch.setattr(dimse.DIMSEServiceProvider, "send_msg", send_msg)
    folder = tmp_path / "in"
    make_instance(folder / "1.dcm")
    scp = pyscp_factory()
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    out = capsys.readouterr().out
    assert status != 0, out
    assert out.startswith("sent 0, failed 1, skipped 0 of 1 file(s)"), out
    assert "answers message 8, not ours (1)" in out, out


def test_files_that_all_failed_are_failures_not_an_empty_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A cut Part 10 file and a dangling link, and nothing else: exit 5 (a file
    failed), not 1 with "no DICOM instances found" (a run of skipped files only)."""
    folder = tmp_path / "in"
    make_instance(folder / "whole.dcm")
    cut = folder / "cut.dcm"
    cut.write_bytes((folder / "whole.dcm").read_bytes()[:140])
    (folder / "whole.dcm").unlink()
    (folder / "dangling.dcm").symlink_to(folder / "gone.dcm")
    status = store("127.0.0.1", "9", str(folder))
    captured = capsys.readouterr()
    assert status == 5, captured.out + captured.err
    assert "no DICOM instances found" not in captured.err
    assert "failed 2" in captured.out


def test_a_busy_peer_is_asked_again(
    node_factory: Callable[..., RunningNode], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A peer at its association limit rejects transient (PS3.8 Table 9-21):
    every worker rejected, the files all failed at once (exit 2). The last worker
    now waits and asks again a few times; the limit frees up and all are sent."""
    from tests.net.rawpeer import A_RELEASE_RQ, RawPeer

    node = node_factory(toml="[association]\nmax_associations = 1\n")
    folder = tmp_path / "in"
    uids = [make_instance(folder / f"{n}.dcm") for n in range(4)]
    holder = RawPeer(node.host, node.port)
    holder.associate()  # the one association the node serves

    def release_later() -> None:
        threading.Event().wait(1.0)
        holder.send(A_RELEASE_RQ)
        holder.recv_pdu()
        holder.close()

    releaser = threading.Thread(target=release_later)
    releaser.start()
    try:
        status = store("-j", "2", "--aec", node.ae_title, node.host, str(node.port), str(folder))
    finally:
        releaser.join(10)
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.startswith("sent 4, failed 0, skipped 0 of 4 file(s)"), out
    assert all(stored_path(node.config.node.data_dir, uid).exists() for uid in uids)


@pytest.mark.interop
def test_a_peer_that_answers_nothing_is_given_up(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An SCP that never answers a C-STORE cost each file two timeouts (1,000
    files, 16 hours at the default 30 s). After two files timed out twice on a
    peer that has answered none, the rest fail at once (exit 4)."""
    folder = tmp_path / "in"
    for n in range(6):
        make_instance(folder / f"{n}.dcm")
    calls: list[str] = []

    def hang(event: Any) -> int:
        calls.append(event.request.AffectedSOPInstanceUID)
        threading.Event().wait(2.0)
        return 0

    scp = pyscp_factory(hang)
    status = store("--aec", "PYSCP", "--timeout", "0.5", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 4, lines
    assert lines[0].startswith("sent 0, failed 6, skipped 0 of 6 file(s)")
    given_up = [line for line in lines if "the peer answers no C-STORE" in line]
    assert len(given_up) >= 2, lines
    assert len(calls) <= 5, calls  # not 12


@pytest.mark.interop
def test_a_data_set_cut_short_is_not_sent_whole(
    pyscp_factory: Callable[..., PynetdicomScp],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """pydicom's truncated files (Pixel Data, or a sequence, running past the
    end): pynetdicom's SCP stored them with Success, Orthanc never answered.
    The message is cut before its last fragment (the association aborted), the
    file fails as cut short, and the good file beside them is sent."""
    from pydicom.data import get_testdata_file

    folder = tmp_path / "in"
    folder.mkdir()
    names = ["MR_truncated.dcm", "rtplan_truncated.dcm"]
    for name in names:
        shutil.copy(get_testdata_file(name), folder / name)
    good = make_instance(folder / "good.dcm")
    scp = pyscp_factory()
    status = store("--aec", "PYSCP", "127.0.0.1", str(scp.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 5, lines
    assert lines[0].startswith("sent 1, failed 2, skipped 0 of 3 file(s)"), lines
    for name in names:
        (line,) = [line for line in lines if name in line]
        assert "the data set is cut short (data set truncated" in line, line
    assert set(scp.received) == {good}
