"""FrameReader: reads land in per-PDU buffers, and the machine sees the same stream."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from archive.dicom.ul import framing
from archive.dicom.ul.framing import SCRATCH, FrameReader

MAX_DATA = 256 << 10
MAX_CONTROL = 1 << 20


def pdu(pdu_type: int, length: int, fill: int = 0x5A) -> bytes:
    return struct.pack(">BxL", pdu_type, length) + bytes([fill]) * length


def feed(reader: FrameReader, stream: bytes, sizes: list[int]) -> list[bytes | bytearray]:
    """Read ``stream`` through the reader, each read at most the next size (cycled)."""
    chunks: list[bytes | bytearray] = []
    at = 0
    k = 0
    while at < len(stream):
        buffer = reader.buffer()
        assert len(buffer) > 0
        n = min(len(buffer), sizes[k % len(sizes)], len(stream) - at)
        k += 1
        buffer[:n] = stream[at : at + n]
        at += n
        chunks.extend(reader.updated(n))
    return chunks


def test_a_large_pdu_is_read_into_one_buffer_of_its_size() -> None:
    data = pdu(0x04, 300_000 - 6, 1)
    reader = FrameReader(0, MAX_CONTROL)
    # The header and a little body arrive first, then the rest in reads of 64 KiB.
    first = reader.buffer()
    first[:100] = data[:100]
    assert reader.updated(100) == []
    # From here the kernel writes into the PDU's own buffer, not the scratch.
    rest = reader.buffer()
    assert len(rest) == len(data) - 100
    chunks = feed(reader, data[100:], [65536])
    assert len(chunks) == 1
    assert isinstance(chunks[0], bytearray)
    assert chunks[0] == data
    assert reader.pending == 0


def test_whole_pdus_in_one_read_go_out_in_one_copy() -> None:
    stream = pdu(0x04, 100) + pdu(0x04, 200) + pdu(0x05, 4)
    reader = FrameReader(MAX_DATA, MAX_CONTROL)
    chunks = feed(reader, stream, [SCRATCH])
    assert chunks == [stream]


def test_a_chunk_handed_over_is_never_written_again() -> None:
    big = pdu(0x04, 100_000, 7)
    stream = big + pdu(0x04, 10, 8) + big
    reader = FrameReader(MAX_DATA, MAX_CONTROL)
    chunks = feed(reader, stream, [1000, 70_000])
    kept = [bytes(c) for c in chunks]
    feed(reader, stream, [3, 65536])  # more traffic through the same reader
    assert [bytes(c) for c in chunks] == kept
    assert b"".join(chunks) == stream


def test_too_long_or_unknown_pdus_pass_through_unbuffered() -> None:
    # Longer than the machine accepts: no buffer of that size is made; the
    # machine sees the header and refuses it.
    huge = struct.pack(">BxL", 0x04, 0xFFFF_FFF0) + b"x" * 200_000
    reader = FrameReader(MAX_DATA, MAX_CONTROL)
    chunks = feed(reader, huge, [65536])
    assert b"".join(chunks) == huge
    assert reader.pending == 0
    assert all(len(c) <= SCRATCH + 6 for c in chunks)
    unknown = struct.pack(">BxL", 0x55, 500_000) + b"y" * 100_000
    reader = FrameReader(MAX_DATA, MAX_CONTROL)
    assert b"".join(feed(reader, unknown, [65536])) == unknown
    assert reader.pending == 0


def test_unlimited_pdus_beyond_the_direct_maximum_pass_in_pieces() -> None:
    data = pdu(0x04, framing.DIRECT_MAX + 10, 3)
    reader = FrameReader(0, MAX_CONTROL)
    chunks = feed(reader, data, [65536])
    assert b"".join(chunks) == data
    assert max(len(c) for c in chunks) <= SCRATCH + 6


def test_the_stream_ending_mid_pdu_gives_back_what_was_read() -> None:
    data = pdu(0x04, 100_000)
    reader = FrameReader(MAX_DATA, MAX_CONTROL)
    chunks = feed(reader, data[:70_003], [65536])
    assert chunks == []
    assert reader.take_pending() == data[:70_003]
    assert reader.pending == 0
    # A header cut short.
    assert feed(reader, data[:4], [65536]) == []
    assert reader.take_pending() == data[:4]
    # And the reader is fresh afterwards.
    assert feed(reader, pdu(0x05, 4), [65536]) == [pdu(0x05, 4)]


_pdus = st.lists(
    st.tuples(
        st.sampled_from([0x01, 0x02, 0x04, 0x04, 0x04, 0x05, 0x07, 0x09]),
        st.one_of(st.integers(0, 300), st.integers(60_000, 300_000)),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(_pdus, st.lists(st.integers(1, 200_000), min_size=1, max_size=6))
def test_any_stream_read_in_any_sizes_reaches_the_machine_unchanged(
    pdus: list[tuple[int, int]], sizes: list[int]
) -> None:
    stream = b"".join(pdu(t, n, i % 251) for i, (t, n) in enumerate(pdus))
    reader = FrameReader(MAX_DATA, MAX_CONTROL)
    chunks = feed(reader, stream, sizes)
    assert b"".join(chunks) == stream
    assert reader.pending == 0
    # Every PDU that got a buffer of its own is one whole PDU.
    for chunk in chunks:
        if isinstance(chunk, bytearray):
            (length,) = struct.unpack_from(">L", chunk, 2)
            assert len(chunk) == 6 + length
