"""When the streaming header extractor is done, where a data set ends, how it fails.

``done`` turns True at the first tag past the last wanted one (or at Pixel Data), yet
element headers are walked to the end, as the C-STORE handler does, so that a data
set cut short anywhere (Pixel Data included) fails in ``finish()``: cuts at every
level, encapsulated Pixel Data, garbage and padding after the data set, deflate
streams cut or corrupt, values too long, transfer syntaxes refused or mapped. A
Deflated data set is the exception: it is not inflated past its header, so what
follows is not checked (``test_header_deflate``).
"""

from __future__ import annotations

import gc
import random
import struct
import weakref
import zlib
from collections.abc import Iterable
from typing import Any

import pytest

from archive.dicom import uids
from archive.dicom.header import (
    INFLATE_BLOCK,
    MAX_VALUE_LENGTH,
    HeaderError,
    HeaderReader,
)
from tests.dicom.header_helpers import (
    AFTER,
    BIG,
    CANNOT_UNDERSTAND,
    DEFLATED,
    EXPLICIT,
    IMPLICIT,
    IN,
    JPEG_BASELINE,
    NATIVE,
    bytewise,
    deflate,
    element,
    encapsulated,
    item,
    minimal,
    read,
    sample_path,
    sevens,
    split_file,
    trailing_padding,
    undefined_sequence,
    verdict,
)

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
    assert verdict(again.value) == verdict(info.value)
    reader = HeaderReader(EXPLICIT)
    assert reader.feed(data[:pixel_at]) is False
    assert reader.feed(data[pixel_at:]) is True
    assert reader.finish().sop_instance_uid == "1.2.3.4.5"


def _as_sent(ts: str, data: bytes) -> bytes:
    return deflate(data) if ts == DEFLATED else data


PIXEL_DATA_CUTS = [
    (4, IN),  # inside the tag: nothing past the header was seen yet
    (8, AFTER),  # tag (and VR) seen: done, whatever the length
    (12, AFTER),
    (13, AFTER),
    (700, AFTER),
    (-1, AFTER),  # one byte short
]


# Deflated is not checked once done (test_header_deflate): only its cut in the header.
@pytest.mark.parametrize(
    ("ts", "where", "message"),
    [(ts, *cut) for ts in NATIVE for cut in PIXEL_DATA_CUTS if ts != DEFLATED or cut[1] == IN],
)
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


#: An encapsulated syntax the reader does not judge Pixel Data by (a retired JPEG
#: process, accepted with accept_all_transfer_syntaxes): walked all the same.
RETIRED_JPEG = "1.2.840.10008.1.2.4.53"


@pytest.mark.parametrize("where", ENCAPSULATED_CUTS.values(), ids=ENCAPSULATED_CUTS.keys())
@pytest.mark.parametrize("ts", [JPEG_BASELINE, RETIRED_JPEG])
def test_cut_inside_encapsulated_pixel_data(ts: str, where: int) -> None:
    whole, pixel_at = _with_encapsulated(EXPLICIT)
    assert len(whole) - pixel_at == 206
    data = whole[: pixel_at + where if where > 0 else where]
    assert failure(ts, [data]) == (CANNOT_UNDERSTAND, AFTER)
    assert failure(ts, bytewise(data)) == (CANNOT_UNDERSTAND, AFTER)


@pytest.mark.parametrize("ts", [JPEG_BASELINE, RETIRED_JPEG])
def test_whole_encapsulated_pixel_data_with_its_delimiter(ts: str) -> None:
    whole, _ = _with_encapsulated(EXPLICIT)
    got = read(ts, [whole])
    assert (got.patient_id, got.series_instance_uid) == ("E2", "1.2.3.4.1")
    assert read(ts, bytewise(whole)) == got
    assert read(ts, [whole + trailing_padding(10)]) == got


UNDEFINED_IN_NATIVE = "Pixel Data of undefined length in a native transfer syntax"
DEFINED_IN_ENCAPSULATED = "Pixel Data of defined length in an encapsulated transfer syntax"


@pytest.mark.parametrize("ts", [EXPLICIT, IMPLICIT, BIG, DEFLATED])
def test_encapsulated_pixel_data_in_a_native_syntax_is_refused(ts: str) -> None:
    """PS3.5 A.4: only an encapsulated syntax's Pixel Data has undefined length.
    Stored, it could be neither decoded nor sent on (DCMTK's storescp refuses it)."""
    whole, _ = _with_encapsulated(EXPLICIT if ts == DEFLATED else ts)
    data = _as_sent(ts, whole)
    assert failure(ts, [data]) == (CANNOT_UNDERSTAND, UNDEFINED_IN_NATIVE)
    assert failure(ts, bytewise(data)) == (CANNOT_UNDERSTAND, UNDEFINED_IN_NATIVE)


@pytest.mark.parametrize("ts", sorted(uids.ENCAPSULATED_TRANSFER_SYNTAXES))
def test_native_pixel_data_in_an_encapsulated_syntax_is_refused(ts: str) -> None:
    data = minimal(EXPLICIT, element(0x00100020, "LO", b"E3"))  # 4 bytes of OW
    assert failure(ts, [data]) == (CANNOT_UNDERSTAND, DEFINED_IN_ENCAPSULATED)
    # Not in a syntax whose Pixel Data the reader does not know (JPIP has none).
    for unjudged in (RETIRED_JPEG, "1.2.840.10008.1.2.4.94"):
        assert read(unjudged, [data]).patient_id == "E3"


def _past_the_header(seed: int, ts: str) -> bytes:
    """Random bytes whose first tag is past (0028,0011), the last one wanted."""
    rng = random.Random(seed)
    tag = rng.randrange(0x00280012, 0x100000000)
    order = ">" if ts == BIG else "<"
    return struct.pack(order + "HH", tag >> 16, tag & 0xFFFF) + rng.randbytes(2000)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG, JPEG_BASELINE])
def test_random_bytes_past_the_header_are_no_data_set(ts: str, seed: int) -> None:
    # The reader is done at the first tag: had it stopped there, these bytes would
    # pass for an empty data set. Walking on, it meets a length past the end.
    data = _past_the_header(seed, BIG if ts == BIG else EXPLICIT)
    reader = HeaderReader(ts)
    assert reader.feed(data) is True
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
@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG])
def test_garbage_after_a_whole_data_set(ts: str, garbage: bytes) -> None:
    whole = minimal(ts, element(0x00100020, "LO", b"G1", ts))
    assert read(ts, [whole]).patient_id == "G1"
    data = whole + garbage
    assert failure(ts, [data]) == (CANNOT_UNDERSTAND, AFTER)
    assert failure(ts, sevens(data)) == (CANNOT_UNDERSTAND, AFTER)


def test_bytes_after_the_end_of_the_deflate_stream_are_ignored() -> None:
    # image_dfl.dcm ends in 8 bytes past its deflate stream: a gzip trailer (CRC-32
    # and ISIZE, RFC 1952), which a reader must tolerate.
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
    if size and ts != DEFLATED:  # Deflated is not checked once done
        cut = _as_sent(ts, (whole + trailing_padding(size, wire))[:-1])
        assert failure(ts, [cut]) == (CANNOT_UNDERSTAND, AFTER)


def test_done_at_first_tag_past_the_last_wanted() -> None:
    data = minimal(EXPLICIT, tail=element(0x00280011, "US", b"\x02\x00"))
    cut = data.index(b"\xe0\x7f\x10\x00")
    # Number of Slices (0054,0081): past Content Template Sequence (0040,A504), the
    # last attribute wanted.
    bits = element(0x00540081, "US", b"\x08\x00")
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
    # holds the tag and VR of Pixel Data (the rest is inflated to check the stream).
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
    assert verdict(again.value) == verdict(info.value)


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


@pytest.mark.parametrize("stray", [0xFFFEE0DD, 0xFFFEE00D], ids=["sequence-end", "item-end"])
@pytest.mark.parametrize("ts", [EXPLICIT, IMPLICIT])
def test_a_stray_delimiter_at_the_top_level_is_skipped(ts: str, stray: int) -> None:
    # A zero-length delimiter outside any sequence (a sender's off-by-one) is
    # stepped over: the values after it are read, as if it were not there. It must
    # not end the header, though its tag is past the last wanted one.
    patient = element(0x00100020, "LO", b"PID1", ts)
    want = read(ts, [minimal(ts, patient)])
    assert (want.patient_id, want.study_instance_uid) == ("PID1", "1.2.3.4")
    data = minimal(ts, element(stray, "", b"", ts), patient)
    assert read(ts, [data]) == want
    assert read(ts, bytewise(data)) == want
    reader = HeaderReader(ts)
    assert reader.feed(data[: data.index(b"PID1")]) is False


TOP_LEVEL_FFFE = {
    "item": element(0xFFFEE000, "", b"", EXPLICIT),
    "item-with-value": element(0xFFFEE000, "", b"\x08\x00\x20\x00", EXPLICIT),
    "item-of-undefined-length": element(0xFFFEE000, "", b"", EXPLICIT, 0xFFFFFFFF),
    "delimiter-with-a-length": element(0xFFFEE0DD, "", b"ABCD", EXPLICIT),
    "other": element(0xFFFE0010, "", b"", EXPLICIT),
}


@pytest.mark.parametrize("stray", TOP_LEVEL_FFFE.values(), ids=TOP_LEVEL_FFFE.keys())
@pytest.mark.parametrize("ts", [EXPLICIT, IMPLICIT])
def test_any_other_ffffe_tag_at_the_top_level_is_refused(ts: str, stray: bytes) -> None:
    # Items and delimiters have no VR: the same bytes in either encoding, PS3.5 7.5.
    data = minimal(ts, stray, element(0x00100020, "LO", b"PID1", ts))
    tag = struct.unpack_from("<HH", stray)
    message = f"({tag[0]:04X},{tag[1]:04X}) outside any sequence"
    assert failure(ts, [data]) == (CANNOT_UNDERSTAND, message)
    assert failure(ts, bytewise(data)) == (CANNOT_UNDERSTAND, message)


@pytest.mark.parametrize("ts", ["1.2.3.4", "", "1.2.840.10008.1.2x"])
def test_private_transfer_syntax_is_refused(ts: str) -> None:
    with pytest.raises(HeaderError) as info:
        HeaderReader(ts)
    assert info.value.status == CANNOT_UNDERSTAND


@pytest.mark.parametrize(
    "ts", [*sorted(uids.ENCAPSULATED_TRANSFER_SYNTAXES), "1.2.840.10008.1.2.4.94"]
)
def test_every_encapsulated_transfer_syntax_is_explicit_little_endian(ts: str) -> None:
    pixels = encapsulated(b"\xff\xd8\xff\xd9")
    got = read(ts, [minimal(EXPLICIT, element(0x00100020, "LO", b"E1"), pixels=pixels)])
    assert got.patient_id == "E1"


def test_jpip_referenced_deflate_is_deflated() -> None:
    data = deflate(minimal(EXPLICIT, element(0x00100020, "LO", b"J1")))
    assert read("1.2.840.10008.1.2.4.95", [data]).patient_id == "J1"


@pytest.mark.parametrize("ts", [IMPLICIT, EXPLICIT, BIG])
def test_finish_without_the_rest_once_done(ts: str) -> None:
    """``finish(whole=False)``: a caller that wants the header only stops feeding
    once done and gets the values, where ``finish()`` refuses the cut data set;
    one that stops before done gets C000."""
    rows = element(0x00280010, "US", b"\x00\x02" if ts == BIG else b"\x02\x00", ts)
    pixels = element(0x7FE00010, "OW", bytes(1000), ts)
    whole = minimal(ts, tail=rows, pixels=pixels)
    head = whole[: len(whole) - len(pixels) + 12]  # up to the Pixel Data header
    reader = HeaderReader(ts)
    assert reader.feed(head)
    assert reader.finish(whole=False).rows == 2
    cut = HeaderReader(ts)
    cut.feed(head)
    with pytest.raises(HeaderError, match="truncated after its header"):
        cut.finish()
    early = HeaderReader(ts)
    assert not early.feed(whole[:20])
    with pytest.raises(HeaderError, match="truncated in its header") as failed:
        early.finish(whole=False)
    assert failed.value.status == CANNOT_UNDERSTAND


@pytest.mark.parametrize("ts", [EXPLICIT, IMPLICIT, BIG])
@pytest.mark.parametrize("walk", ["native", "python"])
def test_cut_short_says_what_finish_says_without_decoding(ts: str, walk: str) -> None:
    """``cut_short`` (``archive store``'s check before a last fragment) gives
    :meth:`finish`'s verdict on every prefix of a data set, with either walk."""
    from archive.dicom import header

    data = minimal(
        ts,
        undefined_sequence(0x00091010, item(b"", ts, undefined=True), ts),
        pixels=bytes(64),
        tail=element(0xFFFCFFFC, "OB", bytes(6), ts),
    )
    saved = header._walk
    if walk == "python":
        header._walk = HeaderReader._parse
    try:
        for end in range(len(data) + 1):
            reader = HeaderReader(ts)
            reader.feed(data[:end])
            told = reader.cut_short()
            said: str | None = None
            try:
                reader.finish()
            except HeaderError as exc:
                said = str(exc)
            assert told == said, end
    finally:
        header._walk = saved


def _refusal(reader: HeaderReader, fragment: bytearray) -> str:
    """What the reader says of ``fragment`` fed whole (the exception itself, whose
    traceback holds this frame, is not kept)."""
    try:
        reader.feed(fragment)
        reader.finish()
    except HeaderError as exc:
        return str(exc)
    raise AssertionError("not refused")


class _Buffer(bytearray):
    """A bytearray a weak reference can watch."""


@pytest.mark.parametrize("ts", [EXPLICIT, DEFLATED])
def test_a_refusal_leaves_no_reference_cycle_holding_the_fragment(ts: str) -> None:
    """The reader keeps its verdict, not the raised exception: that one's
    traceback holds the reader, and the cycle held the fragment (a PDU buffer)
    past its association until the collector's next full pass."""
    data = bytes(4096) if ts == EXPLICIT else zlib.compress(bytes(4096))[2:-4]
    fragment = _Buffer(data)
    gone = weakref.finalize(fragment, lambda: None)
    reader = HeaderReader(ts)
    enabled = gc.isenabled()
    gc.disable()
    try:
        said = [_refusal(reader, fragment) for _ in range(2)]
        assert said[0] == said[1] == "(0000,0000) has no VR (bytes 00 00) in Explicit VR"
        del reader, fragment
        assert not gone.alive  # freed by reference counting alone
    finally:
        if enabled:
            gc.enable()
