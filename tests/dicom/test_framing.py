"""FrameReader: large P-DATA PDUs land in buffers of their own, and the machine
sees exactly the stream that was read."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.dicom.ul import framing
from archive.dicom.ul.framing import DIRECT_MIN, SCRATCH, FrameReader

MAX_DATA = 256 << 10


def pdu(pdu_type: int, length: int, fill: int = 0x5A) -> bytes:
    return struct.pack(">BxL", pdu_type, length) + bytes([fill]) * length


def reader(max_data: int = MAX_DATA, *, established: bool = True) -> FrameReader:
    return FrameReader(max_data, lambda: established)


def feed(reader: FrameReader, stream: bytes, sizes: list[int]) -> list[bytes | memoryview]:
    """Read ``stream`` through the reader, each read at most the next size (cycled)."""
    chunks: list[bytes | memoryview] = []
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


def joined(chunks: list[bytes | memoryview]) -> bytes:
    return b"".join(chunks)


def own_buffers(chunks: list[bytes | memoryview]) -> list[memoryview]:
    return [c for c in chunks if isinstance(c, memoryview)]


def test_a_large_pdu_is_read_into_one_buffer_of_its_size() -> None:
    data = pdu(0x04, 300_000 - 6, 1)
    r = reader(0)
    # The header and a little body arrive first, then the rest in reads of 64 KiB.
    first = r.buffer()
    first[:100] = data[:100]
    assert r.updated(100) == []
    assert r.pending == 100
    # From here the kernel writes into the PDU's own buffer, not the scratch.
    rest = r.buffer()
    assert len(rest) == len(data) - 100
    chunks = feed(r, data[100:], [65536])
    assert len(chunks) == 1
    assert isinstance(chunks[0], memoryview)
    assert chunks[0].readonly
    assert bytes(chunks[0]) == data
    assert r.pending == 0


def test_whole_pdus_in_one_read_go_out_in_one_copy() -> None:
    stream = pdu(0x04, 100) + pdu(0x04, 200) + pdu(0x05, 4) + pdu(0x04, 0)
    chunks = feed(reader(), stream, [SCRATCH])
    assert chunks == [stream]


def test_small_or_control_pdus_spanning_reads_are_passed_on_as_they_come() -> None:
    # Below DIRECT_MIN still to come, or not P-DATA-TF: nothing is held back.
    for stream in (pdu(0x04, DIRECT_MIN), pdu(0x01, 100_000), pdu(0x07, 50_000)):
        r = reader()
        chunks = feed(r, stream, [1000])
        assert own_buffers(chunks) == []
        assert all(len(c) <= 1000 for c in chunks)
        assert joined(chunks) == stream


def test_no_buffer_before_the_association_is_established() -> None:
    # A peer that has not associated gets nothing allocated for a length it claims.
    stream = pdu(0x04, 200_000)
    r = reader(established=False)
    chunks = feed(r, stream, [65536])
    assert own_buffers(chunks) == []
    assert joined(chunks) == stream
    assert r.pending == 0


@pytest.mark.parametrize("ending", [0x05, 0x06, 0x07, 0x55])
def test_no_buffer_after_a_release_or_abort_even_in_the_same_read(ending: int) -> None:
    # The machine may not have read the A-RELEASE-RQ (or A-ABORT) yet, and still
    # says established: the reader does not wait for it to say otherwise.
    first = pdu(ending, 4) + pdu(0x04, 100_000)
    r = reader()
    chunks = feed(r, first, [65536])
    assert own_buffers(chunks) == []
    assert joined(chunks) == first
    assert own_buffers(feed(r, pdu(0x04, 100_000), [65536])) == []
    # An association's opening PDUs do not count.
    r = reader()
    opening = pdu(0x02, 50) + pdu(0x04, 100_000)
    assert own_buffers(feed(r, opening, [65536]))


def test_a_header_alone_holds_nothing_back() -> None:
    # Every byte read reaches the machine except the rest of a large P-DATA PDU
    # being read into its buffer: a split header is handed over as it comes.
    data = pdu(0x04, 100_000)
    r = reader()
    for k in range(5):
        assert feed(r, data[k : k + 1], [1]) == [data[k : k + 1]]
    assert r.pending == 0
    # The header's last byte arrives with some body: the rest goes to a buffer
    # that holds the body only (the header went out already).
    chunks = feed(r, data[5:1000], [65536])
    assert chunks == [data[5:6]]
    assert r.pending == 1000 - 6
    last = feed(r, data[1000:], [65536])
    assert [bytes(c) for c in last] == [data[6:]]


def test_a_chunk_handed_over_is_never_written_again() -> None:
    big = pdu(0x04, 100_000, 7)
    stream = big + pdu(0x04, 10, 8) + big
    r = reader()
    chunks = feed(r, stream, [1000, 70_000])
    kept = [bytes(c) for c in chunks]
    assert own_buffers(chunks)
    feed(r, stream, [3, 65536])  # more traffic through the same reader
    feed(reader(), stream, [65536])  # and through another on this thread
    assert [bytes(c) for c in chunks] == kept
    assert joined(chunks) == stream


def test_too_long_or_unknown_pdus_pass_through_unbuffered() -> None:
    # Longer than the machine accepts: no buffer of that size is made; the
    # machine sees the header and refuses it.
    huge = struct.pack(">BxL", 0x04, 0xFFFF_FFF0) + b"x" * 200_000
    r = reader()
    chunks = feed(r, huge, [65536])
    assert joined(chunks) == huge
    assert own_buffers(chunks) == []
    over = pdu(0x04, MAX_DATA + 1)
    assert own_buffers(feed(reader(), over, [65536])) == []
    unknown = struct.pack(">BxL", 0x55, 500_000) + b"y" * 100_000
    r = reader()
    assert joined(feed(r, unknown, [65536])) == unknown
    assert r.pending == 0


def test_unlimited_pdus_beyond_the_direct_maximum_pass_in_pieces() -> None:
    data = pdu(0x04, framing.DIRECT_MAX + 10, 3)
    chunks = feed(reader(0), data, [65536])
    assert joined(chunks) == data
    assert own_buffers(chunks) == []


def test_the_stream_ending_mid_pdu_gives_back_what_was_held() -> None:
    data = pdu(0x04, 100_000)
    r = reader()
    chunks = feed(r, data[:70_003], [65536])
    assert chunks == []
    assert r.take_pending() == data[:70_003]
    assert r.pending == 0
    assert r.take_pending() == b""  # given once
    # A header cut short was handed over already: nothing held.
    assert feed(r, data[:4], [65536]) == [data[:4]]
    assert r.take_pending() == b""
    # And the reader is fresh afterwards.
    assert feed(r, pdu(0x05, 4), [65536]) == [pdu(0x05, 4)]


SMALL_STREAM = (
    pdu(0x04, 0)
    + pdu(0x06, 4)
    + struct.pack(">BxL", 0x55, 3)
    + b"abc"
    + pdu(0x04, 40)
    + struct.pack(">BxL", 0x04, 0xFFFF_FFF0)
)


@pytest.mark.parametrize("first", range(1, 14))
def test_every_pair_of_read_sizes_keeps_a_small_stream_whole(first: int) -> None:
    for second in range(1, 14):
        chunks = feed(reader(), SMALL_STREAM, [first, second])
        assert joined(chunks) == SMALL_STREAM, (first, second)


def test_every_split_around_a_large_pdu_keeps_the_stream_whole() -> None:
    stream = pdu(0x04, 10) + pdu(0x04, 40_000, 9) + pdu(0x05, 4)
    for first, second in itertools.product([1, 5, 6, 7, 15, 16, 17, 22, 100], [1, 6, 9, 30_000]):
        r = reader()
        chunks = feed(r, stream, [first, second, 65536])
        assert joined(chunks) == stream, (first, second)
        assert r.pending == 0


_pdus = st.lists(
    st.tuples(
        st.sampled_from([0x01, 0x02, 0x04, 0x04, 0x04, 0x05, 0x07, 0x09]),
        st.one_of(st.integers(0, 300), st.integers(60_000, 300_000)),
    ),
    min_size=1,
    max_size=8,
)
_sizes = st.lists(st.one_of(st.integers(1, 12), st.integers(1, 200_000)), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(_pdus, _sizes, st.booleans())
def test_any_stream_read_in_any_sizes_reaches_the_machine_unchanged(
    pdus: list[tuple[int, int]], sizes: list[int], established: bool
) -> None:
    stream = b"".join(pdu(t, n, i % 251) for i, (t, n) in enumerate(pdus))
    r = reader(established=established)
    chunks = feed(r, stream, sizes)
    assert joined(chunks) == stream
    assert r.pending == 0
    # A PDU's own buffer holds the rest of one P-DATA-TF PDU, within the limit.
    for chunk in own_buffers(chunks):
        assert established
        assert DIRECT_MIN < len(chunk) <= MAX_DATA + 6
