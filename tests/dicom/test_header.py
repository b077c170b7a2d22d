"""Unit tests of the streaming header extractor, with pydicom as the oracle.

Data sets come from pydicom's test files (file meta stripped, as a C-STORE carries
them) or are re-encoded with pydicom in each transfer syntax, or are built byte by
byte with :func:`element` where pydicom cannot write what we need.

Every data set is fed to its end, as the C-STORE handler does: values are read only
until the reader is done, but element headers are walked to the end so that a data
set cut short anywhere (Pixel Data included) fails in ``finish()``.
"""

from __future__ import annotations

import random
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from archive.dicom import uids
from archive.dicom.charset import (
    PN_DELIMITERS,
    TEXT_DELIMITERS,
    decode_person_name,
    decode_text,
    python_codecs,
)
from archive.dicom.header import (
    INFLATE_BLOCK,
    MAX_VALUE_LENGTH,
    HeaderError,
    HeaderReader,
    InstanceAttributes,
    check_store_request,
)

ROOT = Path(__file__).resolve().parents[2]
IMPLICIT, EXPLICIT, BIG, DEFLATED = (
    uids.IMPLICIT_VR_LE,
    uids.EXPLICIT_VR_LE,
    uids.EXPLICIT_VR_BE,
    uids.DEFLATED_EXPLICIT_VR_LE,
)
NATIVE = (IMPLICIT, EXPLICIT, BIG, DEFLATED)
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
CANNOT_UNDERSTAND = 0xC000
DOES_NOT_MATCH = 0xA900
#: finish() on a data set cut short, once the reader was done, and before.
AFTER = "data set truncated after its header"
IN = "data set truncated in its header"

# --- helpers shared with test_header_properties.py -----------------------------------

_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"SV", b"UC", b"UN", b"UR"}
_LONG_VRS |= {b"UT", b"UV"}


def sample_path(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:  # pragma: no cover - pydicom ships these
        path = next(p for p in get_charset_files(name))
    return str(path)


def _guessed_transfer_syntax(path: str) -> str:
    implicit, little = pydicom.dcmread(path, force=True).original_encoding
    return IMPLICIT if implicit else EXPLICIT if little else BIG


def split_file(path: str) -> tuple[str, bytes]:
    """(transfer syntax, data set bytes) of a Part 10 file: the file meta removed.

    Without a file meta, or without a Transfer Syntax UID in it, the transfer syntax
    is the encoding pydicom guessed.
    """
    raw = Path(path).read_bytes()
    if raw[128:132] != b"DICM":
        return _guessed_transfer_syntax(path), raw
    pos, ts = 132, ""
    while pos < len(raw):
        group, elem, vr = struct.unpack_from("<HH2s", raw, pos)
        if group != 2:
            break
        if vr in _LONG_VRS:
            length, size = struct.unpack_from("<L", raw, pos + 8)[0], 12
        else:
            length, size = struct.unpack_from("<H", raw, pos + 6)[0], 8
        if elem == 0x10:
            ts = raw[pos + size : pos + size + length].rstrip(b"\0 ").decode()
        pos += size + length
    return ts or _guessed_transfer_syntax(path), raw[pos:]


def encode(ds: Dataset, ts: str) -> bytes:
    """``ds`` (without file meta) encoded by pydicom in a native transfer syntax."""
    fp = DicomBytesIO()
    fp.is_little_endian = ts != BIG
    fp.is_implicit_VR = ts == IMPLICIT
    write_dataset(fp, ds)
    data = bytes(fp.getvalue())
    return deflate(data) if ts == DEFLATED else data


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # PS3.5 A.5
    return compressor.compress(data) + compressor.flush()


_INTS = {"series_number", "instance_number", "number_of_frames", "rows", "columns"}
_KEYWORDS = {
    name: "".join(part.capitalize() for part in name.split("_"))
    for name in InstanceAttributes.__struct_fields__
}
_KEYWORDS.update(
    sop_class_uid="SOPClassUID",
    sop_instance_uid="SOPInstanceUID",
    study_instance_uid="StudyInstanceUID",
    series_instance_uid="SeriesInstanceUID",
    issuer_of_patient_id="IssuerOfPatientID",
    study_id="StudyID",
    patient_id="PatientID",
)

#: Field of InstanceAttributes -> its tag, from pydicom's data dictionary.
FIELD_TAGS = {name: int(tag_for_keyword(keyword) or 0) for name, keyword in _KEYWORDS.items()}


def expected(ds: Dataset) -> InstanceAttributes:
    """What pydicom reads, in our record."""
    fields: dict[str, Any] = {}
    for name, keyword in _KEYWORDS.items():
        value = ds.get(keyword)
        if name in _INTS:
            # As the reader: None unless one integer (badVR.dcm has IS '1A').
            try:
                fields[name] = None if value is None or value == "" else int(value)
            except ValueError:
                fields[name] = None
        elif value is None:
            fields[name] = ""
        elif isinstance(value, pydicom.multival.MultiValue):
            fields[name] = "\\".join(str(v) for v in value)
        else:
            fields[name] = str(value)
    return InstanceAttributes(**fields)


def read(ts: str, pieces: Iterable[bytes | memoryview]) -> InstanceAttributes:
    """Feed every piece, to the end, then finish; ``done`` never goes back to False."""
    reader = HeaderReader(ts)
    done = False
    for piece in pieces:
        now = reader.feed(piece)
        assert now is reader.done
        assert now or not done
        done = now
    return reader.finish()


def bytewise(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    return (view[i : i + 1] for i in range(len(data)))


def element(
    tag: int, vr: str, value: bytes, ts: str = EXPLICIT, length: int | None = None
) -> bytes:
    """One data element, PS3.5 7.1; ``length`` overrides the value length field."""
    group, elem = tag >> 16, tag & 0xFFFF
    size = len(value) if length is None else length
    order = ">" if ts == BIG else "<"
    if ts == IMPLICIT or group == 0xFFFE:
        return struct.pack(order + "HHL", group, elem, size) + value
    if vr.encode() in _LONG_VRS:
        return struct.pack(order + "HH2s2xL", group, elem, vr.encode(), size) + value
    return struct.pack(order + "HH2sH", group, elem, vr.encode(), size & 0xFFFF) + value


def item(value: bytes, ts: str = EXPLICIT, undefined: bool = False) -> bytes:
    if undefined:
        return element(0xFFFEE000, "", value, ts, 0xFFFFFFFF) + element(0xFFFEE00D, "", b"", ts)
    return element(0xFFFEE000, "", value, ts)


def undefined_sequence(tag: int, items: bytes, ts: str = EXPLICIT, vr: str = "SQ") -> bytes:
    return element(tag, vr, items, ts, 0xFFFFFFFF) + element(0xFFFEE0DD, "", b"", ts)


def encapsulated(*fragments: bytes, ts: str = EXPLICIT) -> bytes:
    """Encapsulated Pixel Data, PS3.5 A.4: an empty Basic Offset Table, the fragments."""
    items = item(b"", ts) + b"".join(item(fragment, ts) for fragment in fragments)
    return undefined_sequence(0x7FE00010, items, ts, "OB")


def trailing_padding(size: int, ts: str = EXPLICIT) -> bytes:
    """Data Set Trailing Padding (FFFC,FFFC), PS3.10 7.2."""
    return element(0xFFFCFFFC, "OB", bytes(size), ts)


UIDS = {
    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",
    "sop_instance_uid": "1.2.3.4.5",
    "study_instance_uid": "1.2.3.4",
    "series_instance_uid": "1.2.3.4.1",
}


def minimal(ts: str, *middle: bytes, tail: bytes = b"", pixels: bytes | None = None) -> bytes:
    """SOP Class/Instance UIDs, ``middle``, the Study/Series UIDs, ``tail``, ``pixels``
    (by default a Pixel Data of 4 bytes)."""
    if pixels is None:
        pixels = element(0x7FE00010, "OW", b"\0\0\0\0", ts)
    return (
        element(0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.7\0", ts)
        + element(0x00080018, "UI", b"1.2.3.4.5\0", ts)
        + b"".join(middle)
        + element(0x0020000D, "UI", b"1.2.3.4\0", ts)
        + element(0x0020000E, "UI", b"1.2.3.4.1\0", ts)
        + tail
        + pixels
    )


# --- pydicom's files, as sent ------------------------------------------------------------

TEST_FILES = Path(sample_path("CT_small.dcm")).parent
CHARSET_FILES = sorted(Path(p).name for p in get_charset_files("*.dcm"))


def _pydicom_files() -> list[str]:
    """Every DICOM file pydicom ships: test files (relative names), character set files."""
    names = [
        path.relative_to(TEST_FILES).as_posix()
        for path in sorted(TEST_FILES.rglob("*"))
        if path.is_file() and (path.suffix == ".dcm" or path.read_bytes()[128:132] == b"DICM")
    ]
    return names + CHARSET_FILES


def _path(name: str) -> str:
    return str(TEST_FILES / name) if (TEST_FILES / name).is_file() else sample_path(name)


def pydicom_attributes(path: str) -> InstanceAttributes:
    with warnings.catch_warnings():  # badVR.dcm: pydicom warns of its IS '1A'
        warnings.simplefilter("ignore", UserWarning)
        return expected(pydicom.dcmread(path, force=True))


PYDICOM_FILES = _pydicom_files()
#: pydicom's files that hold no whole data set, and why (pydicom reads them anyway).
NOT_DATA_SETS = {
    "MR_truncated.dcm": AFTER,  # cut inside Pixel Data
    "rtplan_truncated.dcm": AFTER,  # cut inside the Beam Sequence (300A,00B0)
    # CT_small's data set behind one stray byte: read as Implicit VR LE (pydicom's
    # guess) its first tag is (0820,0500), past the header, of length 0x0A534300.
    "no_meta.dcm": AFTER,
    # The file meta says JPEG Baseline (Explicit VR LE); the data set is Implicit VR.
    "SC_rgb_jpeg.dcm": IN,
}
#: Byte-by-byte feeding only up to this size, to keep the suite fast.
BYTEWISE_LIMIT = 64 * 1024
_TINY = "dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/"


def sevens(data: bytes) -> Iterator[bytes]:
    return (data[i : i + 7] for i in range(0, len(data), 7))


def test_pydicom_files_are_all_found() -> None:
    names = {Path(name).name for name in PYDICOM_FILES}
    assert len(PYDICOM_FILES) > 150
    assert {*NOT_DATA_SETS, "CT_small.dcm", "image_dfl.dcm", "DICOMDIR", "chrH31.dcm"} <= names


@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_pydicom_file_as_sent_whole_and_byte_by_byte(name: str) -> None:
    path = _path(name)
    ts, data = split_file(path)
    feeds: list[Iterable[bytes | memoryview]] = [[data], sevens(data)]
    if len(data) <= BYTEWISE_LIMIT:
        feeds.append(bytewise(data))
    message = NOT_DATA_SETS.get(name)
    if message is None:
        want = pydicom_attributes(path)
        for pieces in feeds:
            assert read(ts, pieces) == want
        return
    for pieces in feeds:
        with pytest.raises(HeaderError) as info:
            read(ts, pieces)
        assert (info.value.status, str(info.value)) == (CANNOT_UNDERSTAND, message)


#: All but SC_rgb_jpeg.dcm, which pydicom cannot write (it read its VRs with the wrong
#: transfer syntax), and all but the first of TINY_ALPHA's 62 images of one layout.
REENCODED = [
    name
    for name in PYDICOM_FILES
    if name != "SC_rgb_jpeg.dcm" and not (name.startswith(_TINY) and name != _TINY + "IM000000")
]


@pytest.mark.parametrize("name", REENCODED)
def test_pydicom_file_reencoded_in_every_transfer_syntax(name: str) -> None:
    # pydicom writes whole data sets, so its truncated files read here too.
    path = _path(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds = pydicom.dcmread(path, force=True)
        want = expected(ds)
        # Encapsulated Pixel Data is little endian only, PS3.5 A.4.
        compressed = UID(split_file(path)[0]).is_encapsulated
        encoded = {ts: encode(ds, ts) for ts in NATIVE if not (ts == BIG and compressed)}
    for ts, data in encoded.items():
        assert read(ts, [data]) == want, ts
        if len(data) <= BYTEWISE_LIMIT // 16:
            assert read(ts, bytewise(data)) == want, ts


def test_ct_small_exact_values() -> None:
    ts, data = split_file(sample_path("CT_small.dcm"))
    got = read(ts, [data])
    assert got.specific_character_set == "ISO_IR 100"
    assert got.patient_name == "CompressedSamples^CT1"
    assert got.patient_id == "1CT1"
    assert got.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert got.sop_instance_uid == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    assert (got.rows, got.columns, got.series_number, got.instance_number) == (128, 128, 1, 1)
    assert (got.study_date, got.study_time, got.modality) == ("20040119", "072730", "CT")
    assert got.number_of_frames is None


@pytest.mark.parametrize(
    ("name", "charset", "patient_name"),
    [
        ("chrH31.dcm", "\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        ("chrH32.dcm", "ISO 2022 IR 13\\ISO 2022 IR 87", "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"),
        ("chrI2.dcm", "\\ISO 2022 IR 149", "Hong^Gildong=洪^吉洞=홍^길동"),
        ("chrX1.dcm", "ISO_IR 192", "Wang^XiaoDong=王^小東"),
        ("chrX2.dcm", "GB18030", "Wang^XiaoDong=王^小东"),
        ("chrFren.dcm", "ISO_IR 100", "Buc^Jérôme"),
        ("chrGreek.dcm", "ISO_IR 126", "Διονυσιος"),
        # (sic: the file mixes Latin and Cyrillic letters)
        ("chrRuss.dcm", "ISO_IR 144", "Люкceмбypг"),  # noqa: RUF001
        ("chrArab.dcm", "ISO_IR 127", "قباني^لنزار"),
        ("chrHbrw.dcm", "ISO_IR 138", "שרון^דבורה"),
    ],
)
def test_character_sets_exact(name: str, charset: str, patient_name: str) -> None:
    ts, data = split_file(sample_path(name))
    got = read(ts, [data])
    assert got.specific_character_set == charset
    assert got.patient_name == patient_name


# --- memory bounds -----------------------------------------------------------------------

HUGE = 50 * 1024 * 1024
PIECE = 64 * 1024


def _with_huge_value(ts: str, where: str) -> tuple[bytes, bytes]:
    """(before, after) a 50 MB value: of a private OB (0009,1010) in the header part
    (``where="private"``), or of Pixel Data, walked after the reader is done."""
    us = struct.pack(">H" if ts == BIG else "<H", 512)
    uids = element(0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.7\0", ts) + element(
        0x00080018, "UI", b"1.2.3.4.5\0", ts
    )
    header = (
        element(0x00100010, "PN", b"Doe^Jane", ts)
        + element(0x0020000D, "UI", b"1.2.3.4\0", ts)
        + element(0x0020000E, "UI", b"1.2.3.4.1\0", ts)
        + element(0x00280010, "US", us, ts)
    )
    if where == "private":
        creator = element(0x00090010, "LO", b"ARCHIVE TEST", ts)
        before = uids + creator + element(0x00091010, "OB", b"", ts, HUGE)
        return before, header + element(0x7FE00010, "OW", b"\0" * 16, ts)
    return uids + header + element(0x7FE00010, "OW", b"", ts, HUGE), trailing_padding(6, ts)


def _huge_stream(ts: str, where: str, short: int = 0) -> Iterator[bytes | memoryview]:
    """The data set in 64 KiB pieces, less its last ``short`` bytes."""
    before, after = _with_huge_value(ts, where)
    zeros = memoryview(bytes(PIECE))
    yield before + bytes(1000)  # headers and the first bytes of the value together
    left = HUGE - 1000
    while left > PIECE:
        yield zeros
        left -= PIECE
    yield (bytes(left) + after)[: len(after) + left - short]


def _check_huge(got: InstanceAttributes) -> None:
    assert (got.patient_name, got.rows) == ("Doe^Jane", 512)
    assert (got.sop_instance_uid, got.series_instance_uid) == ("1.2.3.4.5", "1.2.3.4.1")


@pytest.mark.parametrize("where", ["private", "pixels"])
@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG])
def test_huge_value_is_walked_to_the_end_in_bounded_memory(ts: str, where: str) -> None:
    reader = HeaderReader(ts)
    most = 0
    dones = []
    tracemalloc.start()
    try:
        for piece in _huge_stream(ts, where):
            dones.append(reader.feed(piece))
            most = max(most, reader.buffered)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Done at the first piece when it holds the Pixel Data header, else at the last.
    assert dones == [where == "pixels"] * (len(dones) - 1) + [True]
    assert most < 200  # the UIDs and the name, never the 50 MB value
    assert peak < 1024 * 1024
    _check_huge(reader.finish())


@pytest.mark.parametrize("where", ["private", "pixels"])
@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG])
def test_huge_value_one_byte_short(ts: str, where: str) -> None:
    reader = HeaderReader(ts)
    for piece in _huge_stream(ts, where, short=1):
        reader.feed(piece)
    assert reader.done
    with pytest.raises(HeaderError) as info:
        reader.finish()
    assert (info.value.status, str(info.value)) == (CANNOT_UNDERSTAND, AFTER)


def _deflate_bomb(where: str) -> bytes:
    before, after = _with_huge_value(EXPLICIT, where)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    compressed = compressor.compress(before)
    zeros = bytes(PIECE)
    for _ in range(HUGE // PIECE):
        compressed += compressor.compress(zeros)
    compressed += compressor.compress(after) + compressor.flush()
    assert len(compressed) < HUGE // 500  # a deflate bomb: 50 MB from ~50 KB
    return compressed


@pytest.mark.parametrize("where", ["private", "pixels"])
def test_deflated_huge_value_is_inflated_to_the_end_in_bounded_memory(where: str) -> None:
    # With "pixels" the reader is done after the first block, and must still inflate
    # the 50 MB of Pixel Data, block by block, to find the end of the data set.
    compressed = _deflate_bomb(where)
    reader = HeaderReader(DEFLATED)
    most = 0
    tracemalloc.start()
    try:
        view = memoryview(compressed)
        for start in range(0, len(compressed), PIECE):
            reader.feed(view[start : start + PIECE])
            most = max(most, reader.buffered)
        got = reader.finish()  # inflates the last, partial, block
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reader.done
    assert most < INFLATE_BLOCK + 200
    assert peak < 2 * PIECE + 512 * 1024
    _check_huge(got)
    # The same stream less its last byte never reaches the end of the deflate stream.
    reader = HeaderReader(DEFLATED)
    for start in range(0, len(compressed) - 1, PIECE):
        reader.feed(view[start : min(start + PIECE, len(compressed) - 1)])
    with pytest.raises(HeaderError) as info:
        reader.finish()
    assert str(info.value) == AFTER


# --- sequences ----------------------------------------------------------------------------


def _undefined(ds: Dataset, keyword: str, items: list[Dataset]) -> None:
    """Set a sequence that pydicom writes with undefined lengths, PS3.5 7.5.2."""
    for each in items:
        each.is_undefined_length_sequence_item = True
    setattr(ds, keyword, Sequence(items))
    ds[keyword].is_undefined_length = True


def _nested(depth: int) -> Dataset:
    """An item holding sequences nested ``depth`` - 1 deep below it."""
    inner = Dataset()
    inner.CodeValue = "X"
    for level in range(depth - 1):
        outer = Dataset()
        outer.ReferencedSOPClassUID = "1.2.3"
        # A wanted tag inside a sequence must not be taken for the top-level one.
        outer.PatientName = f"Nested^{level}"
        _undefined(outer, "ContentSequence", [inner])
        inner = outer
    return inner


@pytest.mark.parametrize("ts", NATIVE)
def test_undefined_length_sequences_nested_three_deep(ts: str) -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4.5"
    _undefined(ds, "ReferencedImageSequence", [_nested(3), _nested(3)])  # (0008,1140)
    ds.PatientName = "Müller^Jürgen"
    ds.PatientID = "ID1"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.1"
    ds.Rows = 7
    data = encode(ds, ts)
    if ts != DEFLATED:  # pydicom writes undefined lengths: check it did
        assert data.count(b"\xff\xff\xff\xff") == 11  # 5 sequences, 6 items
    got = read(ts, bytewise(data))
    assert got == expected(ds)
    assert got.patient_name == "Müller^Jürgen"


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG])
def test_hand_built_sequences_defined_and_undefined(ts: str) -> None:
    nested = undefined_sequence(
        0x00081115,
        item(undefined_sequence(0x0008114A, item(b"", ts, undefined=True), ts), ts, True),
        ts,
    )
    defined = element(0x00081140, "SQ", item(element(0x00100010, "PN", b"NO", ts), ts), ts)
    data = minimal(ts, defined, nested, element(0x00100010, "PN", b"Yes", ts))
    got = read(ts, bytewise(data))
    assert got.patient_name == "Yes"
    assert got.study_instance_uid == "1.2.3.4"


@pytest.mark.parametrize("ts", [EXPLICIT, BIG])
def test_un_of_undefined_length_is_implicit_little_endian_inside(ts: str) -> None:
    # PS3.5 6.2.2: a UN of undefined length holds an Implicit VR LE sequence, even
    # in Explicit VR Big Endian. The item holds a nested undefined-length sequence.
    inner = undefined_sequence(0x00081150, item(b"", IMPLICIT, undefined=True), IMPLICIT)
    un = undefined_sequence(0x00091010, item(inner, IMPLICIT, undefined=True), IMPLICIT)
    # The UN header itself is in the transfer syntax; its content is implicit LE.
    header = element(0x00091010, "UN", b"", ts, 0xFFFFFFFF)
    data = minimal(ts, header + un[8:], element(0x00100020, "LO", b"PID7", ts))
    assert read(ts, bytewise(data)).patient_id == "PID7"


# --- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"12", 12),
        (b" 12 ", 12),
        (b"\t7\r\n", 7),
        (b"+5", 5),
        (b"-2147483648 ", -(2**31)),
        (b"2147483648", None),  # outside IS, PS3.5 Table 6.2-1
        (b"1A", None),
        (b"1\\2", None),
        (b"", None),
        (b"  ", None),
        (b"1_0", None),
        (b"\xd9\xa3", None),  # an Arabic-Indic digit is not an IS digit
    ],
)
def test_integer_string(raw: bytes, value: int | None) -> None:
    data = minimal(EXPLICIT, element(0x00200013, "IS", raw))
    assert read(EXPLICIT, [data]).instance_number == value


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG, DEFLATED])
def test_padding_and_us_per_transfer_syntax(ts: str) -> None:
    wire = EXPLICIT if ts == DEFLATED else ts
    us = ">H" if ts == BIG else "<H"
    data = minimal(
        wire,
        element(0x00080005, "CS", b"ISO_IR 100 ", wire),
        element(0x00080020, "DA", b"20240131", wire),
        element(0x00080030, "TM", b"101010.5 ", wire),
        element(0x00080060, "CS", b" MR ", wire),
        element(0x00081030, "LO", b" Knee \xe9 ", wire),
        element(0x00100010, "PN", b"Doe^J\xf6rg=", wire),
        tail=element(0x00280010, "US", struct.pack(us, 0x1234), wire)
        + element(0x00280011, "US", struct.pack(us, 0xFF01), wire),
    )
    got = read(ts, [deflate(data) if ts == DEFLATED else data])
    assert got.sop_class_uid == "1.2.840.10008.5.1.4.1.1.7"  # trailing NUL gone
    assert got.specific_character_set == "ISO_IR 100"
    assert (got.study_date, got.study_time, got.modality) == ("20240131", "101010.5", "MR")
    assert got.study_description == "Knee é"
    assert got.patient_name == "Doe^Jörg"  # trailing empty group dropped
    assert (got.rows, got.columns) == (0x1234, 0xFF01)


def test_empty_and_short_us_values_are_none() -> None:
    data = minimal(
        EXPLICIT, tail=element(0x00280010, "US", b"") + element(0x00280011, "US", b"\x01")
    )
    got = read(EXPLICIT, [data])
    assert (got.rows, got.columns) == (None, None)


def test_unknown_character_set_falls_back_to_latin_1() -> None:
    data = minimal(
        EXPLICIT,
        element(0x00080005, "CS", b"ISO_IR 999"),
        element(0x00100010, "PN", b"Ren\xe9e"),
    )
    got = read(EXPLICIT, [data])
    assert (got.specific_character_set, got.patient_name) == ("ISO_IR 999", "Renée")


def test_multivalued_character_set_keeps_empty_value_one() -> None:
    data = minimal(EXPLICIT, element(0x00080005, "CS", b"\\ISO 2022 IR 87 "))
    assert read(EXPLICIT, [data]).specific_character_set == "\\ISO 2022 IR 87"


def test_wanted_tag_with_sq_vr_is_skipped() -> None:
    sq = element(0x00100010, "SQ", item(element(0x00100020, "LO", b"X")))
    data = minimal(EXPLICIT, sq)
    assert read(EXPLICIT, [data]).patient_name == ""


def test_file_meta_in_front_of_the_data_set_is_skipped() -> None:
    meta = element(0x00020000, "UL", struct.pack("<L", 28), EXPLICIT) + element(
        0x00020010, "UI", b"1.2.840.10008.1.2\0", EXPLICIT
    )
    # File Meta is Explicit VR LE (PS3.10 7.1), even before an Implicit VR data set.
    for ts in (IMPLICIT, EXPLICIT):
        got = read(ts, [meta + minimal(ts, element(0x00100020, "LO", b"P1", ts))])
        assert (got.patient_id, got.sop_instance_uid) == ("P1", "1.2.3.4.5")


# --- done, end, truncation, errors --------------------------------------------------


def failure(ts: str, pieces: Iterable[bytes | memoryview]) -> tuple[int, str]:
    """(status, message) of the HeaderError that reading must raise."""
    with pytest.raises(HeaderError) as info:
        read(ts, pieces)
    return info.value.status, str(info.value)


def test_done_at_pixel_data_then_walked_to_its_end() -> None:
    data = minimal(EXPLICIT)
    pixel_at = data.index(b"\xe0\x7f\x10\x00")
    reader = HeaderReader(EXPLICIT)
    assert reader.feed(data[:pixel_at]) is False
    assert not reader.done
    # Tag and VR decide; the 4-byte length is still to come.
    assert reader.feed(data[pixel_at : pixel_at + 8]) is True
    assert reader.feed(data[pixel_at + 8 : -1]) is True
    assert reader.buffered == 26 + 10 + 8 + 10  # the four UIDs, nothing of Pixel Data
    with pytest.raises(HeaderError) as info:
        reader.finish()  # the last byte of Pixel Data is missing
    assert (info.value.status, str(info.value)) == (CANNOT_UNDERSTAND, AFTER)
    with pytest.raises(HeaderError) as again:  # and it stays so
        reader.feed(data[-1:])
    assert again.value is info.value
    reader = HeaderReader(EXPLICIT)
    assert reader.feed(data[:pixel_at]) is False
    assert reader.feed(data[pixel_at:]) is True
    assert reader.finish().sop_instance_uid == "1.2.3.4.5"


def _as_sent(ts: str, data: bytes) -> bytes:
    return deflate(data) if ts == DEFLATED else data


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (4, IN),  # inside the tag: nothing past the header was seen yet
        (8, AFTER),  # tag (and VR) seen: done, whatever the length
        (12, AFTER),
        (13, AFTER),
        (700, AFTER),
        (-1, AFTER),  # one byte short
    ],
)
@pytest.mark.parametrize("ts", NATIVE)
def test_cut_inside_pixel_data_of_defined_length(ts: str, where: int, message: str) -> None:
    wire = EXPLICIT if ts == DEFLATED else ts
    rows = element(0x00280010, "US", b"\x00\x02" if ts == BIG else b"\x02\x00", wire)
    pixels = element(0x7FE00010, "OW", bytes(1000), wire)
    whole = minimal(wire, tail=rows, pixels=pixels)
    end = len(whole) - len(pixels) + where if where > 0 else len(whole) + where
    data = _as_sent(ts, whole[:end])  # for Deflated: a whole stream of a cut data set
    assert failure(ts, [data]) == (CANNOT_UNDERSTAND, message)
    assert failure(ts, bytewise(data)) == (CANNOT_UNDERSTAND, message)
    assert read(ts, [_as_sent(ts, whole)]).rows == 2


def _with_encapsulated(ts: str) -> tuple[bytes, int]:
    """A data set ending in encapsulated Pixel Data, and where that starts."""
    pixels = encapsulated(b"\xff\xd8" + bytes(98), b"\x01" * 60 + b"\xff\xd9", ts=ts)
    data = minimal(ts, element(0x00100020, "LO", b"E2", ts), pixels=pixels)
    return data, len(data) - len(pixels)


# Offsets into the encapsulated Pixel Data in Explicit VR: header 12, offset table item
# 8, first item 8 + 100, second item 8 + 62, sequence delimiter 8; 206 bytes in all.
# In Implicit VR the header is 4 bytes shorter, so the same offsets fall 4 bytes later
# in the items (10 then falls in the offset table item).
ENCAPSULATED_CUTS = {
    "in-the-pixel-data-header": 10,
    "before-the-offset-table": 12,
    "in-the-offset-table-item": 16,
    "before-a-fragment": 20,
    "in-a-fragment": 70,
    "between-fragments": 128,
    "in-the-last-fragment": 150,
    "before-the-delimiter": -8,  # from the end
    "in-the-delimiter": -3,
}


@pytest.mark.parametrize("where", ENCAPSULATED_CUTS.values(), ids=ENCAPSULATED_CUTS.keys())
@pytest.mark.parametrize("ts", [EXPLICIT, JPEG_BASELINE, DEFLATED, IMPLICIT])
def test_cut_inside_encapsulated_pixel_data(ts: str, where: int) -> None:
    wire = IMPLICIT if ts == IMPLICIT else EXPLICIT
    whole, pixel_at = _with_encapsulated(wire)
    assert len(whole) - pixel_at == (202 if ts == IMPLICIT else 206)
    data = _as_sent(ts, whole[: pixel_at + where if where > 0 else where])
    assert failure(ts, [data]) == (CANNOT_UNDERSTAND, AFTER)
    assert failure(ts, bytewise(data)) == (CANNOT_UNDERSTAND, AFTER)


@pytest.mark.parametrize("ts", [EXPLICIT, JPEG_BASELINE, DEFLATED, IMPLICIT])
def test_whole_encapsulated_pixel_data_with_its_delimiter(ts: str) -> None:
    wire = IMPLICIT if ts == IMPLICIT else EXPLICIT
    whole, _ = _with_encapsulated(wire)
    data = _as_sent(ts, whole)
    got = read(ts, [data])
    assert (got.patient_id, got.series_instance_uid) == ("E2", "1.2.3.4.1")
    assert read(ts, bytewise(data)) == got
    padded = _as_sent(ts, whole + trailing_padding(10, wire))
    assert read(ts, [padded]) == got


def _past_the_header(seed: int, ts: str) -> bytes:
    """Random bytes whose first tag is past (0028,0011), the last one wanted."""
    rng = random.Random(seed)
    tag = rng.randrange(0x00280012, 0x100000000)
    order = ">" if ts == BIG else "<"
    return struct.pack(order + "HH", tag >> 16, tag & 0xFFFF) + rng.randbytes(2000)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ts", [*NATIVE, JPEG_BASELINE])
def test_random_bytes_past_the_header_are_no_data_set(ts: str, seed: int) -> None:
    # The reader is done at the first tag: had it stopped there, these bytes would
    # pass for an empty data set. Walking on, it meets a length past the end.
    blob = _past_the_header(seed, BIG if ts == BIG else EXPLICIT)
    data = _as_sent(ts, blob)
    reader = HeaderReader(ts)
    assert reader.feed(data) is (ts != DEFLATED)  # Deflated: still in the held block
    with pytest.raises(HeaderError) as info:
        reader.finish()
    assert (info.value.status, str(info.value)) == (CANNOT_UNDERSTAND, AFTER)
    assert reader.done


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG])
def test_text_is_no_data_set(ts: str) -> None:
    text = b"This is not a DICOM data set, only a note about one.\n" * 20
    assert failure(ts, [text]) == (CANNOT_UNDERSTAND, AFTER)  # (6854,7369) of "This"


GARBAGE = {
    "ff": b"\xff" * 100,  # (FFFF,FFFF) of undefined length, never closed
    "word": b"garbage!",  # 8 bytes: a tag and a VR, short of a long header
    "zeros": bytes(7),  # short of any header
    "text": b"trailing text after the data set\n",
    "random": random.Random(1).randbytes(1000),
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
@pytest.mark.parametrize("ts", NATIVE)
def test_garbage_after_a_whole_data_set(ts: str, garbage: bytes) -> None:
    wire = EXPLICIT if ts == DEFLATED else ts
    whole = minimal(wire, element(0x00100020, "LO", b"G1", wire))
    assert read(ts, [_as_sent(ts, whole)]).patient_id == "G1"
    data = _as_sent(ts, whole + garbage)  # Deflated: garbage inside the stream
    assert failure(ts, [data]) == (CANNOT_UNDERSTAND, AFTER)
    assert failure(ts, sevens(data)) == (CANNOT_UNDERSTAND, AFTER)


def test_bytes_after_the_end_of_the_deflate_stream_are_ignored() -> None:
    # image_dfl.dcm ends in 8 bytes past its deflate stream: a gzip trailer (CRC-32
    # and ISIZE, RFC 1952), which a reader must tolerate. So for Deflated, garbage is
    # caught only inside the stream (test above), not after it.
    ts, data = split_file(sample_path("image_dfl.dcm"))
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = inflater.decompress(data)
    assert inflater.unused_data == struct.pack("<LL", zlib.crc32(inflated), len(inflated))
    assert ts == DEFLATED
    assert read(ts, [data]) == read(ts, [data[:-8]]) == read(ts, [data + b"\xff" * 99])


@pytest.mark.parametrize("size", [0, 2, 6, 1000])
@pytest.mark.parametrize("ts", NATIVE)
def test_trailing_padding_after_pixel_data(ts: str, size: int) -> None:
    wire = EXPLICIT if ts == DEFLATED else ts
    whole = minimal(wire, element(0x00100020, "LO", b"P2", wire))
    got = read(ts, [_as_sent(ts, whole)])
    padded = _as_sent(ts, whole + trailing_padding(size, wire))
    assert read(ts, [padded]) == got
    assert read(ts, bytewise(padded)) == got
    if size:
        cut = _as_sent(ts, (whole + trailing_padding(size, wire))[:-1])
        assert failure(ts, [cut]) == (CANNOT_UNDERSTAND, AFTER)


def test_done_at_first_tag_past_the_last_wanted() -> None:
    data = minimal(EXPLICIT, tail=element(0x00280011, "US", b"\x02\x00"))
    cut = data.index(b"\xe0\x7f\x10\x00")
    bits = element(0x00280100, "US", b"\x08\x00")
    reader = HeaderReader(EXPLICIT)
    assert reader.feed(data[:cut]) is False
    assert reader.feed(bits[:4]) is False  # the tag alone does not decide
    assert reader.feed(bits[4:]) is True
    assert reader.finish().columns == 2


def test_data_set_ending_before_pixel_data_is_complete() -> None:
    data = minimal(EXPLICIT)
    data = data[: data.index(b"\xe0\x7f\x10\x00")]
    reader = HeaderReader(EXPLICIT)
    assert reader.feed(data) is False
    assert reader.finish().series_instance_uid == "1.2.3.4.1"


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda d: 5, id="in-a-header"),
        pytest.param(lambda d: d.index(b"1.2.3.4.5") + 3, id="in-a-wanted-value"),
        pytest.param(lambda d: d.index(b"ARCHIVE") + 1, id="in-a-skipped-value"),
        pytest.param(lambda d: d.index(b"\xfe\xff\x00\xe0") + 8, id="in-a-sequence"),
        pytest.param(lambda d: d.index(b"\x08\x00\x90\x00") + 10, id="in-a-long-header"),
    ],
)
def test_truncated_header_part(cut: Any) -> None:
    data = minimal(
        EXPLICIT,
        element(0x00080090, "UN", b"AB"),
        element(0x00090010, "LO", b"ARCHIVE TEST"),
        undefined_sequence(0x00091010, item(b"", undefined=True)),
    )
    reader = HeaderReader(EXPLICIT)
    assert reader.feed(data[: cut(data)]) is False
    with pytest.raises(HeaderError) as info:
        reader.finish()
    assert info.value.status == CANNOT_UNDERSTAND
    assert str(info.value) == IN
    with pytest.raises(HeaderError):  # and it stays so
        reader.feed(b"")


def test_truncated_deflated_stream() -> None:
    # Every prefix of the stream fails; "after its header" once what it inflates to
    # holds the tag and VR of Pixel Data.
    plain = minimal(EXPLICIT, element(0x00100010, "PN", b"A" * 400))
    pixel_at = plain.index(b"\xe0\x7f\x10\x00")
    data = deflate(plain)
    messages = set()
    for end in range(len(data)):
        inflated = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[:end])
        reader = HeaderReader(DEFLATED)
        reader.feed(data[:end])
        with pytest.raises(HeaderError) as info:
            reader.finish()
        message = AFTER if len(inflated) >= pixel_at + 8 else IN
        assert (info.value.status, str(info.value)) == (CANNOT_UNDERSTAND, message)
        messages.add(message)
    assert messages == {IN, AFTER}
    assert read(DEFLATED, [data]).patient_name == "A" * 400
    # All of the data set inflated (a sync flush), but not the end of the stream.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    unfinished = compressor.compress(plain) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(unfinished) == plain
    assert failure(DEFLATED, [unfinished]) == (CANNOT_UNDERSTAND, AFTER)
    assert read(DEFLATED, [unfinished + compressor.flush()]).patient_name == "A" * 400


def test_corrupt_deflate_stream() -> None:
    reader = HeaderReader(DEFLATED)
    with pytest.raises(HeaderError) as info:
        reader.feed(b"\xff" * INFLATE_BLOCK)
    assert info.value.status == CANNOT_UNDERSTAND
    assert str(info.value).startswith("deflated data set is corrupt")
    # Less than a block is held until there is a block, or the end.
    reader = HeaderReader(DEFLATED)
    assert reader.feed(b"\xff\xff\xff\xff") is False
    assert reader.buffered == 4
    with pytest.raises(HeaderError) as info:
        reader.finish()
    assert str(info.value).startswith("deflated data set is corrupt")


def test_deflated_input_is_inflated_in_blocks_at_fixed_offsets() -> None:
    noise = random.Random(0).randbytes(3 * INFLATE_BLOCK)  # does not compress
    data = deflate(minimal(EXPLICIT, element(0x00091010, "OB", noise)))
    assert len(data) > 2 * INFLATE_BLOCK
    reader = HeaderReader(DEFLATED)
    reader.feed(data[:100])
    assert reader.buffered == 100
    reader.feed(data[100 : INFLATE_BLOCK + 5])
    assert reader.buffered == 5 + 26 + 10  # the tail, and two UIDs inflated and kept


def test_wanted_value_too_long() -> None:
    data = element(0x00100010, "PN", b"A" * (MAX_VALUE_LENGTH + 2), IMPLICIT)
    reader = HeaderReader(IMPLICIT)
    with pytest.raises(HeaderError) as info:
        reader.feed(data[:100])
    assert info.value.status == CANNOT_UNDERSTAND
    assert str(info.value) == "value of (0010,0010) is 65538 bytes long"
    with pytest.raises(HeaderError) as again:
        reader.feed(data[100:])
    assert again.value is info.value


def test_wanted_values_too_long_in_total() -> None:
    big = b"A" * MAX_VALUE_LENGTH
    tags = [0x00080050, 0x00081030, 0x0008103E, 0x00100010, 0x00100020]
    data = b"".join(element(tag, "", big, IMPLICIT) for tag in tags)
    with pytest.raises(HeaderError) as info:
        read(IMPLICIT, [data])
    assert info.value.status == CANNOT_UNDERSTAND
    assert str(info.value) == "header values too long in total"


def test_item_tag_of_undefined_length_that_is_no_item() -> None:
    data = minimal(
        EXPLICIT,
        undefined_sequence(0x00091010, element(0xFFFEE0AA, "", b"", length=-1 & 0xFFFFFFFF)),
    )
    with pytest.raises(HeaderError) as info:
        read(EXPLICIT, [data])
    assert str(info.value) == "(FFFE,E0AA) of undefined length"


@pytest.mark.parametrize("ts", ["1.2.3.4", "", "1.2.840.10008.1.2x"])
def test_private_transfer_syntax_is_refused(ts: str) -> None:
    with pytest.raises(HeaderError) as info:
        HeaderReader(ts)
    assert info.value.status == CANNOT_UNDERSTAND


@pytest.mark.parametrize(
    "ts", [*sorted(uids.ENCAPSULATED_TRANSFER_SYNTAXES), "1.2.840.10008.1.2.4.94"]
)
def test_every_encapsulated_transfer_syntax_is_explicit_little_endian(ts: str) -> None:
    got = read(ts, [minimal(EXPLICIT, element(0x00100020, "LO", b"E1"))])
    assert got.patient_id == "E1"


def test_jpip_referenced_deflate_is_deflated() -> None:
    data = deflate(minimal(EXPLICIT, element(0x00100020, "LO", b"J1")))
    assert read("1.2.840.10008.1.2.4.95", [data]).patient_id == "J1"


# --- check_store_request -------------------------------------------------------------


def _attrs(**changes: str) -> InstanceAttributes:
    return msgspec.structs.replace(InstanceAttributes(), **{**UIDS, **changes})


def test_check_store_request_accepts_a_match() -> None:
    check_store_request(_attrs(), UIDS["sop_class_uid"], UIDS["sop_instance_uid"])
    # UIDs as they come from a command set may keep their NUL padding.
    check_store_request(_attrs(), UIDS["sop_class_uid"], UIDS["sop_instance_uid"] + "\0")


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        (
            _attrs(sop_class_uid="1.2.840.10008.5.1.4.1.1.2"),
            "SOP Class UID '1.2.840.10008.5.1.4.1.1.2' in the data set, "
            "'1.2.840.10008.5.1.4.1.1.7' in the command",
        ),
        (
            _attrs(sop_class_uid=""),
            "SOP Class UID '' in the data set, '1.2.840.10008.5.1.4.1.1.7' in the command",
        ),
        (_attrs(sop_instance_uid=""), "SOP Instance UID (0008,0018) missing from the data set"),
        (
            _attrs(sop_instance_uid="1.2.3.4.6"),
            "SOP Instance UID '1.2.3.4.6' in the data set, '1.2.3.4.5' in the command",
        ),
        (_attrs(study_instance_uid=""), "Study Instance UID (0020,000D) missing from the data set"),
        (
            _attrs(series_instance_uid=""),
            "Series Instance UID (0020,000E) missing from the data set",
        ),
    ],
)
def test_check_store_request_failures(attrs: InstanceAttributes, message: str) -> None:
    with pytest.raises(HeaderError) as info:
        check_store_request(attrs, UIDS["sop_class_uid"], UIDS["sop_instance_uid"])
    assert info.value.status == DOES_NOT_MATCH
    assert str(info.value) == message
    assert info.value.code == "dicom.header"


def test_header_error_is_an_archive_error() -> None:
    from archive.errors import ArchiveError

    error = HeaderError("x")
    assert isinstance(error, ArchiveError)
    assert error.status == CANNOT_UNDERSTAND
    assert HeaderError("y", 0xA700).status == 0xA700


def test_attributes_defaults_and_msgpack_round_trip() -> None:
    empty = InstanceAttributes()
    assert empty.patient_name == ""
    assert empty.rows is None
    ts, data = split_file(sample_path("chrH31.dcm"))
    got = read(ts, [data])
    blob = msgspec.msgpack.encode(got)
    assert msgspec.msgpack.decode(blob, type=InstanceAttributes) == got


# --- charset --------------------------------------------------------------------------


def test_python_codecs() -> None:
    assert python_codecs([]) == ("latin_1",)
    assert python_codecs(["ISO_IR 192", "ISO 2022 IR 87"]) == ("utf_8",)
    assert python_codecs(["", "ISO 2022 IR 87", "GBK"]) == ("latin_1", "iso2022_jp")
    assert python_codecs(["ISO IR 100"]) == ("latin_1",)
    assert python_codecs(["ISO-IR 144"]) == ("iso8859_5",)
    assert python_codecs(["ISO_2022_IR_149"]) == ("euc_kr",)
    assert python_codecs(["ISO IR 999"]) == ("latin_1",)
    assert python_codecs(["nonsense"]) == ("latin_1",)


def test_pn_group_delimiter_inside_a_kanji_is_not_a_delimiter() -> None:
    # 予 is 4D 3D and 五 is 38 5E in JIS X 0208: bytes of '=' and '^' inside
    # characters. Splitting the raw bytes on them (as pydicom does) would garble them.
    value = b"Yo^Go=\x1b$BM=\x1b(B^\x1b$B8^\x1b(B"
    codecs = python_codecs(["", "ISO 2022 IR 87"])
    assert decode_person_name(value, codecs) == "Yo^Go=予^五"


def test_delimiter_resets_g1_to_the_initial_set() -> None:
    codecs = python_codecs(["", "ISO 2022 IR 149"])
    hong = "홍".encode("euc_kr")
    # G1 designated once: after ^ the initial state (ASCII, no G1) is back, so the
    # second run of high bytes is decoded as value 1 (Latin-1 here), PS3.5 6.1.2.5.3.
    value = b"\x1b$)C" + hong + b"^" + hong
    assert decode_text(value, codecs, PN_DELIMITERS) == "홍^" + hong.decode("latin_1")
    assert decode_text(value, codecs, TEXT_DELIMITERS) == "홍^홍"


def test_unknown_escape_sequence_is_kept_as_text() -> None:
    codecs = python_codecs(["", "ISO 2022 IR 100"])
    assert decode_text(b"a\x1b%Zb\x1b-A\xe9", codecs, TEXT_DELIMITERS) == "a\x1b%Zbé"


def test_undecodable_bytes_become_replacement_characters() -> None:
    assert decode_text(b"a\xffb", ("utf_8",), TEXT_DELIMITERS) == "a\ufffdb"
    codecs = python_codecs(["", "ISO 2022 IR 87"])
    assert decode_text(b"\x1b$B\x80\x80\x1b(Bz", codecs, TEXT_DELIMITERS).endswith("z")


def test_header_module_imports_no_io_and_no_pydicom() -> None:
    code = (
        "import sys, archive.dicom.header\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('pydicom', 'pynetdicom', 'socket', 'threading', 'asyncio', 'sqlite3')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
