"""Explicit VR LE to Implicit VR LE, and Big to Little Endian (``archive/dicom/reencode.py``),
against DCMTK.

The oracle is DCMTK's ``dcmconv +ti -e -g`` (Implicit VR Little Endian, undefined
lengths for sequences and items, group lengths removed): for every Explicit VR
Little Endian file pydicom ships, the data set we give is byte for byte the one
dcmconv writes, fed whole, in 7-byte pieces and byte by byte. pydicom reads it
back as the same data set, pixels included.
"""

from __future__ import annotations

import random
import struct
import subprocess
from collections.abc import Iterable
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_has_tag
from pydicom.filereader import read_dataset

from archive.dicom.reencode import MAX_OPEN, ReencodeError, ToImplicit, ToLittleEndian
from tests.conftest import require_tool
from tests.dicom.header_helpers import (
    BIG,
    EXPLICIT,
    bytewise,
    element,
    sample_path,
    sevens,
    split_file,
)

TEST_FILES = Path(sample_path("CT_small.dcm")).parent
UNDEFINED = 0xFFFFFFFF

#: Explicit VR LE files the conversion refuses, and why: both are broken on purpose.
REFUSED = {
    "MR_truncated.dcm": "cut short",  # its Pixel Data ends early
    "DICOMDIR-nooffset": "runs past its container",  # a sequence length too short
}


def _files_in(transfer_syntax: str) -> list[Path]:
    """pydicom's test files whose data set is in ``transfer_syntax``."""
    found = []
    for path in sorted(TEST_FILES.rglob("*")):
        if not path.is_file():
            continue
        try:
            ts, _ = split_file(str(path))
        except Exception:  # not DICOM at all
            continue
        if ts == transfer_syntax:
            found.append(path)
    return found


EXPLICIT_FILES = _files_in(EXPLICIT)


def convert(pieces: Iterable[bytes | memoryview]) -> bytes:
    conversion = ToImplicit()
    out = [conversion.feed(piece) for piece in pieces]
    return b"".join(out) + conversion.close()


def dcmconv(path: Path, tmp_path: Path) -> bytes:
    out = tmp_path / "implicit.dcm"
    subprocess.run(
        [require_tool("dcmconv"), "+ti", "-e", "-g", str(path), str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    ts, body = split_file(str(out))
    assert ts == "1.2.840.10008.1.2"
    return body


def test_the_corpus_is_there() -> None:
    assert len(EXPLICIT_FILES) >= 100
    assert set(REFUSED) <= {p.name for p in EXPLICIT_FILES}


@pytest.mark.parametrize("path", EXPLICIT_FILES, ids=lambda p: str(p.relative_to(TEST_FILES)))
def test_every_explicit_file_is_what_dcmconv_writes(path: Path, tmp_path: Path) -> None:
    _, body = split_file(str(path))
    if path.name in REFUSED:
        with pytest.raises(ReencodeError, match=REFUSED[path.name]):
            convert([body])
        return
    expected = dcmconv(path, tmp_path)
    assert convert([body]) == expected
    assert convert(sevens(body)) == expected
    assert convert(bytewise(body)) == expected


READ_BACK = ["CT_small.dcm", "test-SR.dcm", "MR_small_padded.dcm", "waveform_ecg.dcm"]


@pytest.mark.parametrize("name", READ_BACK)
def test_pydicom_reads_the_same_data_set(name: str) -> None:
    path = sample_path(name)
    _, body = split_file(path)
    before = pydicom.dcmread(path)
    after = read_dataset(_stream(convert([body])), is_implicit_VR=True, is_little_endian=True)
    assert _values(after) == _values(before)
    if "PixelData" in before:
        assert after.PixelData == before.PixelData


def test_random_cuts_give_the_same_bytes() -> None:
    _, body = split_file(sample_path("test-SR.dcm"))  # nested sequences, defined lengths
    whole = convert([body])
    rng = random.Random(7)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(body)), 20))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        assert convert(pieces) == whole


def test_sequences_and_items_of_defined_length_go_out_undefined() -> None:
    inner = element(0x00081150, "UI", b"1.2\0") + element(0x00081155, "UI", b"1.3\0")
    item = element(0xFFFEE000, "", inner)
    body = element(0x00081140, "SQ", item) + element(0x00100010, "PN", b"Doe^J ")
    out = convert([body])
    assert out == (
        struct.pack("<HHL", 0x0008, 0x1140, UNDEFINED)
        + struct.pack("<HHL", 0xFFFE, 0xE000, UNDEFINED)
        + struct.pack("<HHL", 0x0008, 0x1150, 4) + b"1.2\0"
        + struct.pack("<HHL", 0x0008, 0x1155, 4) + b"1.3\0"
        + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
        + struct.pack("<HHL", 0x0010, 0x0010, 6) + b"Doe^J "
    )  # fmt: skip


def test_group_lengths_are_left_out() -> None:
    body = (
        element(0x00080000, "UL", struct.pack("<L", 8))
        + element(0x00080060, "CS", b"CT")
        + element(0x00080001, "UL", struct.pack("<L", 99))
        + element(0x00100010, "PN", b"A^B ")
    )
    conversion = ToImplicit()
    out = b"".join(conversion.feed(piece) for piece in bytewise(body)) + conversion.close()
    assert (
        out
        == struct.pack("<HHL", 8, 0x60, 2) + b"CT" + struct.pack("<HHL", 0x10, 0x10, 4) + b"A^B "
    )
    assert conversion.dropped == 2


def test_an_undefined_length_un_is_copied_as_it_is() -> None:
    # PS3.5 6.2.2: its content is Implicit VR LE already, nested items included.
    nested = (
        struct.pack("<HHL", 0x0009, 0x1012, UNDEFINED)
        + struct.pack("<HHL", 0xFFFE, 0xE000, 12) + struct.pack("<HHL", 0x0009, 0x1013, 4) + b"abcd"
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    )  # fmt: skip
    content = (
        struct.pack("<HHL", 0xFFFE, 0xE000, UNDEFINED)
        + struct.pack("<HHL", 0x0009, 0x1011, 2) + b"xy"
        + nested
        + struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
        + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    )  # fmt: skip
    body = element(0x00091010, "UN", b"", length=UNDEFINED) + content
    body += element(0x00100010, "PN", b"A^B ")
    expected = struct.pack("<HHL", 0x0009, 0x1010, UNDEFINED) + content
    expected += struct.pack("<HHL", 0x10, 0x10, 4) + b"A^B "
    assert convert([body]) == expected
    assert convert(bytewise(body)) == expected


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (element(0x00100010, "PN", b"Doe^John")[:-3], "cut short"),
        (element(0x00100010, "PN", b"Doe^John")[:5], "cut short"),
        (struct.pack("<HHL", 0x0010, 0x0010, 4) + b"A^B ", "no VR"),
        (element(0x7FE00010, "OB", b"", length=UNDEFINED), "undefined length on a OB"),
        (element(0xFFFEE000, "", b""), "item outside a sequence"),
        (element(0x00081140, "SQ", element(0x00100010, "PN", b"AB")), "no item"),
        (element(0x00081140, "SQ", b"", length=UNDEFINED), "ends inside a sequence"),
        (
            element(
                0x00081140, "SQ", element(0xFFFEE000, "", element(0x00100010, "PN", b"ABCD"))[:-2]
            ),
            "runs past its container",
        ),
        (struct.pack("<HHL", 0xFFFE, 0xE00D, 0), "unexpected delimiter"),
    ],
    ids=[
        "value",
        "header",
        "implicit",
        "encapsulated",
        "item",
        "not-item",
        "open",
        "overrun",
        "stray",
    ],
)
def test_what_cannot_be_followed_is_refused(body: bytes, why: str) -> None:
    for pieces in ([body], list(bytewise(body))):
        with pytest.raises(ReencodeError, match=why):
            convert(pieces)


def test_a_stray_sequence_delimiter_at_the_top_is_left_out() -> None:
    body = element(0x00080060, "CS", b"CT") + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    assert convert([body]) == struct.pack("<HHL", 8, 0x60, 2) + b"CT"


def _item(content: bytes) -> bytes:
    return element(0xFFFEE000, "", content)


def _stream(data: bytes) -> BytesIO:
    return BytesIO(data)


def _values(ds: pydicom.Dataset) -> list[tuple[int, object]]:
    """Every standard element's value, sequences item by item, group lengths left out.

    Private and unknown elements are left out: in Implicit VR pydicom reads them
    as raw bytes, having no VR for them."""
    out: list[tuple[int, object]] = []
    for tag in ds.keys():  # noqa: SIM118 - a Dataset's tags
        if tag.element == 0 or tag in (0x00080001, 0x7FE00010) or not dictionary_has_tag(tag):
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            out.append((int(tag), [_values(item) for item in elem.value]))
            continue
        value = elem.value
        if value is None or value == b"" or value == "":  # None in one VR, "" in another
            value = ""
        out.append((int(tag), value if isinstance(value, bytes) else str(value)))
    return out


# ---- Explicit VR Big Endian ------------------------------------------------------------


def _big_endian_files(tmp: Path) -> list[Path]:
    """pydicom's Big Endian files, and every Explicit VR LE one written in Big
    Endian by DCMTK's dcmconv +tb."""
    found = _files_in(BIG)
    for path in EXPLICIT_FILES:
        out = tmp / f"{len(found)}-{path.name}.be"
        done = subprocess.run(
            [require_tool("dcmconv"), "+tb", str(path), str(out)], capture_output=True, timeout=60
        )
        if done.returncode == 0:
            found.append(out)
    return found


def swap(pieces: Iterable[bytes | memoryview], *, implicit: bool = False) -> bytes:
    little, conversion = ToLittleEndian(), ToImplicit()
    out = []
    for piece in pieces:
        part = little.feed(piece)
        out.append(conversion.feed(part) if implicit else part)
    part = little.close()
    out.append(conversion.feed(part) + conversion.close() if implicit else part)
    return b"".join(out)


def test_every_big_endian_file_is_what_dcmconv_writes(tmp_path: Path) -> None:
    """To Explicit VR LE: byte for byte dcmconv +te (no header changes size, so
    lengths stay as they were); on to Implicit VR LE: dcmconv +ti -e -g."""
    files = _big_endian_files(tmp_path)
    assert len(files) >= 100
    for path in files:
        _, body = split_file(str(path))
        little = dcmconv_as(path, tmp_path, "+te")
        implicit = dcmconv_as(path, tmp_path, "+ti", "-e", "-g")
        assert swap([body]) == little, path.name
        assert swap(sevens(body)) == little, path.name
        assert swap([body], implicit=True) == implicit, path.name
    # Byte by byte (a number cut anywhere), on a few: the corpus above is slow so.
    for name in ("MR_small_bigendian.dcm", "rtdose_expb.dcm", "SC_rgb_small_odd_big_endian.dcm"):
        path = TEST_FILES / name
        _, body = split_file(str(path))
        assert swap(bytewise(body)) == dcmconv_as(path, tmp_path, "+te"), name


def dcmconv_as(path: Path, tmp_path: Path, *options: str) -> bytes:
    out = tmp_path / "converted.dcm"
    subprocess.run(
        [require_tool("dcmconv"), *options, str(path), str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return split_file(str(out))[1]


def test_big_endian_numbers_swap_by_their_vr() -> None:
    def encoded(order: str) -> bytes:
        """The same elements in byte order ``order`` ("<" or ">")."""
        return (
            struct.pack(order + "HH2sH", 0x0028, 0x0010, b"US", 2) + struct.pack(order + "H", 512)
            + struct.pack(order + "HH2sH", 0x0018, 0x0088, b"FD", 8) + struct.pack(order + "d", 1.5)
            + struct.pack(order + "HH2sH", 0x0020, 0x5000, b"AT", 4)
            + struct.pack(order + "HH", 0x0010, 0x0020)
            + struct.pack(order + "HH2sH", 0x0020, 0x000D, b"UI", 4) + b"1.2\0"
            + struct.pack(order + "HH2s2xL", 0x7FE0, 0x0010, b"OW", 4)
            + struct.pack(order + "HH", 1, 2)
        )  # fmt: skip

    body, expected = encoded(">"), encoded("<")
    assert body != expected
    assert swap([body]) == expected
    assert swap(bytewise(body)) == expected


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (struct.pack(">HH2sH", 0x0028, 0x0010, b"US", 3) + b"abc", "not a whole number of 2-byte"),
        (struct.pack(">HHL", 0x0010, 0x0010, 4) + b"A^B ", "no VR .* not Explicit VR Big Endian"),
        (struct.pack(">HH2sH", 0x0028, 0x0010, b"US", 2) + b"a", "cut short"),
    ],
    ids=["odd-us", "implicit", "cut"],
)
def test_what_is_no_big_endian_data_set_is_refused(body: bytes, why: str) -> None:
    with pytest.raises(ReencodeError, match=why):
        swap([body])


def test_nesting_is_bounded() -> None:
    """One open container costs memory: past MAX_OPEN (a hostile file of nested
    undefined lengths, 16 bytes a level) the data set is refused."""
    level = element(0x00091010, "SQ", b"", length=UNDEFINED) + element(
        0xFFFEE000, "", b"", length=UNDEFINED
    )
    close = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    deep = MAX_OPEN // 2
    out = convert([level * deep + close * deep])
    assert out.count(struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)) == deep
    with pytest.raises(ReencodeError, match=f"nested more than {MAX_OPEN} deep"):
        convert([level * (deep + 1)])
