"""The streaming header extractor on every file pydicom ships, and in bounded memory.

pydicom's test and character set files are fed as a C-STORE carries them (file meta
stripped) whole, in 7-byte pieces and byte by byte, and re-encoded by pydicom in
every native transfer syntax, with pydicom's own reading as the oracle. Values of
50 MB are walked to their end in bounded memory; as a deflate bomb, refused in the
header and not inflated after it.
"""

from __future__ import annotations

import struct
import tracemalloc
import warnings
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files
from pydicom.uid import UID

from archive.dicom.header import (
    INFLATE_ALLOWANCE,
    INFLATE_BLOCK,
    MAX_INFLATE_RATIO,
    HeaderError,
    HeaderReader,
    InstanceAttributes,
)
from tests.dicom.header_helpers import (
    AFTER,
    BIG,
    CANNOT_UNDERSTAND,
    DEFLATED,
    EXPLICIT,
    IMPLICIT,
    NATIVE,
    bytewise,
    element,
    encode,
    expected,
    read,
    sample_path,
    sevens,
    split_file,
    trailing_padding,
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
    # The file meta says JPEG Baseline (Explicit VR LE); the data set is Implicit
    # VR: its first element's length (0x18) stands where the VR should.
    "SC_rgb_jpeg.dcm": "(0008,0008) has no VR (bytes 18 00) in Explicit VR",
}
#: Byte-by-byte feeding only up to this size, to keep the suite fast.
BYTEWISE_LIMIT = 64 * 1024
_TINY = "dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/"


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
        if compressed and "PixelData" in ds:
            # Encapsulated Pixel Data has no place in a native syntax (refused:
            # test_header_end); the header is what is compared here.
            del ds.PixelData
        encoded = {ts: encode(ds, ts) for ts in NATIVE}
    for ts, data in encoded.items():
        assert read(ts, [data]) == want, ts
        if len(data) <= BYTEWISE_LIMIT // 16:
            assert read(ts, bytewise(data)) == want, ts


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


def _feed_bomb(compressed: bytes, end: int) -> tuple[HeaderReader, int, int]:
    """Feed the first ``end`` bytes in 64 KiB pieces; (reader, most buffered, peak
    memory), the reader stopped at its first error."""
    reader = HeaderReader(DEFLATED)
    most = 0
    view = memoryview(compressed)
    tracemalloc.start()
    try:
        for start in range(0, end, PIECE):
            reader.feed(view[start : min(start + PIECE, end)])
            most = max(most, reader.buffered)
    except HeaderError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return reader, most, peak


def test_deflated_huge_pixel_data_is_not_inflated() -> None:
    # The reader is done in the first block; past its header the stream is inflated
    # (not walked) only up to the ratio, which 50 MB of zeros pass at once: the rest
    # is neither inflated nor checked, so the stream less its last byte reads the same.
    compressed = _deflate_bomb("pixels")
    for end in (len(compressed), len(compressed) - 1):
        reader, most, peak = _feed_bomb(compressed, end)
        assert reader.done
        assert reader.inflated == INFLATE_ALLOWANCE + MAX_INFLATE_RATIO * INFLATE_BLOCK + 1
        assert most < INFLATE_BLOCK + 200
        assert peak < 2 * PIECE + 512 * 1024
        _check_huge(reader.finish())


def test_deflated_huge_private_value_is_refused_in_bounded_memory() -> None:
    # 50 MB of zeros in the header part: a deflate bomb, refused once it inflates
    # past the ratio, having inflated no more than that.
    compressed = _deflate_bomb("private")
    reader, most, peak = _feed_bomb(compressed, len(compressed))
    assert not reader.done
    assert reader.inflated <= INFLATE_ALLOWANCE + MAX_INFLATE_RATIO * INFLATE_BLOCK + 1
    assert most < INFLATE_BLOCK + 200
    assert peak < 2 * PIECE + 512 * 1024
    with pytest.raises(HeaderError) as info:
        reader.finish()
    assert (info.value.status, str(info.value)) == (
        CANNOT_UNDERSTAND,
        "deflated data set inflates past 64:1 in its header",
    )
