"""Finding and probing the files of ``archive store`` and ``archive import``.

Odd files and folders fail alone with a reason in the summary: a File Meta UID
that is not a UID, a path that cannot be looked at, a folder that cannot be
listed, a file name that is not valid in the file system's encoding.
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from archive.cli import main, print_summary
from archive.dicom.uids import EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE
from archive.scu import Cause, FileItem, FileResult, Kind, Report, discover, probe
from archive.scu.files import NO_PREAMBLE
from archive.store import read_meta
from tests.conftest import RunningNode
from tests.index import MR
from tests.test_cli_store import (
    CT_IMAGE,
    bare_copy,
    bare_folder,
    dataset_bytes,
    make_instance,
    store,
    stored_path,
)

#: A SOP Class UID of 65 characters: one too many (PS3.5 9.1).
LONG_UID = "1.2." + "3" * 61


def with_meta(
    path: Path,
    *,
    sop_class: bytes | None = None,
    sop_instance: bytes | None = None,
    transfer_syntax: bytes | None = None,
    source_ae: bytes | None = None,
) -> None:
    """Rewrite the File Meta of the Part 10 file at ``path`` with raw element values
    (pydicom would refuse or warn about the invalid ones); None keeps the file's."""
    import pydicom

    meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
    data = dataset_bytes(path)

    def value(given: bytes | None, keyword: str) -> bytes:
        return given if given is not None else str(getattr(meta, keyword)).encode()

    elements = [
        struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
        _short(0x0002, b"UI", value(sop_class, "MediaStorageSOPClassUID")),
        _short(0x0003, b"UI", value(sop_instance, "MediaStorageSOPInstanceUID")),
        _short(0x0010, b"UI", value(transfer_syntax, "TransferSyntaxUID")),
        _short(0x0012, b"UI", b"1.2.3"),
    ]
    if source_ae is not None:
        elements.append(_short(0x0016, b"AE", source_ae))
    body = b"".join(elements)
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    path.write_bytes(bytes(128) + b"DICM" + group_length + body + data)


def _short(element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr == b"UI" else b" "
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


# ---- File Meta UIDs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("element", "name"),
    [
        ("sop_class", "Media Storage SOP Class UID (0002,0002)"),
        ("sop_instance", "Media Storage SOP Instance UID (0002,0003)"),
        ("transfer_syntax", "Transfer Syntax UID (0002,0010)"),
    ],
)
@pytest.mark.parametrize(
    "bad",
    [LONG_UID.encode(), "1.2.3.\u00e9".encode("latin-1"), b"1.2.abc", b"1..2"],
    ids=["65-chars", "non-ascii", "letters", "empty-component"],
)
def test_probe_fails_a_file_whose_meta_uid_is_not_a_uid(
    tmp_path: Path, element: str, name: str, bad: bytes
) -> None:
    path = tmp_path / "a.dcm"
    make_instance(path)
    with_meta(path, **{element: bad})
    result = probe(path)
    assert isinstance(result, FileResult)
    assert result.kind is Kind.FAILED
    assert result.cause is Cause.FILE
    assert result.reason.startswith(f"file meta {name} is not a UID")


@pytest.mark.parametrize("transfer_syntax", [IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE])
def test_probe_reads_a_data_set_without_file_meta(tmp_path: Path, transfer_syntax: str) -> None:
    """Written without File Meta (older modalities did): sent as storescu sends it,
    in the syntax its first element shows, with its own SOP Class and Instance."""
    part10 = tmp_path / "a.dcm"
    uid = make_instance(part10, transfer_syntax=transfer_syntax, sop_class=MR)
    data = bare_copy(part10, tmp_path / "bare")
    item = probe(tmp_path / "bare")
    assert isinstance(item, FileItem)
    assert (item.bare, item.offset, item.size) == (True, 0, len(data))
    assert item.key == (MR, transfer_syntax)
    assert item.meta.media_storage_sop_instance_uid == uid


def test_probe_reads_pydicoms_files_without_file_meta() -> None:
    for name, transfer_syntax in (
        ("ExplVR_LitEndNoMeta.dcm", EXPLICIT_VR_LE),
        ("ExplVR_BigEndNoMeta.dcm", EXPLICIT_VR_BE),
    ):
        path = get_testdata_file(name)
        assert path is not None
        item = probe(Path(path))
        assert isinstance(item, FileItem), name
        expected = pydicom.dcmread(path, force=True)
        assert item.key == (expected.SOPClassUID, transfer_syntax)
        assert item.meta.media_storage_sop_instance_uid == expected.SOPInstanceUID


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        (
            "SOPInstanceUID",
            "a DICOM data set without File Meta Information and without"
            " SOP Instance UID (0008,0018)",
        ),
        (
            "SOPClassUID",
            "a DICOM data set without File Meta Information and without SOP Class UID (0008,0016)",
        ),
        (
            "truncated",
            "a DICOM data set without File Meta Information, not readable as"
            " ExplicitVRLittleEndian: data set truncated in its header",
        ),
    ],
)
def test_probe_fails_a_data_set_without_file_meta_it_cannot_send(
    tmp_path: Path, cut: str, reason: str
) -> None:
    """An instance left out is a failure (the run exits non-zero), with why."""
    part10 = tmp_path / "a.dcm"
    make_instance(part10)
    if cut != "truncated":
        ds = pydicom.dcmread(part10)
        delattr(ds, cut)
        ds.save_as(part10, enforce_file_format=True)
    data = dataset_bytes(part10)
    bare = tmp_path / "bare"
    bare.write_bytes(data[:40] if cut == "truncated" else data)
    result = probe(bare)
    assert isinstance(result, FileResult)
    assert (result.kind, result.cause, result.reason) == (Kind.FAILED, Cause.FILE, reason)


def test_probe_fails_a_file_meta_without_its_preamble(tmp_path: Path) -> None:
    """Group 0002 at the very start: DICOM, but sent as a data set its meta would
    go out inside it; failed with why, not skipped."""
    part10 = tmp_path / "a.dcm"
    make_instance(part10)
    cut = tmp_path / "cut"
    cut.write_bytes(part10.read_bytes()[128 + 4 :])
    result = probe(cut)
    assert isinstance(result, FileResult)
    assert (result.kind, result.cause, result.reason) == (Kind.FAILED, Cause.FILE, NO_PREAMBLE)


@pytest.mark.parametrize(
    "head", [b"", b"\x08\x00", b"hello, world\n", b"\x08\x00\x05\x00" + b"\xff" * 8]
)
def test_probe_skips_what_is_no_data_set(tmp_path: Path, head: bytes) -> None:
    path = tmp_path / "notes"
    path.write_bytes(head)
    result = probe(path)
    assert isinstance(result, FileResult)
    assert (result.kind, result.reason) == (Kind.SKIPPED, "not a DICOM Part 10 file")


def test_probe_accepts_a_leading_zero_in_a_component(tmp_path: Path) -> None:
    """As the node does (usable_uid): modalities send such UIDs."""
    path = tmp_path / "a.dcm"
    make_instance(path)
    with_meta(path, sop_instance=b"1.2.03.4")
    assert isinstance(probe(path), FileItem)


def test_store_sends_the_others_when_one_meta_uid_is_not_a_uid(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to end the whole run with a LocalProtocolError traceback: the
    association proposing that abstract syntax could not even be encoded."""
    folder = tmp_path / "in"
    uids = [make_instance(folder / f"{i}.dcm") for i in range(3)]
    bad = folder / "1.dcm"
    with_meta(bad, sop_class=LONG_UID.encode())
    status = store("--aec", "ARCHIVE", node.host, str(node.port), str(folder))
    lines = capsys.readouterr().out.splitlines()
    assert status == 5
    assert lines[0].startswith("sent 2, failed 1, skipped 0 of 3 file(s); ")
    assert lines[1:] == [
        f"failed: {bad}  {uids[1]}  file meta Media Storage SOP Class UID (0002,0002) is not a UID"
        f" (1-64 digits and dots): {LONG_UID!r}"
    ]
    data = node.config.node.data_dir
    assert [stored_path(data, uid).exists() for uid in uids] == [True, False, True]


def test_store_sends_data_sets_without_file_meta(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stored as sent, in the syntax guessed, under the data set's own UIDs."""
    bare = bare_folder(tmp_path)
    status = store("--aec", "ARCHIVE", node.host, str(node.port), str(tmp_path / "in"))
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.startswith("sent 3, failed 0, skipped 0 of 3 file(s); ")
    for uid, (_, data, transfer_syntax) in bare.items():
        stored = stored_path(node.config.node.data_dir, uid)
        assert dataset_bytes(stored) == data
        meta, _ = read_meta(stored)
        assert (meta.media_storage_sop_class_uid, meta.transfer_syntax_uid) == (
            CT_IMAGE,
            transfer_syntax,
        )
        assert pydicom.dcmread(stored).SOPInstanceUID == uid


# ---- paths that cannot be looked at ------------------------------------------------------


def unlistable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``folder`` cannot be listed, as a mode 000 folder for a user who is not root
    (the tests run as root), or one deeper than PATH_MAX."""
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if os.fspath(path) == str(folder):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_discover_records_what_it_cannot_look_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    good = folder / "a" / "1.dcm"
    make_instance(good)
    make_instance(folder / "b" / "2.dcm")
    too_long = tmp_path / ("x" * 300)  # a component over NAME_MAX: ENAMETOOLONG
    unlistable(monkeypatch, folder / "b")
    files, failed = discover([folder, too_long])
    assert files == [good]
    assert [(r.path, r.kind, r.reason, r.cause) for r in failed] == [
        (str(folder / "b"), Kind.FAILED, "cannot read: Permission denied", Cause.FILE),
        (str(too_long), Kind.FAILED, "cannot read: File name too long", Cause.FILE),
    ]


def test_discover_follows_links_to_folders_once(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    own = folder / "a" / "1.dcm"
    make_instance(own)
    elsewhere = tmp_path / "elsewhere"
    linked = elsewhere / "2.dcm"
    make_instance(linked)
    (folder / "b").symlink_to(elsewhere)  # a series kept on another disk
    (folder / "c").symlink_to(elsewhere)  # the same folder under a second name
    (folder / "a" / "up").symlink_to(folder)  # a loop
    files, failed = discover([folder])
    assert failed == []
    assert files == [own, folder / "b" / "2.dcm"]
    # Two of the paths given lead to one folder: its files are listed once.
    assert discover([folder, elsewhere]) == ([own, folder / "b" / "2.dcm"], [])


def test_discover_says_no_such_file_for_a_missing_path(tmp_path: Path) -> None:
    assert discover([tmp_path / "nope"]) == (
        [],
        [FileResult(str(tmp_path / "nope"), Kind.FAILED, reason="no such file", cause=Cause.FILE)],
    )


@pytest.mark.parametrize("command", ["store", "import"])
def test_a_folder_that_cannot_be_listed_is_a_failure(
    command: str,
    node: RunningNode,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """os.walk skipped it silently: a partial run that exited 0. And a path that
    cannot even be stat'ed (ENAMETOOLONG) ended the run with a traceback."""
    folder = tmp_path / "in"
    uid = make_instance(folder / "a" / "1.dcm")
    make_instance(folder / "b" / "2.dcm")
    too_long = tmp_path / ("x" * 300)
    unlistable(monkeypatch, folder / "b")
    paths = [str(folder), str(too_long)]
    if command == "store":
        status = store("--aec", "ARCHIVE", node.host, str(node.port), *paths)
        data = Path(node.config.node.data_dir)
        verb = "sent"
    else:
        data = tmp_path / "data"
        status = main(["import", "--data", str(data), *paths])
        verb = "imported"
    lines = capsys.readouterr().out.splitlines()
    assert status == 5
    assert lines[0].startswith(f"{verb} 1, failed 2, skipped 0 of 3 file(s); ")
    assert lines[1:] == [
        f"failed: {folder / 'b'}  cannot read: Permission denied",
        f"failed: {too_long}  cannot read: File name too long",
    ]
    assert stored_path(data, uid).exists()


# ---- file names that are not valid in the file system's encoding ----------------------------


@pytest.mark.parametrize("command", ["store", "import"])
def test_file_names_not_in_the_file_system_encoding_are_shown_escaped(
    command: str, node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Such names come from os.walk with surrogates in them (PEP 383), which the
    UTF-8 stdout refused: the summary ended in a UnicodeEncodeError. They are shown
    with the byte escaped, as Python writes it."""
    folder = tmp_path / "in"
    folder.mkdir()
    sent = Path(os.fsdecode(bytes(folder) + b"/txt\xfe.dcm"))
    uid = make_instance(sent)
    bad = Path(os.fsdecode(bytes(folder) + b"/bad\xfe.dcm"))
    make_instance(bad)
    with_meta(bad, sop_class=LONG_UID.encode())
    Path(os.fsdecode(bytes(folder) + b"/notes\xfe.txt")).write_text("not DICOM\n")
    if command == "store":
        status = store("--aec", "ARCHIVE", node.host, str(node.port), str(folder))
        data = Path(node.config.node.data_dir)
        verb = "sent"
    else:
        data = tmp_path / "data"
        status = main(["import", "--data", str(data), str(folder)])
        verb = "imported"
    lines = capsys.readouterr().out.splitlines()
    assert status == 5
    assert lines[0].startswith(f"{verb} 1, failed 1, skipped 1 of 3 file(s); ")
    assert lines[1].startswith(f"failed: {folder}/bad\\xfe.dcm  ")
    assert lines[2] == f"skipped: {folder}/notes\\xfe.txt  not a DICOM Part 10 file"
    assert stored_path(data, uid).exists()


def test_describe_shows_a_name_not_in_the_file_system_encoding_escaped() -> None:
    path = os.fsdecode(b"/in/\xfe\xffx.dcm")
    line = FileResult(path, Kind.SKIPPED, reason="why").describe()
    assert line == "skipped: /in/\\xfe\\xffx.dcm  why"


def test_print_summary_escapes_what_stdout_cannot_encode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A reason may quote an exception's text, and with it a file name."""
    report = Report()
    report.add(FileResult("a.dcm", Kind.FAILED, reason=os.fsdecode(b"in b\xfe.dcm")))
    print_summary(report, "sent")
    assert capsys.readouterr().out.splitlines()[1] == "failed: a.dcm  in b\\udcfe.dcm"


def test_a_report_counts_what_went_well_and_keeps_what_it_lists() -> None:
    """A million files imported must not mean a million results in memory: sent
    and held files are counted, failures and warnings kept, skips kept up to the
    number the summary lists."""
    report = Report()
    for i in range(1000):
        report.add(FileResult(f"{i}.dcm", Kind.SENT, f"1.2.{i}", nbytes=10))
    for i in range(30):
        report.add(FileResult(f"{i}.txt", Kind.SKIPPED, reason="not a DICOM Part 10 file"))
    report.add(FileResult("h.dcm", Kind.HELD, "1.2.9"))
    report.add(FileResult("w.dcm", Kind.WARNING, "1.2.8", status=0xB000, nbytes=5))
    report.add(FileResult("f.dcm", Kind.FAILED, "1.2.7", status=0xA700, cause=Cause.STATUS))
    assert len(report.results) == 20 + 2
    assert (report.total, report.instances, report.sent_bytes) == (1033, 1003, 10_005)
    lines = report.summary("imported").splitlines()
    assert lines[0].startswith(
        "imported 1001, already held 1, failed 1, skipped 30 of 1033 file(s) (1 with warnings); "
    )
    assert lines[1].startswith("failed: f.dcm  1.2.7  status 0xA700")
    assert lines[2].startswith("warning: w.dcm  1.2.8  status 0xB000")
    assert lines[-1] == "... and 10 more skipped"
    assert report.worst() is Cause.STATUS
