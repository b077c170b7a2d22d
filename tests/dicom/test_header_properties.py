"""Property and fuzz tests of the header extractor and the character-set decoder.

Every data set is fed to its end (the reader walks element headers to the end of the
data set, Pixel Data included), and:

- Streaming: any split of the bytes gives the same outcome as one feed (the same
  attributes, or the same error).
- Truncation: a prefix of a whole data set (not Deflated) that ends at the end of a
  top-level element is itself a data set, and gives the attributes of the whole from
  the elements it holds, the others absent. Any other prefix gives HeaderError C000
  "data set truncated after its header" when it holds the tag of a top-level element
  past (0028,0011), else "... in its header". A prefix of a Deflated stream that
  stops short of the end of the deflate stream gives one of the two; one that holds
  it gives the whole (bytes past the end of the stream are ignored).
- Appended bytes: once the reader is done, bytes after a whole data set give the same
  attributes (when they happen to be well-formed elements) or HeaderError C000; never
  other attributes.
- Fuzz: random and mutated data sets give InstanceAttributes or HeaderError, nothing
  else.
- Character sets: text encoded by pydicom decodes back to itself.
"""

from __future__ import annotations

import io
import itertools
import struct
import warnings
import zlib
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import msgspec
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.charset import convert_encodings, encode_string
from pydicom.filereader import data_element_generator

from archive.dicom.charset import (
    TEXT_DELIMITERS,
    decode_person_name,
    decode_text,
    python_codecs,
)
from archive.dicom.header import HeaderError, HeaderReader, InstanceAttributes
from tests.dicom.header_helpers import (
    AFTER,
    BIG,
    DEFLATED,
    EXPLICIT,
    FIELD_TAGS,
    IMPLICIT,
    IN,
    JPEG_BASELINE,
    NATIVE,
    deflate,
    element,
    encapsulated,
    encode,
    item,
    minimal,
    sample_path,
    split_file,
    trailing_padding,
    undefined_sequence,
)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LAST_WANTED = 0x0040A504  # Content Template Sequence

Outcome = InstanceAttributes | tuple[int, str]


class Sample(NamedTuple):
    name: str
    ts: str
    data: bytes
    #: (tag, start, end) of each top-level element, by pydicom; None for Deflated.
    elements: list[tuple[int, int, int]] | None


def top_level_elements(ts: str, data: bytes) -> list[tuple[int, int, int]]:
    """Where pydicom finds each top-level element of a whole data set."""
    fp = io.BytesIO(data)
    out, start = [], 0
    for elem in data_element_generator(fp, ts == IMPLICIT, ts != BIG):
        out.append((int(elem.tag), start, fp.tell()))
        start = fp.tell()
    assert start == len(data)  # pydicom does not notice truncation: the corpus is whole
    return out


def _sample(name: str, ts: str, data: bytes) -> Sample:
    return Sample(name, ts, data, None if ts == DEFLATED else top_level_elements(ts, data))


def _corpus() -> list[Sample]:
    out = []
    for name in [
        "CT_small.dcm",  # Pixel Data, then Data Set Trailing Padding
        "MR_small_bigendian.dcm",
        "UN_sequence.dcm",  # one UN of undefined length, past the header
        "JPEG2000.dcm",  # encapsulated Pixel Data
        "image_dfl.dcm",
    ]:
        ts, data = split_file(sample_path(name))
        out.append(_sample(name, ts, data))
    for name in ["rtplan.dcm", "chrH32.dcm", "chrI2.dcm"]:
        for ts in NATIVE:
            out.append(_sample(f"{name}/{ts}", ts, encode(pydicom.dcmread(sample_path(name)), ts)))
    # Encapsulated Pixel Data only where a syntax has it (JPEG: Explicit VR LE).
    for ts, wire in ((IMPLICIT, IMPLICIT), (JPEG_BASELINE, EXPLICIT)):
        nested = undefined_sequence(
            0x00081115,
            item(undefined_sequence(0x0008114A, item(b"", wire, undefined=True), wire), wire, True),
            wire,
        )
        if ts == JPEG_BASELINE:
            pixels = encapsulated(b"\xff\xd8" + bytes(40), b"\xfe\xff\xdd\xe0" * 4, ts=wire)
        else:
            pixels = element(0x7FE00010, "OW", b"\xfe\xff\xdd\xe0" * 4, wire)
        data = minimal(wire, nested, element(0x00100010, "PN", b"A^B", wire), pixels=pixels)
        out.append(_sample(f"nested/{ts}", ts, data + trailing_padding(4, wire)))
    return out


CORPUS = _corpus()
samples = st.sampled_from(CORPUS)


def outcome(ts: str, pieces: list[bytes]) -> Outcome:
    """The attributes, or (status, message) of the HeaderError; nothing else may escape.

    Every piece is fed, to the end of the data set, as the C-STORE handler does.
    """
    try:
        reader = HeaderReader(ts)
        for piece in pieces:
            reader.feed(memoryview(piece))
        return reader.finish()
    except HeaderError as exc:
        return exc.status, str(exc)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({min(p, len(data)) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@SETTINGS
@given(sample=samples, points=st.lists(st.integers(min_value=0, max_value=40_000), max_size=40))
def test_any_split_gives_the_same_result(sample: Sample, points: list[int]) -> None:
    whole = outcome(sample.ts, [sample.data])
    assert isinstance(whole, InstanceAttributes)
    assert outcome(sample.ts, cut(sample.data, points)) == whole


def _prefix_outcome(sample: Sample, whole: InstanceAttributes, end: int) -> Outcome:
    """What the property in the module docstring says a prefix of ``end`` bytes gives."""
    elements = sample.elements
    if elements is None:
        raise AssertionError("Deflated: see the test")
    if end == 0 or any(stop == end for _, _, stop in elements):
        held = {tag for tag, _, stop in elements if stop <= end}
        absent = InstanceAttributes()
        return msgspec.structs.replace(
            whole,
            **{name: getattr(absent, name) for name, tag in FIELD_TAGS.items() if tag not in held},
        )
    past = any(tag > LAST_WANTED and start + 8 <= end for tag, start, _ in elements)
    return 0xC000, AFTER if past else IN


@SETTINGS
@given(sample=samples, data=st.data())
def test_a_prefix_gives_a_subset_at_an_element_end_else_an_error(
    sample: Sample, data: st.DataObject
) -> None:
    whole = outcome(sample.ts, [sample.data])
    assert isinstance(whole, InstanceAttributes)
    if sample.elements is None:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        inflater.decompress(sample.data)
        stream_end = len(sample.data) - len(inflater.unused_data)
        end = data.draw(st.integers(min_value=0, max_value=len(sample.data)))
        got = outcome(sample.ts, [sample.data[:end]])
        if end >= stream_end:
            assert got == whole
        else:
            assert got in ((0xC000, IN), (0xC000, AFTER))
        return
    # A third of the ends anywhere, a third at the start of a top-level element, a
    # third one byte before one.
    starts = [start for _, start, _ in sample.elements] + [len(sample.data)]
    end = data.draw(
        st.one_of(
            st.integers(min_value=0, max_value=len(sample.data)),
            st.sampled_from(starts),
            st.sampled_from(starts).map(lambda s: max(0, s - 1)),
        )
    )
    prefix = sample.data[:end]
    want = _prefix_outcome(sample, whole, end)
    assert outcome(sample.ts, [prefix]) == want
    assert outcome(sample.ts, cut(prefix, [end // 3, end // 2])) == want


def test_prefix_oracle_sees_both_errors_and_subsets() -> None:
    # The property above is not vacuous: on CT_small.dcm it predicts each outcome,
    # and the reader agrees at those ends.
    sample = CORPUS[0]
    whole = outcome(sample.ts, [sample.data])
    assert isinstance(whole, InstanceAttributes)
    assert sample.elements is not None
    first_end = sample.elements[0][2]
    past = next(start for tag, start, _ in sample.elements if tag > LAST_WANTED)
    pixels = next(start for tag, start, _ in sample.elements if tag == 0x7FE00010)
    cases: list[tuple[int, Outcome]] = [
        (0, InstanceAttributes()),
        (first_end, InstanceAttributes(specific_character_set="ISO_IR 100")),
        (first_end + 1, (0xC000, IN)),
        (past, whole),
        (past + 7, (0xC000, IN)),
        (past + 8, (0xC000, AFTER)),
        (pixels, whole),
        (pixels + 20, (0xC000, AFTER)),
        (len(sample.data) - 1, (0xC000, AFTER)),
        (len(sample.data), whole),
    ]
    for end, want in cases:
        assert _prefix_outcome(sample, whole, end) == want, end
        assert outcome(sample.ts, [sample.data[:end]]) == want, end


_LEAF = st.binary(max_size=6).map(lambda b: b.replace(b"\\", b"x"))


def _sequence(ts: str, items: list[bytes], undefined: bool, undefined_items: bool) -> bytes:
    value = b"".join(item(each, ts, undefined_items) for each in items)
    if undefined:
        return undefined_sequence(0x00081115, value, ts)
    return element(0x00081115, "SQ", value, ts)


def _items(ts: str, depth: int) -> st.SearchStrategy[bytes]:
    """The content of an item: names (not top-level: never read) and sequences."""
    leaf = _LEAF.map(lambda v: element(0x00100010, "PN", v, ts))
    if depth == 0:
        return st.lists(leaf, max_size=2).map(b"".join)
    inner = st.lists(_items(ts, depth - 1), max_size=2)
    sequence = st.builds(partial(_sequence, ts), inner, st.booleans(), st.booleans())
    return st.lists(st.one_of(leaf, sequence), max_size=2).map(b"".join)


@st.composite
def data_sets(draw: st.DrawFn) -> tuple[str, bytes, InstanceAttributes]:
    """A whole data set of random structure: sequences nested, defined and undefined
    lengths, a UN of undefined length, elements past the header, native or
    encapsulated Pixel Data, trailing padding; with the attributes it holds."""
    ts = draw(st.sampled_from([IMPLICIT, EXPLICIT, BIG]))
    patient_id = draw(st.sampled_from(["", "P1", "ABCD"]))
    parts = [element(0x00080016, "UI", b"1.2.3\0", ts)]
    if draw(st.booleans()):
        body = item(draw(_items(ts, 2)), ts, draw(st.booleans()))
        defined = draw(st.booleans())
        parts.append(
            element(0x00081140, "SQ", body, ts)
            if defined
            else undefined_sequence(0x00081140, body, ts)
        )
    if ts == EXPLICIT and draw(st.booleans()):  # pydicom reads it as BE in BE (sic)
        body = item(draw(_items(IMPLICIT, 1)), IMPLICIT, undefined=True)
        un = undefined_sequence(0x00091010, body, IMPLICIT)
        parts.append(element(0x00091010, "UN", b"", ts, 0xFFFFFFFF) + un[8:])
    parts.append(element(0x00100020, "LO", patient_id.encode(), ts))
    parts.append(element(0x0020000D, "UI", b"1.2\0", ts))
    rows = draw(st.sampled_from([None, 7]))
    if rows is not None:
        parts.append(element(0x00280010, "US", struct.pack(">H" if ts == BIG else "<H", rows), ts))
    if draw(st.booleans()):
        parts.append(element(0x00291010, "OB", bytes(draw(st.integers(0, 40))), ts))
    if draw(st.booleans()):
        parts.append(undefined_sequence(0x00400275, item(draw(_items(ts, 2)), ts, True), ts))
    pixels = draw(st.sampled_from(["none", "native", "encapsulated"]))
    if pixels == "native":
        parts.append(element(0x7FE00010, "OW", bytes(2 * draw(st.integers(0, 30))), ts))
    elif pixels == "encapsulated" and ts == EXPLICIT:
        # Only an encapsulated syntax has it (PS3.5 A.4), and all are Explicit VR LE.
        fragments = draw(st.lists(st.binary(max_size=20).map(lambda f: f + bytes(len(f) % 2))))
        parts.append(encapsulated(*fragments, ts=ts))
        ts = JPEG_BASELINE
    if draw(st.booleans()):
        parts.append(trailing_padding(2 * draw(st.integers(0, 5)), ts))
    attributes = InstanceAttributes(
        sop_class_uid="1.2.3", patient_id=patient_id, study_instance_uid="1.2", rows=rows
    )
    return ts, b"".join(parts), attributes


@settings(SETTINGS, max_examples=150)
@given(generated=data_sets(), data=st.data())
def test_generated_data_sets_whole_byte_by_byte_and_prefixes(
    generated: tuple[str, bytes, InstanceAttributes], data: st.DataObject
) -> None:
    ts, raw, attributes = generated
    whole = outcome(ts, [raw])
    assert whole == attributes
    assert outcome(ts, [raw[i : i + 1] for i in range(len(raw))]) == whole
    if ts == EXPLICIT:
        assert outcome(DEFLATED, [deflate(raw)]) == whole
    sample = Sample("generated", ts, raw, top_level_elements(ts, raw))
    end = data.draw(st.integers(min_value=0, max_value=len(raw)))
    assert outcome(ts, [raw[:end]]) == _prefix_outcome(sample, whole, end)


@SETTINGS
@given(
    sample=st.sampled_from([s for s in CORPUS if s.ts != DEFLATED]),
    tail=st.binary(min_size=1, max_size=64),
)
def test_bytes_after_a_whole_data_set_never_change_the_attributes(
    sample: Sample, tail: bytes
) -> None:
    reader = HeaderReader(sample.ts)
    assert reader.feed(sample.data)  # every sample goes past (0028,0011)
    whole = reader.finish()
    got = outcome(sample.ts, [sample.data + tail])
    assert got == whole or (isinstance(got, tuple) and got[0] == 0xC000)
    if len(tail) < 8:  # too short for any element header
        assert got == (0xC000, AFTER)


#: A transfer syntax, random bytes and points to split them at (the twin test's too).
RANDOM_BYTES = {
    "ts": st.sampled_from([*NATIVE, "1.2.840.10008.1.2.4.50"]),
    "blob": st.binary(max_size=600),
    "points": st.lists(st.integers(min_value=0, max_value=600), max_size=8),
}


@SETTINGS
@given(**RANDOM_BYTES)
def test_random_bytes(ts: str, blob: bytes, points: list[int]) -> None:
    whole = outcome(ts, [blob])
    if isinstance(whole, tuple):
        assert whole[0] == 0xC000
    assert outcome(ts, cut(blob, points)) == whole


@SETTINGS
@given(
    ts=st.sampled_from([IMPLICIT, EXPLICIT]),
    fields=st.lists(
        st.tuples(
            st.sampled_from(
                [0x00080005, 0x00080018, 0x00100010, 0x00091010, 0xFFFEE000, 0xFFFEE0DD]
            ),
            st.sampled_from(["UI", "PN", "SQ", "UN", "OB", "US", "IS"]),
            st.binary(max_size=20),
            st.sampled_from([None, 0xFFFFFFFF, 0, 3, 70_000]),
        ),
        max_size=12,
    ),
)
def test_random_element_streams(ts: str, fields: list[tuple[int, str, bytes, int | None]]) -> None:
    data = b"".join(element(tag, vr, value, ts, length) for tag, vr, value, length in fields)
    whole = outcome(ts, [data])
    if isinstance(whole, tuple):
        assert whole[0] == 0xC000
    assert outcome(ts, [data[i : i + 1] for i in range(len(data))]) == whole


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, byte in edits:
        at = where % (len(out) + 1)
        if kind == 0 and at < len(out):
            out[at] = byte
        elif kind == 1:
            out.insert(at, byte)
        elif at < len(out):
            del out[at]
    return bytes(out)


#: Edits for :func:`_mutate`: (replace, insert or delete; where; byte).
edit_lists = st.lists(
    st.tuples(
        st.integers(0, 2),
        # Half the edits in the first 2 KiB (the header part of most samples),
        # half anywhere (Pixel Data, sequences, padding, the end).
        st.one_of(st.integers(0, 2048), st.integers(0, 2**20)),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=6,
)


#: A sample, edits to it and points to split it at (the native twin test's too).
MUTATIONS = {
    "sample": samples,
    "edits": edit_lists,
    "points": st.lists(st.integers(min_value=0, max_value=40_000), max_size=6),
}


@SETTINGS
@given(**MUTATIONS)
def test_mutated_data_sets(
    sample: Sample, edits: list[tuple[int, int, int]], points: list[int]
) -> None:
    ts, data = sample.ts, sample.data
    mutated = _mutate(data, edits)
    whole = outcome(ts, [mutated])
    if isinstance(whole, tuple):
        assert whole[0] == 0xC000
    assert outcome(ts, cut(mutated, points)) == whole


@SETTINGS
@given(ts=st.sampled_from(NATIVE), blob=st.binary(max_size=300))
def test_garbage_after_a_valid_start(ts: str, blob: bytes) -> None:
    # Whatever follows a valid data set start, in any encoding, fails cleanly.
    wire = EXPLICIT if ts == DEFLATED else ts
    data = minimal(wire)[:40] + blob
    if ts == DEFLATED:
        data = deflate(data)
    got = outcome(ts, [data])
    assert isinstance(got, InstanceAttributes) or got[0] == 0xC000


# --- character sets -------------------------------------------------------------------

KANJI = "山田太郎予五什住修傷僚"
KANA = "やまだたろうヤマダ"
HANGUL = "홍길동김희중"
HANZI = "王小东東"
LATIN = "ÄÖÜäöüéèàçñ"
ASCII = "AZaz09 .-"

CASES: list[tuple[list[str], str]] = [
    (["", "ISO 2022 IR 87"], ASCII + KANJI + KANA),
    (["ISO 2022 IR 13", "ISO 2022 IR 87"], ASCII + KANJI + "ﾔﾏﾀﾞ"),
    (["", "ISO 2022 IR 149"], ASCII + HANGUL),
    (["ISO 2022 IR 100", "ISO 2022 IR 87"], ASCII + LATIN + KANJI),
    (["ISO_IR 192"], ASCII + KANJI + HANGUL + HANZI + LATIN),
    (["GB18030"], ASCII + HANZI + LATIN),
    (["GBK"], ASCII + HANZI),
    (["ISO_IR 100"], ASCII + LATIN),
]


def _encoder(terms: list[str]) -> Callable[[str], bytes]:
    encodings = convert_encodings(terms)

    def run(text: str) -> bytes:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return encode_string(text, encodings)

    return run


@SETTINGS
@given(data=st.data(), case=st.sampled_from(CASES))
def test_text_encoded_by_pydicom_decodes_back(
    data: st.DataObject, case: tuple[list[str], str]
) -> None:
    terms, alphabet = case
    text = data.draw(st.text(alphabet=alphabet, max_size=20))
    encoded = _encoder(terms)(text)
    assert decode_text(encoded, python_codecs(terms), TEXT_DELIMITERS) == text


@SETTINGS
@given(data=st.data(), case=st.sampled_from(CASES))
def test_person_names_encoded_group_by_group_decode_back(
    data: st.DataObject, case: tuple[list[str], str]
) -> None:
    terms, alphabet = case
    word = st.text(alphabet=alphabet.replace(" ", ""), min_size=1, max_size=6)
    groups = data.draw(st.lists(st.lists(word, min_size=1, max_size=3), min_size=1, max_size=3))
    encode_group = _encoder(terms)
    # Each component ends in the initial set, as PS3.5 6.1.2.5.3 asks of encoders.
    raw = b"=".join(b"^".join(encode_group(c) for c in group) for group in groups)
    name = "=".join("^".join(group) for group in groups)
    assert decode_person_name(raw, python_codecs(terms)) == name


@SETTINGS
@given(
    terms=st.lists(
        st.sampled_from(
            [
                "",
                "ISO_IR 100",
                "ISO 2022 IR 87",
                "ISO 2022 IR 149",
                "ISO 2022 IR 58",
                "ISO_IR 192",
                "GBK",
                "ISO 2022 IR 159",
                "ISO 2022 IR 13",
                "bogus",
            ]
        ),
        max_size=4,
    ),
    value=st.binary(max_size=64),
    escapes=st.lists(
        st.sampled_from(
            [
                b"\x1b$B",
                b"\x1b(B",
                b"\x1b$)C",
                b"\x1b$(D",
                b"\x1b)I",
                b"\x1b-A",
                b"\x1b$)A",
                b"\x1b",
            ]
        ),
        max_size=4,
    ),
)
def test_decoding_never_fails(terms: list[str], value: bytes, escapes: list[bytes]) -> None:
    raw = value + b"".join(escapes) + value
    codecs = python_codecs(terms)
    assert isinstance(decode_text(raw, codecs, TEXT_DELIMITERS), str)
    assert isinstance(decode_person_name(raw, codecs), str)


@pytest.mark.parametrize("terms", [[""], ["ISO_IR 100"], ["ISO_IR 192"], ["GB18030"]])
def test_values_without_escapes_decode_with_value_one(terms: list[str]) -> None:
    raw = bytes(range(32, 256))
    codec = python_codecs(terms)[0]
    assert decode_text(raw, python_codecs(terms), TEXT_DELIMITERS) == raw.decode(codec, "replace")


def test_corpus_is_whole_and_read_as_pydicom_reads() -> None:
    # The property tests compare splits and prefixes with the whole; this anchors it.
    assert all(FIELD_TAGS.values())
    assert len(FIELD_TAGS) == len(InstanceAttributes.__struct_fields__)
    for sample in CORPUS:
        assert isinstance(outcome(sample.ts, [sample.data]), InstanceAttributes), sample.name
    ct = CORPUS[0]
    assert ct.name == "CT_small.dcm"
    got = outcome(ct.ts, [ct.data])
    assert isinstance(got, InstanceAttributes)
    assert msgspec.structs.asdict(got)["rows"] == 128
    assert ct.elements is not None
    assert [tag for tag, _, _ in ct.elements[-2:]] == [0x7FE00010, 0xFFFCFFFC]
