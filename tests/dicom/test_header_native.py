"""The header walk in C (``archive._native.header_walk``) and its twin agree.

``HeaderReader._parse`` is the reference. Each case feeds the same fragments to
two readers, one walking with the C function and one with the twin, and compares
after every feed what a caller or the next feed can see: the error (its message),
``done``, ``buffered``, the values and sequences gathered and the walk's carried
state; then what ``finish`` gives. The data are the property tests' corpus,
generated data sets, random element streams, mutations and random bytes, in random
splits (byte by byte included), in every encoding, Deflated too (the walk then runs
on the inflated output).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archive.dicom import header
from archive.dicom.header import HeaderError, HeaderReader
from archive.dicom.wire import ITEM, ITEM_DELIMITATION, SEQUENCE_DELIMITATION
from tests.conftest import IN_CI, assert_native_chosen
from tests.dicom.header_helpers import (
    BIG,
    DEFLATED,
    EXPLICIT,
    IMPLICIT,
    JPEG_BASELINE,
    deflate,
    element,
    encapsulated,
    item,
    minimal,
    read,
    undefined_sequence,
)
from tests.dicom.test_header_properties import (
    CORPUS,
    MUTATIONS,
    RANDOM_BYTES,
    SETTINGS,
    Sample,
    _mutate,
    cut,
    data_sets,
    samples,
)

try:
    from archive import _native
except ImportError:  # pragma: no cover - only where no C compiler built it
    _native = None  # type: ignore[assignment]

Walk = Callable[[HeaderReader, memoryview], "str | None"]

needs_native = pytest.mark.skipif(
    _native is None and not IN_CI, reason="archive._native not built (no C compiler)"
)

#: File Meta, wanted values and sequences (the last wanted tag among them), unwanted,
#: the first past the header, Pixel Data, items and delimiters, an unknown item tag.
STREAM_TAGS = [
    0x00020010, 0x00080005, 0x00080018, 0x00081032, 0x00100010, 0x00091010, 0x00101002,
    0x00280010, 0x0040A043, 0x0040A504, 0x0040A505, 0x7FE00010, 0xFFFEE000, 0xFFFEE00D,
    0xFFFEE0DD, 0xFFFE0001,
]  # fmt: skip

#: The reader's slots the walk carries from one fragment to the next.
STATE = ("_skip", "_want", "_depth", "_un_depth", "_held", "_pending", "_capture_tag")


def test_the_c_walk_is_built_and_chosen() -> None:
    assert_native_chosen(header._walk, "header_walk", HeaderReader._parse)


@contextlib.contextmanager
def walking(walk: Walk) -> Iterator[None]:
    saved = header._walk
    header._walk = walk
    try:
        yield
    finally:
        header._walk = saved


def _seen(reader: HeaderReader) -> tuple[Any, ...]:
    capture = reader._capture
    return (
        reader.done,
        reader.buffered,
        dict(reader._values),
        dict(reader._sequences),
        None if capture is None else bytes(capture),
        bytes(reader._buf),
        *(getattr(reader, name) for name in STATE),
    )


def trace(walk: Walk, ts: str, pieces: list[bytes]) -> list[Any]:
    """What each feed, then finish, showed; stops at the first error, as callers do."""
    seen: list[Any] = []
    with walking(walk):
        try:
            reader = HeaderReader(ts)
        except HeaderError as exc:
            return [("init", str(exc))]
        for piece in pieces:
            try:
                reader.feed(memoryview(piece))
            except HeaderError as exc:
                seen.append(("feed", exc.status, str(exc), _seen(reader)))
                return seen
            seen.append(_seen(reader))
        try:
            seen.append(reader.finish())
        except HeaderError as exc:
            seen.append(("finish", exc.status, str(exc)))
    return seen


def assert_twins(ts: str, pieces: list[bytes]) -> list[Any]:
    assert _native is not None, "archive._native was not built"
    ours = trace(_native.header_walk, ts, pieces)
    theirs = trace(HeaderReader._parse, ts, pieces)
    assert ours == theirs
    return ours


@needs_native
@SETTINGS
@given(sample=samples, points=st.lists(st.integers(min_value=0, max_value=40_000), max_size=40))
def test_corpus_in_any_split(sample: Sample, points: list[int]) -> None:
    assert_twins(sample.ts, cut(sample.data, points))


@needs_native
@pytest.mark.parametrize("sample", CORPUS, ids=lambda s: s.name)
def test_corpus_byte_by_byte(sample: Sample) -> None:
    data = sample.data[:6000]  # the header and past it: enough for every state
    outcome = assert_twins(sample.ts, [data[i : i + 1] for i in range(len(data))])
    whole = assert_twins(sample.ts, [sample.data])
    # The prefix ends inside the data set: the truncation path was compared too.
    assert whole[-1] != outcome[-1] or len(data) == len(sample.data)


@needs_native
@SETTINGS
@given(generated=data_sets(), points=st.lists(st.integers(0, 400), max_size=12))
def test_generated_data_sets(generated: tuple[str, bytes, Any], points: list[int]) -> None:
    ts, raw, _ = generated
    assert_twins(ts, cut(raw, points))
    assert_twins(ts, [raw[i : i + 1] for i in range(len(raw))])
    if ts == EXPLICIT:
        assert_twins(DEFLATED, cut(deflate(raw), points))


@needs_native
@SETTINGS
@given(**MUTATIONS)
def test_mutated_data_sets(
    sample: Sample, edits: list[tuple[int, int, int]], points: list[int]
) -> None:
    assert_twins(sample.ts, cut(_mutate(sample.data, edits), points))


@needs_native
@SETTINGS
@given(
    ts=st.sampled_from([IMPLICIT, EXPLICIT, BIG]),
    fields=st.lists(
        st.tuples(
            st.sampled_from(STREAM_TAGS),
            st.sampled_from(["UI", "PN", "SQ", "UN", "OB", "US", "IS", "LO", "\0\0"]),
            st.binary(max_size=20),
            st.sampled_from([None, 0xFFFFFFFF, 0, 3, 70_000, 20_000, 0xFFFFFFFE]),
        ),
        max_size=14,
    ),
    points=st.lists(st.integers(min_value=0, max_value=300), max_size=6),
)
def test_random_element_streams(
    ts: str, fields: list[tuple[int, str, bytes, int | None]], points: list[int]
) -> None:
    # Group 0002 goes Explicit VR LE whatever the encoding: File Meta left in front
    # of (or, garbage, inside) an Implicit VR data set, which the walk reads so.
    data = b"".join(
        element(tag, vr, value, EXPLICIT if tag >> 16 == 2 else ts, length)
        for tag, vr, value, length in fields
    )
    assert_twins(ts, cut(data, points))
    assert_twins(ts, [data[i : i + 1] for i in range(len(data))])


@needs_native
@SETTINGS
@given(**RANDOM_BYTES)
def test_random_bytes(ts: str, blob: bytes, points: list[int]) -> None:
    assert_twins(ts, cut(blob, points))


def test_limits_are_the_twins() -> None:
    # Past each limit both refuse at the same byte with the same message (the C
    # walk takes the limits from header.py, header_setup).
    long_value = element(0x00100010, "UC", b"x" * (header.MAX_VALUE_LENGTH + 2), EXPLICIT)
    too_much = b"".join(
        element(tag, "LO", b"y" * 60_000, EXPLICIT)
        for tag in (0x00080050, 0x00081030, 0x0008103E, 0x00100010, 0x00100020)
    )
    long_sequence = element(0x00081032, "SQ", b"\0" * (header.MAX_SEQUENCE_LENGTH + 2), EXPLICIT)
    for data, message in (
        (long_value, "value of (0010,0010) is 65538 bytes long"),
        (too_much, "header values too long in total"),
        (element(0xFFFEE000, "OB", b"", EXPLICIT, 4), "(FFFE,E000) outside any sequence"),
    ):
        for walk in [HeaderReader._parse] + ([_native.header_walk] if _native else []):
            seen = trace(walk, EXPLICIT, [data])
            assert seen[-1][:3] == ("feed", 0xC000, message)
    if _native is not None:
        got = assert_twins(EXPLICIT, [long_sequence, element(0x00100020, "LO", b"P", EXPLICIT)])
        assert got[-1].procedure_code_sequence == ""  # too long to index: stepped over
        assert got[-1].patient_id == "P"


@pytest.mark.parametrize("ts", [EXPLICIT, BIG])
def test_an_element_without_a_vr_in_explicit_vr_is_refused_by_name(ts: str) -> None:
    # An element in Implicit VR inside an Explicit VR data set (a private one,
    # say): its length's low bytes sit where the VR should be. Read as a VR of
    # 4-byte length, the walk ran past the data and called it truncated.
    implicit = _implicit(0x00090010, b"ABCDEFGH")
    if ts == BIG:
        implicit = bytes.fromhex("0009 0010 00000008") + b"ABCDEFGH"
    data = element(0x00080016, "UI", b"1.2\0", ts) + implicit + element(0x00100010, "PN", b"A", ts)
    message = "(0009,0010) has no VR (bytes 08 00) in Explicit VR"
    if ts == BIG:
        message = "(0009,0010) has no VR (bytes 00 00) in Explicit VR"
    for walk in [HeaderReader._parse] + ([_native.header_walk] if _native else []):
        for points in ([], [9, 13], list(range(len(data)))):
            seen = trace(walk, ts, cut(data, points))
            assert seen[-1][:3] == ("feed", 0xC000, message), (walk, points)


def _implicit(tag: int, value: bytes, length: int | None = None) -> bytes:
    return element(tag, "", value, IMPLICIT, length)


_UNDEFINED = 0xFFFFFFFF
_CODE = item(element(0x00080100, "SH", b"CODE"))
_END = element(SEQUENCE_DELIMITATION, "", b"")
_PATIENT = element(0x00100020, "LO", b"PID1")

#: Branches random data seldom reaches, each in a data set of its own.
FIXED_CASES: dict[str, tuple[str, bytes]] = {
    "wanted undefined sequence past its bound, then repeated": (
        EXPLICIT,
        undefined_sequence(0x0040A043, _CODE * (header.MAX_SEQUENCE_LENGTH // len(_CODE) + 2))
        + undefined_sequence(0x0040A043, _CODE)
        + _PATIENT,
    ),
    "wanted undefined sequence repeated": (
        EXPLICIT,
        undefined_sequence(0x0040A043, _CODE)
        + undefined_sequence(0x0040A043, _CODE * 2)
        + _PATIENT,
    ),
    "wanted defined sequence repeated": (
        EXPLICIT,
        element(0x0040A043, "SQ", _CODE) + element(0x0040A043, "SQ", _CODE * 2) + _PATIENT,
    ),
    "File Meta with long VRs before an Implicit VR data set": (
        IMPLICIT,
        element(0x00020001, "OB", b"\0\1")
        + element(0x00020010, "UI", b"1.2\0")
        + element(0x00020002, "UN", b"", EXPLICIT, _UNDEFINED)
        + _implicit(ITEM, _implicit(0x00080100, b"XXXX"))
        + _implicit(SEQUENCE_DELIMITATION, b"")
        + _implicit(0x00100020, b"PID1"),
    ),
    "UN of undefined length nested in a sequence": (
        EXPLICIT,
        undefined_sequence(
            0x0040A043,
            element(ITEM, "", b"", EXPLICIT, _UNDEFINED)
            + element(0x00091010, "UN", b"", EXPLICIT, _UNDEFINED)
            + _implicit(ITEM, b"", _UNDEFINED)
            + _implicit(0x00091011, b"ab")
            + _implicit(0x00091012, b"", _UNDEFINED)
            + _implicit(ITEM_DELIMITATION, b"")
            + _implicit(ITEM_DELIMITATION, b"")
            + _implicit(SEQUENCE_DELIMITATION, b"")
            + element(0x00080100, "SH", b"AB")
            + element(ITEM_DELIMITATION, "", b""),
        )
        + _PATIENT,
    ),
    "UN of undefined length at the top, Big Endian": (
        BIG,
        element(0x0040A043, "UN", b"", BIG, _UNDEFINED)
        + _implicit(ITEM, _implicit(0x00080100, b"AB"))
        + _implicit(SEQUENCE_DELIMITATION, b"")
        + element(0x00100020, "LO", b"P", BIG),
    ),
    "stray delimiters at the top": (
        EXPLICIT,
        element(ITEM_DELIMITATION, "", b"")
        + _END
        + _PATIENT
        + element(ITEM_DELIMITATION, "", b"x"),
    ),
    "unknown item tag of undefined length in a sequence": (
        EXPLICIT,
        undefined_sequence(0x00091010, element(0xFFFE0001, "", b"", EXPLICIT, _UNDEFINED)),
    ),
    "unknown item tag of defined length in a sequence": (
        EXPLICIT,
        undefined_sequence(0x00091010, element(0xFFFE0001, "", b"abcd")) + _PATIENT,
    ),
    "wanted values sent as sequences": (
        EXPLICIT,
        element(0x00100020, "SQ", _CODE)
        + undefined_sequence(0x00100010, _CODE)
        + element(0x00100030, "DA", b"20200101"),
    ),
    "a skip past 4 GiB": (
        EXPLICIT,
        element(0x00091010, "OB", b"", EXPLICIT, 0xFFFFFFFE) + bytes(99),
    ),
    "encapsulated Pixel Data in a native syntax": (
        EXPLICIT,
        _PATIENT + encapsulated(b"\xff\xd8\xff\xd9"),
    ),
    "native Pixel Data in an encapsulated syntax": (
        JPEG_BASELINE,
        _PATIENT + element(0x7FE00010, "OB", b"\xff\xd8\xff\xd9"),
    ),
}


@needs_native
@pytest.mark.parametrize("name", FIXED_CASES)
def test_fixed_cases(name: str) -> None:
    ts, data = FIXED_CASES[name]
    wires = [ts, DEFLATED] if ts == EXPLICIT else [ts]
    for wire in wires:
        raw = deflate(data) if wire == DEFLATED else data
        for points in ([], list(range(len(raw))), [5, 9, 13, 100, 101], [len(raw) // 2]):
            assert_twins(wire, cut(raw, points))


@needs_native
@pytest.mark.parametrize("shape", ["H", "2-D"])
def test_a_view_of_wider_items_is_read_as_its_bytes(shape: str) -> None:
    """The C walk read a memoryview's bytes, the twin counted and cut its items
    (or rows): both now read the bytes."""
    data = minimal(EXPLICIT)
    view = (
        memoryview(data).cast("H")
        if shape == "H"
        else memoryview(data).cast("B", (2, len(data) // 2))
    )
    for walk in (_native.header_walk, HeaderReader._parse):
        with walking(walk):
            reader = HeaderReader(EXPLICIT)
            reader.feed(view)
            assert reader.finish() == read(EXPLICIT, [data])


def test_a_state_no_walk_leaves_is_refused_not_read() -> None:
    # The C walk reads headers out of _buf and gathers values up to _want: a reader
    # whose state was tampered with is refused before a byte is read.
    assert _native is not None
    for buf, want in (
        (b"\x10\x00\x20\x00LO\x02\x00" + bytes(40), 0),
        (bytes(12), 0),
        (bytes(5), 4),
    ):
        reader = HeaderReader(EXPLICIT)
        reader._buf.extend(buf)
        reader._want = want
        with pytest.raises(ValueError, match="not a state a walk leaves"):
            _native.header_walk(reader, memoryview(bytes(16)))
    reader = HeaderReader(EXPLICIT)
    reader._buf.extend(b"\x10\x00\x20\x00LO\x02\x00xx")  # a short-VR header and two bytes
    with pytest.raises(ValueError, match="not a state a walk leaves"):
        _native.header_walk(reader, memoryview(bytes(16)))
