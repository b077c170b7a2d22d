"""Property and fuzz tests of the header extractor and the character-set decoder.

- Streaming: any split of the bytes gives the same outcome as one feed (the same
  attributes, or the same error).
- Truncation: a prefix gives HeaderError(C000) or attributes each of which is absent
  or equal to the full read; never a wrong value.
- Fuzz: random and mutated data sets give InstanceAttributes or HeaderError, nothing
  else.
- Character sets: text encoded by pydicom decodes back to itself.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable

import msgspec
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.charset import convert_encodings, encode_string

from archive.dicom.charset import (
    TEXT_DELIMITERS,
    decode_person_name,
    decode_text,
    python_codecs,
)
from archive.dicom.header import HeaderError, HeaderReader, InstanceAttributes
from tests.dicom.test_header import (
    DEFLATED,
    EXPLICIT,
    IMPLICIT,
    NATIVE,
    deflate,
    element,
    encode,
    item,
    minimal,
    sample_path,
    split_file,
    undefined_sequence,
)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Outcome = InstanceAttributes | tuple[int, str]


def _header_part(ts: str, data: bytes) -> bytes:
    """The bytes up to a little past the end of the header part (keeps tests fast)."""
    if ts == DEFLATED:
        return data
    reader = HeaderReader(ts)
    for end in range(256, len(data) + 256, 256):
        if reader.feed(data[end - 256 : end]):
            return data[: end + 64]
    return data


def _corpus() -> list[tuple[str, bytes]]:
    out = []
    for name in ["CT_small.dcm", "MR_small_bigendian.dcm", "UN_sequence.dcm", "image_dfl.dcm"]:
        ts, data = split_file(sample_path(name))
        out.append((ts, _header_part(ts, data)))
    for name in ["rtplan.dcm", "chrH32.dcm", "chrI2.dcm"]:
        for ts in NATIVE:
            data = encode(pydicom.dcmread(sample_path(name)), ts)
            out.append((ts, _header_part(ts, data)))
    for ts in (IMPLICIT, EXPLICIT):
        nested = undefined_sequence(
            0x00081115,
            item(undefined_sequence(0x0008114A, item(b"", ts, undefined=True), ts), ts, True),
            ts,
        )
        out.append((ts, minimal(ts, nested, element(0x00100010, "PN", b"A^B", ts))))
    return out


CORPUS = _corpus()
samples = st.sampled_from(CORPUS)


def outcome(ts: str, pieces: list[bytes]) -> Outcome:
    """The attributes, or (status, message) of the HeaderError; nothing else may escape."""
    try:
        reader = HeaderReader(ts)
        for piece in pieces:
            if reader.feed(memoryview(piece)):
                break
        return reader.finish()
    except HeaderError as exc:
        return exc.status, str(exc)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({min(p, len(data)) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@SETTINGS
@given(sample=samples, points=st.lists(st.integers(min_value=0, max_value=40_000), max_size=40))
def test_any_split_gives_the_same_result(sample: tuple[str, bytes], points: list[int]) -> None:
    ts, data = sample
    whole = outcome(ts, [data])
    assert isinstance(whole, InstanceAttributes)
    assert outcome(ts, cut(data, points)) == whole


@SETTINGS
@given(sample=samples, data=st.data())
def test_a_prefix_gives_an_error_or_a_subset(
    sample: tuple[str, bytes], data: st.DataObject
) -> None:
    ts, full = sample
    end = data.draw(st.integers(min_value=0, max_value=len(full)))
    whole = outcome(ts, [full])
    assert isinstance(whole, InstanceAttributes)
    got = outcome(ts, [full[:end]])
    if isinstance(got, tuple):
        assert got[0] == 0xC000
        return
    default = InstanceAttributes()
    for name in InstanceAttributes.__struct_fields__:
        value = getattr(got, name)
        if name == "specific_character_set" or value == getattr(default, name):
            continue
        assert value == getattr(whole, name), name


@SETTINGS
@given(
    ts=st.sampled_from([*NATIVE, "1.2.840.10008.1.2.4.50"]),
    blob=st.binary(max_size=600),
    points=st.lists(st.integers(min_value=0, max_value=600), max_size=8),
)
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


@SETTINGS
@given(
    sample=samples,
    edits=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 2**20), st.integers(0, 255)),
        min_size=1,
        max_size=6,
    ),
    points=st.lists(st.integers(min_value=0, max_value=40_000), max_size=6),
)
def test_mutated_data_sets(
    sample: tuple[str, bytes], edits: list[tuple[int, int, int]], points: list[int]
) -> None:
    ts, data = sample
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


def test_corpus_is_what_pydicom_reads() -> None:
    # The property tests compare splits with the whole; this anchors the whole.
    assert all(isinstance(outcome(ts, [data]), InstanceAttributes) for ts, data in CORPUS)
    ts, data = CORPUS[0]  # CT_small.dcm
    got = outcome(ts, [data])
    assert isinstance(got, InstanceAttributes)
    assert msgspec.structs.asdict(got)["rows"] == 128
