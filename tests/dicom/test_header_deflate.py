"""What a Deflated data set may cost the header extractor, which runs on the event loop.

Raw deflate inflates up to 1032:1, and every inflated element header is a turn of the
reader's loop, so these tests bound the work a received byte can cause: a data set is
inflated only until the reader is done, and its header part only up to a ratio of the
bytes received. Work is observed as ``HeaderReader.inflated`` (bytes inflated), never
as time.
"""

from __future__ import annotations

import random
import zlib

import pytest

from archive.dicom.header import (
    INFLATE_ALLOWANCE,
    INFLATE_BLOCK,
    INFLATE_CHUNK,
    MAX_INFLATE_RATIO,
    HeaderError,
    HeaderReader,
)
from tests.dicom.header_helpers import (
    CANNOT_UNDERSTAND,
    DEFLATED,
    EXPLICIT,
    deflate,
    element,
    item,
    minimal,
    read,
    sevens,
    undefined_sequence,
    verdict,
)


def _zeros_stream(size: int) -> bytes:
    """The leading bytes of a raw deflate stream of ``size`` zero bytes (no end)."""
    return zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).compress(bytes(size))


def test_a_deflate_bomb_of_empty_elements_is_refused() -> None:
    # ~64 KiB that inflate to 64 MB: in Explicit VR LE, 8 million empty elements
    # (0008,0000) UL, all before the last wanted tag, so the reader is never
    # done. Each is a turn of the loop: this one feed() took seconds. (Zeros
    # alone are now refused at once: (0000,0000) has no VR.)
    empty = b"\x08\x00\x00\x00UL\x00\x00"
    bomb = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS).compress(empty * 8_000_000)
    fragment = bomb[:65536]
    assert len(bomb) > len(fragment)
    reader = HeaderReader(DEFLATED)
    with pytest.raises(HeaderError) as info:
        reader.feed(fragment)
    assert info.value.status == CANNOT_UNDERSTAND
    assert str(info.value) == "deflated data set inflates past 64:1 in its header"
    # Refused in the first block, having inflated no more than it allows.
    assert reader.inflated == INFLATE_ALLOWANCE + MAX_INFLATE_RATIO * INFLATE_BLOCK + 1
    with pytest.raises(HeaderError) as again:  # and it stays so
        reader.feed(b"")
    assert verdict(again.value) == verdict(info.value)


def _private_zeros(size: int) -> bytes:
    """A deflated data set whose header holds a private OB of ``size`` zeros."""
    creator = element(0x00090010, "LO", b"ARCHIVE TEST")
    return deflate(minimal(EXPLICIT, creator, element(0x00091010, "OB", bytes(size))))


def test_the_header_may_inflate_past_the_ratio_within_the_allowance() -> None:
    data = _private_zeros(INFLATE_ALLOWANCE)
    assert len(data) * MAX_INFLATE_RATIO < INFLATE_ALLOWANCE  # past the ratio
    assert read(DEFLATED, [data]).series_instance_uid == "1.2.3.4.1"
    assert read(DEFLATED, sevens(data)).series_instance_uid == "1.2.3.4.1"


def test_the_header_may_not_inflate_past_the_allowance_and_the_ratio() -> None:
    data = _private_zeros(2 * 1024 * 1024)
    assert len(data) < INFLATE_BLOCK  # held, then inflated by finish()
    reader = HeaderReader(DEFLATED)
    assert reader.feed(data) is False
    with pytest.raises(HeaderError) as info:
        reader.finish()
    assert info.value.status == CANNOT_UNDERSTAND
    assert reader.inflated == INFLATE_ALLOWANCE + MAX_INFLATE_RATIO * len(data) + 1


def test_a_large_header_that_deflates_well_is_read() -> None:
    """A Key Object Selection's evidence (0040,A375), before the last wanted tag,
    referencing 20 000 instances whose UIDs differ in a counter, with undefined
    lengths: about 35:1, 2 element headers per byte received, far past the
    allowance, and read."""
    refs = b"".join(
        item(
            element(0x00081150, "UI", b"1.2.840.10008.5.1.4.1.1.2\0")
            + element(0x00081155, "UI", f"1.2.826.0.1.3680043.8.498.{n}".encode().ljust(32, b"\0")),
            undefined=True,
        )
        for n in range(20_000)
    )
    series = item(undefined_sequence(0x00081199, refs), undefined=True)
    evidence = undefined_sequence(0x0040A375, item(undefined_sequence(0x00081115, series)))
    plain = minimal(EXPLICIT, tail=evidence)
    data = deflate(plain)
    assert len(plain) > 30 * len(data)
    reader = HeaderReader(DEFLATED)
    for piece in sevens(data):
        reader.feed(piece)
    assert reader.finish().series_instance_uid == "1.2.3.4.1"
    assert reader.inflated == len(plain) > INFLATE_ALLOWANCE
    assert read(DEFLATED, [data]) == read(EXPLICIT, [plain])


def _blank_image(pixels: int) -> bytes:
    """A data set ending in ``pixels`` zero bytes of Pixel Data, deflated."""
    rows = element(0x00280010, "US", b"\x00\x02")
    data = minimal(EXPLICIT, tail=rows, pixels=element(0x7FE00010, "OW", bytes(pixels)))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def test_past_the_ratio_the_rest_is_neither_inflated_nor_checked() -> None:
    # Once done (at Pixel Data), a Deflated data set is inflated, not walked, to
    # check its stream; 32 MiB of zeros pass the ratio at once: from there on the
    # rest is not inflated, so even a corrupt rest passes.
    stream = _blank_image(32 * 1024 * 1024)  # 32 KiB deflated
    corrupt = stream[:4096] + b"\xff" * (len(stream) - 4096)
    reader = HeaderReader(DEFLATED)
    assert reader.feed(corrupt[:4096]) is True
    for start in range(4096, len(corrupt), 1000):
        assert reader.feed(corrupt[start : start + 1000]) is True
    assert reader.buffered == 26 + 10 + 8 + 10 + 2  # the five values, no input held
    assert reader.inflated == INFLATE_ALLOWANCE + MAX_INFLATE_RATIO * INFLATE_BLOCK + 1
    got = reader.finish()
    assert (got.rows, got.series_instance_uid) == (512, "1.2.3.4.1")


def test_past_the_header_the_stream_is_checked_not_the_elements() -> None:
    # Within the ratio the rest is inflated without walking it: a deflate stream
    # cut short, never ended or corrupt is refused "after its header"; the elements
    # are not, so a data set cut inside an element, or garbage after it, in a whole
    # stream reads (test_header_end refuses both in the other encodings).
    whole = minimal(
        EXPLICIT, element(0x00100020, "LO", b"G1"),
        pixels=element(0x7FE00010, "OW", bytes(range(256)) * 400),
    )  # fmt: skip
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    unfinished = compressor.compress(whole) + compressor.flush(zlib.Z_SYNC_FLUSH)
    for data in (deflate(whole[:-1]), deflate(whole + b"garbage!")):
        assert read(DEFLATED, [data]).patient_id == "G1"
        assert read(DEFLATED, sevens(data)).patient_id == "G1"
    stream = deflate(whole)
    corrupt = stream[: len(stream) // 2] + b"\xff" * (len(stream) - len(stream) // 2)
    for data in (stream[:-1], unfinished, corrupt):
        for pieces in ([data], sevens(data)):
            with pytest.raises(HeaderError, match=r"after its header|corrupt") as info:
                read(DEFLATED, pieces)
            assert info.value.status == CANNOT_UNDERSTAND
    # Cut before it is done, it is refused as any other.
    with pytest.raises(HeaderError, match="truncated in its header"):
        read(DEFLATED, [deflate(whole[: whole.index(b"G1")])])


def test_checked_the_whole_stream_is_checked_however_well_it_deflates() -> None:
    # Off the event loop (a file's scan in the I/O pool: recovery, archive check,
    # reindex) there is no ratio: a file cut short is told from a whole one even
    # when the rest is zeros, which the bounded reader stores unchecked.
    stream = _blank_image(8 * 1024 * 1024)
    for rest, cut_reads in (("bounded", True), ("checked", False)):
        reader = HeaderReader(DEFLATED, rest=rest)
        for start in range(0, len(stream) - 100, 1000):
            reader.feed(stream[start : min(start + 1000, len(stream) - 100)])
        if cut_reads:
            assert reader.finish().rows == 512
        else:
            with pytest.raises(HeaderError, match="truncated after its header"):
                reader.finish()
    whole = HeaderReader(DEFLATED, rest="checked")
    whole.feed(stream)
    assert whole.finish().rows == 512
    assert whole.inflated > 8 * 1024 * 1024


def test_skipped_nothing_past_the_header_is_inflated() -> None:
    # A header-only scan (finish(whole=False)): what follows the header, corrupt
    # or not, is neither inflated nor checked, whatever the chunks it comes in.
    noise = random.Random(1).randbytes(64 * 1024)
    data = minimal(EXPLICIT, element(0x00280010, "US", b"\x00\x02"),
                   pixels=element(0x7FE00010, "OW", noise))  # fmt: skip
    stream = deflate(data)
    assert len(stream) > 3 * INFLATE_BLOCK
    corrupt = stream[: 2 * INFLATE_BLOCK] + b"\xff" * (len(stream) - 2 * INFLATE_BLOCK)
    with pytest.raises(HeaderError):
        read(DEFLATED, [corrupt])
    for size in (1000, INFLATE_BLOCK, 65536):
        reader = HeaderReader(DEFLATED, rest="skipped")
        for start in range(0, len(corrupt), size):
            if reader.feed(corrupt[start : start + size]):
                break
        assert reader.finish(whole=False).rows == 512
        assert reader.inflated <= INFLATE_CHUNK


def test_skipped_a_data_set_that_ends_before_its_header_is_checked_whole() -> None:
    # A header-only scan calls finish(whole=True) when the file ended before the
    # header was read: then what is held must be a whole stream, as in any read
    # (a small file held in one block completes its header only in finish()).
    stream = _blank_image(1024)
    assert len(stream) < INFLATE_BLOCK
    reader = HeaderReader(DEFLATED, rest="skipped")
    assert reader.feed(stream[:-8]) is False
    with pytest.raises(HeaderError, match="truncated after its header"):
        reader.finish(whole=True)
    whole = HeaderReader(DEFLATED, rest="skipped")
    assert whole.feed(stream) is False
    assert whole.finish(whole=True).rows == 512
