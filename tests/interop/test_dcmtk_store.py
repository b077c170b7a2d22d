"""C-STORE interop with DCMTK 3.6.7: storescu and dcmsend against our SCP.

DCMTK is the reference sender: most modalities and PACS send the way it does.
storescu's ``-x?`` options choose which transfer syntaxes it proposes (two
contexts per SOP class: the option's syntax, then the other uncompressed ones);
our node takes the requestor's first choice it supports in each (PS3.8
9.3.3.2), and storescu sends a file in its own syntax when a context has it,
converting it otherwise. dcmsend proposes each file's own syntax. Both tools
re-encode every data set they send, even unconverted (sequences get defined
lengths, Data Set Trailing Padding is dropped), so "exactly the data set that
was sent" is checked against the bytes a :class:`WireTap` saw on the wire, and
the element values against the source file (:mod:`tests.interop.storehelpers`).
Every stored file is also read by pydicom and by dcmdump, and has its index row
with the transfer syntax it was received in.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydicom.data import get_charset_files

from archive.store import relative_path
from tests.conftest import RunningNode, require_tool
from tests.interop.conftest import DCMTK_ENV, HOST, TOOL_TIMEOUT, run_tool, stop
from tests.interop.storehelpers import (
    DEFLATED,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT,
    Sent,
    Source,
    WireTap,
    assert_dcmdump_clean,
    assert_stored,
    index_row,
    index_stats,
    pydicom_file,
    storescu_statuses,
)

pytestmark = pytest.mark.interop

AET = "MODALITY1"

#: Explicit VR Little Endian files of distinct SOP classes and SOP Instance UIDs.
MIXED_EXPLICIT = (
    "CT_small.dcm",  # CT Image Storage
    "MR_small.dcm",  # MR Image Storage
    "SC_rgb_small_odd.dcm",  # Secondary Capture, odd rows/columns
    "test-SR.dcm",  # Comprehensive SR
    "reportsi.dcm",  # Basic Text SR
    "liver_1frame.dcm",  # Segmentation
    "waveform_ecg.dcm",  # 12-lead ECG Waveform
)


@pytest.fixture
def storescu() -> str:
    return require_tool("storescu")


def sources(names: Sequence[str]) -> list[Source]:
    return [Source.read(pydicom_file(name)) for name in names]


def storescu_args(storescu: str, port: int, called_ae: str, *options: str) -> list[str]:
    return [storescu, "-v", "-aet", AET, "-aec", called_ae, *options, HOST, str(port)]


def send_ok(
    storescu: str, node: RunningNode, files: Sequence[Path | str], *options: str
) -> tuple[str, dict[str, Sent]]:
    """storescu through a :class:`WireTap`: exit 0 on one association; (log, what was sent)."""
    with WireTap(node.port) as tap:
        rc, out = run_tool(
            [*storescu_args(storescu, tap.port, node.ae_title, *options), *map(str, files)]
        )
        sent = tap.sent()
    assert rc == 0, out
    assert out.count("Association Accepted") == 1, out
    return out, sent


def check_all(node: RunningNode, files: Sequence[Source], sent: dict[str, Sent]) -> None:
    """Every file stored as sent, dcmdump reads them all, and nothing else is indexed."""
    assert sorted(sent) == sorted(f.sop_instance_uid for f in files)
    stored = [assert_stored(node, f, sent=sent[f.sop_instance_uid], source_ae=AET) for f in files]
    assert_dcmdump_clean(stored)
    assert index_stats(node).instances == len(files)


# ---- one association, several SOP classes -------------------------------------------------------


def test_storescu_several_sop_classes_one_association(node: RunningNode, storescu: str) -> None:
    # -R: a context per SOP class of the files only (storescu's built-in list lacks
    # Segmentation). Default -x=: every uncompressed syntax, Explicit VR LE first;
    # rtplan.dcm (Implicit VR LE) is converted by storescu to Explicit LE.
    files = sources([*MIXED_EXPLICIT, "rtplan.dcm"])
    out, sent = send_ok(storescu, node, [f.path for f in files], "-R")
    assert storescu_statuses(out) == ["Success"] * len(files)
    assert {s.transfer_syntax for s in sent.values()} == {EXPLICIT_LE}
    check_all(node, files, sent)


def test_storescu_small_pdus_and_repeats(node: RunningNode, storescu: str) -> None:
    # --max-send-pdu 4096: the 290 KB waveform crosses in ~70 PDVs. --repeat 2 sends
    # every file twice on the association: the second copy is an identical
    # duplicate, Success without a second row (PS3.4 B.2.3; policy "keep").
    files = sources(["waveform_ecg.dcm", "CT_small.dcm"])
    out, sent = send_ok(
        storescu, node, [f.path for f in files], "-R", "--max-send-pdu", "4096", "--repeat", "2"
    )
    assert storescu_statuses(out) == ["Success"] * 4
    assert out.count("Sending Store Request") == 4
    waveform = sent[files[0].sop_instance_uid]
    assert waveform.fragments >= len(waveform.dataset) // 4096
    check_all(node, files, sent)


#: pydicom's character set test files: patient names in ISO_IR 100/126/127/138/144,
#: ISO 2022 (Japanese, Korean, with and without the default G0 set), UTF-8, GB18030.
CHARSET_FILES = (
    "chrArab.dcm",
    "chrGerm.dcm",
    "chrGreek.dcm",
    "chrH31.dcm",
    "chrH32.dcm",
    "chrHbrw.dcm",
    "chrI2.dcm",
    "chrJapMulti.dcm",
    "chrKoreanMulti.dcm",
    "chrRuss.dcm",
    "chrX1.dcm",
    "chrX2.dcm",
)


def test_storescu_character_sets(node: RunningNode, storescu: str) -> None:
    # The index decodes names with each data set's Specific Character Set; every
    # value must be what pydicom decodes (assert_stored compares them).
    files = [Source.read(Path(get_charset_files(name)[0])) for name in CHARSET_FILES]
    out, sent = send_ok(storescu, node, [f.path for f in files], "-R")
    assert storescu_statuses(out) == ["Success"] * len(files)
    check_all(node, files, sent)


# ---- folders ------------------------------------------------------------------------------------


def test_storescu_scan_directories_recursive(
    node: RunningNode, storescu: str, tmp_path: Path
) -> None:
    # A folder tree as a modality export leaves it: files at several depths, names
    # without a .dcm suffix.
    names = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "test-SR.dcm", "SC_rgb_small_odd.dcm"]
    files = sources(names)
    folders = [tmp_path / "in", tmp_path / "in" / "a", tmp_path / "in" / "a" / "b"]
    for folder in folders:
        folder.mkdir()
    for i, f in enumerate(files):
        shutil.copyfile(f.path, folders[i % len(folders)] / f"IM{i:04d}")
    out, sent = send_ok(storescu, node, [folders[0]], "+sd", "+r", "-R")
    assert storescu_statuses(out) == ["Success"] * len(files)
    check_all(node, files, sent)


# ---- several associations at once ---------------------------------------------------------------


def test_storescu_parallel_processes(node: RunningNode, storescu: str) -> None:
    groups = [
        ("SCU1", ["CT_small.dcm", "rtplan.dcm"]),
        ("SCU2", ["MR_small.dcm", "SC_rgb_small_odd.dcm"]),
        ("SCU3", ["test-SR.dcm", "reportsi.dcm"]),
        ("SCU4", ["liver_1frame.dcm", "waveform_ecg.dcm"]),
    ]
    procs: list[subprocess.Popen[bytes]] = []
    with WireTap(node.port) as tap:
        try:
            for aet, names in groups:
                args = storescu_args(storescu, tap.port, node.ae_title, "-R")
                args[args.index("-aet") + 1] = aet
                procs.append(
                    subprocess.Popen(
                        [*args, *(str(pydicom_file(n)) for n in names)],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        env=DCMTK_ENV,
                    )
                )
            outputs = [proc.communicate(timeout=TOOL_TIMEOUT)[0] for proc in procs]
        finally:
            for proc in procs:
                stop(proc)
        sent = tap.sent()
    stored: list[Path] = []
    for proc, out, (aet, names) in zip(procs, outputs, groups, strict=True):
        text = out.decode("utf-8", "replace")
        assert proc.returncode == 0, text
        assert storescu_statuses(text) == ["Success"] * len(names)
        for f in sources(names):
            stored.append(assert_stored(node, f, sent=sent[f.sop_instance_uid], source_ae=aet))
    assert len(sent) == len(stored) == index_stats(node).instances == 8
    assert_dcmdump_clean(stored)


# ---- transfer syntax proposals ------------------------------------------------------------------

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_2000 = "1.2.840.10008.1.2.4.91"
RLE = "1.2.840.10008.1.2.5"


LE, BE, IMP, DFL = EXPLICIT_LE, EXPLICIT_BE, IMPLICIT, DEFLATED


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # Uncompressed: storescu proposes two contexts per SOP class, [the option's
        # syntax] and [the other uncompressed ones], and the node accepts the first
        # syntax of each. A file goes as is when a context has its syntax, else it
        # is converted to the first one's; -xd makes storescu deflate every
        # uncompressed file when it can.
        (["-xe"], [("CT_small.dcm", LE), ("MR_small_bigendian.dcm", BE), ("rtplan.dcm", LE)]),
        (["-xb"], [("ExplVR_BigEnd.dcm", BE), ("CT_small.dcm", LE), ("rtplan.dcm", BE)]),
        (["-xi"], [("rtplan.dcm", IMP), ("CT_small.dcm", IMP), ("MR_small_bigendian.dcm", IMP)]),
        (["-xd"], [("image_dfl.dcm", DFL), ("CT_small.dcm", DFL), ("rtplan.dcm", DFL)]),
        (["-R", "-xi"], [("rtplan.dcm", IMP), ("MR_small_implicit.dcm", IMP)]),
        # Compressed inputs, proposed in their own syntax and sent as they are.
        (
            ["-R", "-xy"],
            [("SC_rgb_jpeg_dcmtk.dcm", JPEG_BASELINE), ("SC_rgb_small_odd_jpeg.dcm", None)],
        ),
        (["-R", "-xx"], [("JPGExtended.dcm", JPEG_EXTENDED)]),
        (["-R", "-xs"], [("SC_rgb_jpeg_gdcm.dcm", JPEG_LOSSLESS_SV1)]),
        (["-R", "-xt"], [("MR_small_jpeg_ls_lossless.dcm", JPEG_LS_LOSSLESS)]),
        (
            ["-R", "-xv"],
            [("MR_small_jp2klossless.dcm", JPEG_2000_LOSSLESS), ("GDCMJ2K_TextGBR.dcm", None)],
        ),
        (["-R", "-xw"], [("JPEG2000.dcm", JPEG_2000), ("SC_rgb_gdcm_KY.dcm", JPEG_2000)]),
        (["-R", "-xr"], [("SC_rgb_rle.dcm", RLE), ("MR_small_RLE.dcm", RLE)]),
    ],
    ids=lambda v: "".join(v) if isinstance(v, list) and isinstance(v[0], str) else "",
)
def test_storescu_transfer_syntax_options(
    node: RunningNode,
    storescu: str,
    options: list[str],
    expected: list[tuple[str, str | None]],
) -> None:
    files = sources([name for name, _ts in expected])
    out, sent = send_ok(storescu, node, [f.path for f in files], *options)
    assert storescu_statuses(out) == ["Success"] * len(files)
    for f, (_name, ts) in zip(files, expected, strict=True):
        # None: the file's own syntax.
        assert sent[f.sop_instance_uid].transfer_syntax == (ts or f.transfer_syntax_uid), out
    check_all(node, files, sent)


def test_storescu_refused_instance_is_not_stored(node: RunningNode, storescu: str) -> None:
    # JPEGLSNearLossless_08.dcm has no Study or Series Instance UID: the node refuses
    # it with A900 (PS3.4 B.2.3 names no status of its own; DCMTK's storescp answers
    # the same) and stores nothing for it; -nh lets storescu go on with the next file.
    refused, good = sources(["JPEGLSNearLossless_08.dcm", "CT_small.dcm"])
    out, sent = send_ok(storescu, node, [refused.path, good.path], "-R", "-xu", "-nh")
    assert storescu_statuses(out) == ["Error: DataSetDoesNotMatchSOPClass", "Success"]
    assert sorted(sent) == sorted([refused.sop_instance_uid, good.sop_instance_uid])
    data = Path(node.config.node.data_dir)
    assert not (data / relative_path(refused.sop_instance_uid)).exists()
    assert index_row(node, refused.sop_instance_uid) is None
    assert list((data / "tmp").iterdir()) == []
    stored = assert_stored(node, good, sent=sent[good.sop_instance_uid], source_ae=AET)
    assert_dcmdump_clean([stored])
    assert index_stats(node).instances == 1


# ---- dcmsend ------------------------------------------------------------------------------------


def test_dcmsend_scan_directories(node: RunningNode, tmp_path: Path) -> None:
    # dcmsend proposes each file's own transfer syntax (plus Explicit VR LE) and
    # sends compressed files as they are; it re-encodes every data set too.
    dcmsend = require_tool("dcmsend")
    names = [
        "CT_small.dcm",
        "MR_small_bigendian.dcm",
        "rtplan.dcm",
        "image_dfl.dcm",
        "JPEG2000.dcm",
        "SC_rgb_rle.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "reportsi.dcm",
    ]
    files = sources(names)
    top = tmp_path / "export"
    (top / "sub").mkdir(parents=True)
    for i, f in enumerate(files):
        shutil.copyfile(f.path, (top if i % 2 else top / "sub") / f.path.name)
    report = tmp_path / "report.txt"
    with WireTap(node.port) as tap:
        rc, out = run_tool(
            [
                dcmsend,
                "-v",
                "-aet",
                AET,
                "-aec",
                node.ae_title,
                "--scan-directories",
                "--recurse",
                "--create-report-file",
                str(report),
                HOST,
                str(tap.port),
                str(top),
            ]
        )
        sent = tap.sent()
    assert rc == 0, out
    text = report.read_text()
    assert text.count("DIMSE Status  : 0x0000 (Success)") == len(files), text
    assert f"* with status SUCCESS  : {len(files)}" in text
    assert "Number of associations   : 1" in text
    # Compressed files keep their syntax on the wire.
    for f in files:
        if f.transfer_syntax_uid not in (IMPLICIT, EXPLICIT_LE, EXPLICIT_BE):
            assert sent[f.sop_instance_uid].transfer_syntax == f.transfer_syntax_uid
    check_all(node, files, sent)
