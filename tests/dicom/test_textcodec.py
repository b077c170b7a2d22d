# ruff: noqa: RUF001
"""archive.dicom.textcodec: PS3.5 example vectors, pydicom as an oracle, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.charset import convert_encodings, decode_bytes, encode_string
from pydicom.valuerep import PersonName

from archive.dicom.charset import (
    PN_DELIMITERS,
    TEXT_DELIMITERS,
    decode_text,
    python_codecs,
)
from archive.dicom.textcodec import (
    UnencodableError,
    can_encode,
    encode_value,
    response_character_set,
)

JIS = ["", "ISO 2022 IR 87"]
JIS_KATAKANA = ["ISO 2022 IR 13", "ISO 2022 IR 87"]
KOREAN = ["", "ISO 2022 IR 149"]
CHINESE = ["", "ISO 2022 IR 58"]


# ---- PS3.5 examples and hand-written vectors -----------------------------------------


@pytest.mark.parametrize(
    ("value", "terms", "expected"),
    [
        # PS3.5 H.3.1: Japanese in ISO 2022 IR 87, back to ASCII before ^ and = and at
        # the end of the value (6.1.2.5.3).
        (
            "Yamada^Tarou=山田^太郎=やまだ^たろう",
            JIS,
            b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
        ),
        # PS3.5 H.3.2: value 1 is ISO 2022 IR 13, so G0 returns to JIS X 0201 Romaji.
        (
            "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう",
            JIS_KATAKANA,
            b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J="
            b"\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J",
        ),
        # PS3.5 I.2: Korean, KS X 1001 designated to G1 again after every delimiter.
        (
            "Hong^Gildong=洪^吉洞=홍^길동",
            KOREAN,
            b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7="
            b"\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf",
        ),
        # Chinese, GB 2312 designated to G1 after every delimiter, in the form of
        # PS3.5 Example K.2-1 (its first Hanzi: ESC $ ) A D5 C5).
        (
            "Zhang^XiaoDong=张^小东=",
            CHINESE,
            b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=",
        ),
        # G1 switched from value 1's Latin-1 to Greek, and back before the end.
        ("é^α", ["ISO 2022 IR 100", "ISO 2022 IR 126"], b"\xe9^\x1b-F\xe1\x1b-A"),
        # ...and back before a component delimiter, so the next one needs no escape.
        ("α^é", ["ISO 2022 IR 100", "ISO 2022 IR 126"], b"\x1b-F\xe1\x1b-A^\xe9"),
        # JIS X 0212 (ISO 2022 IR 159) after JIS X 0208.
        ("丂山", ["", "ISO 2022 IR 87", "ISO 2022 IR 159"], b"\x1b$(D0!\x1b$B;3\x1b(B"),
        # Single-byte sets and the stand-alone multi-byte ones: no escapes at all.
        ("Müller^Jürgen", ["ISO_IR 100"], b"M\xfcller^J\xfcrgen"),
        ("Ωμέγα", ["ISO_IR 126"], b"\xd9\xec\xdd\xe3\xe1"),
        ("Иван", ["ISO_IR 144"], b"\xb8\xd2\xd0\xdd"),
        ("ﾔﾏﾀﾞ", ["ISO_IR 13"], b"\xd4\xcf\xc0\xde"),
        ("王小东", ["GB18030"], b"\xcd\xf5\xd0\xa1\xb6\xab"),
        ("Ŝ€", ["ISO_IR 192"], b"\xc5\x9c\xe2\x82\xac"),
        # Misspelt terms as found in the field read as the right ones.
        ("é", ["ISO IR 100"], b"\xe9"),
        ("山", ["", "ISO_2022_IR_87"], b"\x1b$B;3\x1b(B"),
    ],
)
def test_person_name_vectors(value: str, terms: list[str], expected: bytes) -> None:
    assert encode_value(value, "PN", terms) == expected
    codecs = python_codecs(terms)
    assert decode_text(expected, codecs, PN_DELIMITERS) == value


def test_multiple_values_return_to_ascii_before_each_backslash() -> None:
    assert encode_value("山田\\太郎", "LO", JIS) == b"\x1b$B;3ED\x1b(B\\\x1b$BB@O:\x1b(B"
    greek = ["ISO 2022 IR 100", "ISO 2022 IR 126"]
    assert encode_value("α\\α", "LO", greek) == b"\x1b-F\xe1\x1b-A\\\x1b-F\xe1\x1b-A"
    # In ST, LT and UT the backslash is text, not a delimiter: G1 stays Greek.
    assert encode_value("α\\α", "ST", greek) == b"\x1b-F\xe1\\\xe1\x1b-A"
    # Control characters end a code-extension scope too (PS3.5 6.1.2.5.3).
    assert encode_value("α\r\nα", "LT", greek) == b"\x1b-F\xe1\x1b-A\r\n\x1b-F\xe1\x1b-A"


def test_ascii_needs_no_escape_in_any_set() -> None:
    for terms in ([], ["ISO_IR 100"], JIS, JIS_KATAKANA, KOREAN, ["ISO_IR 192"], ["GBK"]):
        assert encode_value("DOE^JOHN", "PN", terms) == b"DOE^JOHN"
        assert encode_value("1.2.3", "UI", terms) == b"1.2.3"


@pytest.mark.parametrize(
    ("value", "vr", "terms", "message"),
    [
        ("é", "PN", [], "not in ascii"),
        ("é", "PN", ["ISO_IR 6"], "not in ascii"),
        ("α", "LO", ["ISO_IR 100"], "not in latin_1"),
        ("山", "LO", ["ISO_IR 13"], "JIS X 0201"),  # Shift JIS would take it: ISO_IR 13 not
        ("¥", "LO", ["ISO_IR 13"], "JIS X 0201"),  # Shift JIS writes it as a backslash
        ("東", "PN", CHINESE, "U\\+6771 is in none"),  # traditional: not in GB 2312
        ("é", "PN", ["ISO 2022 IR 6"], "U\\+00E9 is in none"),
        ("😀", "LO", ["GBK"], "not in gbk"),
        ("\ud800", "LO", ["ISO_IR 192"], "not in utf_8"),
        ("a\x1bb", "LO", ["ISO_IR 192"], "ESC"),
        ("a\x1b$Bb", "LO", JIS, "ESC"),
        ("é", "CS", ["ISO_IR 100"], "default repertoire"),
        ("20240101", "DA", ["KLINGON"], "unknown Specific Character Set term"),
        ("é", "LO", ["ISO_IR 100", "ISO 2022 IR 999"], "unknown"),
    ],
)
def test_unencodable(value: str, vr: str, terms: list[str], message: str) -> None:
    with pytest.raises(UnencodableError, match=message) as info:
        encode_value(value, vr, terms)
    assert info.value.code == "dicom.text.unencodable"


def test_stand_alone_sets_end_the_list() -> None:
    # PS3.5 6.1.2.5.4 d: nothing after ISO_IR 192 as value 1 applies; after value 1 it
    # is ignored, as the decoder does.
    assert encode_value("é", "LO", ["ISO_IR 192", "ISO 2022 IR 87"]) == b"\xc3\xa9"
    assert encode_value("é", "LO", ["ISO 2022 IR 100", "ISO_IR 192"]) == b"\xe9"
    with pytest.raises(UnencodableError):
        encode_value("山", "LO", ["ISO 2022 IR 100", "ISO_IR 192"])


def test_can_encode_and_response_character_set() -> None:
    assert can_encode(["DOE", "1.2"], [])
    assert not can_encode(["DOE", "Müller"], [])
    assert can_encode(["Müller"], ["ISO_IR 100"])
    assert can_encode(["Yamada^Tarou=山田^太郎"], JIS)
    assert not can_encode(["ﾔﾏﾀﾞ"], JIS)  # half-width katakana needs ISO 2022 IR 13
    assert response_character_set(["DOE^JOHN"], []) == ()
    assert response_character_set(["Müller"], ["ISO_IR 100"]) == ("ISO_IR 100",)
    assert response_character_set(iter(["Müller"]), []) == ("ISO_IR 192",)
    assert response_character_set(["山田"], ["ISO_IR 100"]) == ("ISO_IR 192",)
    assert response_character_set(["山田"], JIS) == ("", "ISO 2022 IR 87")
    assert response_character_set(["x"], ["KLINGON"]) == ("ISO_IR 192",)


# ---- pydicom as the oracle -----------------------------------------------------------

_ORACLE_CASES = [
    ("Buc^Jérôme", ["ISO_IR 100"]),
    ("Wałęsa^Lech", ["ISO_IR 101"]),
    ("Çelik^Ömer", ["ISO_IR 148"]),
    ("Διονυσιος", ["ISO_IR 126"]),
    ("Люкceмбypг", ["ISO_IR 144"]),
    ("قباني^لنزار", ["ISO_IR 127"]),
    ("שרון^דבורה", ["ISO_IR 138"]),
    ("ก^ข", ["ISO_IR 166"]),
    ("ﾔﾏﾀﾞ^ﾀﾛｳ", ["ISO_IR 13"]),
    # No trailing "=": pydicom drops empty trailing component groups.
    ("Wang^XiaoDong=王^小东", ["GB18030"]),
    ("Wang^XiaoDong=王^小東", ["GBK"]),
    ("Wang^XiaoDong=王^小东", ["ISO_IR 192"]),
    ("Yamada^Tarou=山田^太郎=やまだ^たろう", JIS),
    ("ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう", JIS_KATAKANA),
    ("Hong^Gildong=洪^吉洞=홍^길동", KOREAN),
]


@pytest.mark.parametrize(("value", "terms"), _ORACLE_CASES)
def test_person_names_agree_with_pydicom(value: str, terms: list[str]) -> None:
    encodings = convert_encodings(terms)
    ours = encode_value(value, "PN", terms)
    assert ours == PersonName(value).encode(encodings)
    assert decode_bytes(ours, encodings, {ord("^"), ord("=")}) == value


# pydicom cannot be the oracle for text (as opposed to PN) in two cases, so they are
# left out rather than skipped on every run: with code extensions (several terms)
# it splits runs differently, though both encodings are valid and decode alike;
# and its JIS X 0201 encoder (ISO_IR 13) refuses ASCII mixed with Katakana.
_TEXT_ORACLE_CASES = [
    (value, terms) for value, terms in _ORACLE_CASES if len(terms) == 1 and terms != ["ISO_IR 13"]
]


@pytest.mark.parametrize(("value", "terms"), _TEXT_ORACLE_CASES)
def test_text_agrees_with_pydicom(value: str, terms: list[str]) -> None:
    encodings = convert_encodings(terms)
    assert encode_value(value, "LO", terms) == encode_string(value, encodings)


def test_pydicom_writes_gb2312_without_its_escape() -> None:
    # Why the Chinese example is not among the oracle cases: pydicom 3.0 writes GB 2312
    # bytes in G1 without designating it, and reads ESC $ ) A back as text.
    encodings = convert_encodings(CHINESE)
    assert PersonName("Wang^XiaoDong=王^小东").encode(encodings) == (
        b"Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab"
    )
    assert encode_value("Wang^XiaoDong=王^小东", "PN", CHINESE) == (
        b"Wang^XiaoDong=\x1b$)A\xcd\xf5^\x1b$)A\xd0\xa1\xb6\xab"
    )


# ---- round trip through archive.dicom.charset ----------------------------------------

_ASCII = "".join(chr(c) for c in range(0x20, 0x7F))
#: Term lists and characters each can write (besides ASCII and the delimiters).
_OWN = {
    ("ISO_IR 100",): "éüßÆÿ",
    ("ISO_IR 101",): "łęąŹ",
    ("ISO_IR 109",): "ĥĝŭ",
    ("ISO_IR 110",): "āķņ",
    ("ISO_IR 144",): "жЯё",
    ("ISO_IR 127",): "عرب",
    ("ISO_IR 126",): "αβΩ",
    ("ISO_IR 138",): "שלום",
    ("ISO_IR 148",): "ğışÇ",
    ("ISO_IR 203",): "€Œš",
    ("ISO_IR 166",): "ไทย",
    ("ISO_IR 13",): "ｱｲｳﾔﾏﾀﾞ",
    ("ISO_IR 192",): "é山홍😀",
    ("GB18030",): "王小东😀",
    ("GBK",): "王小東",
    ("", "ISO 2022 IR 87"): "山田やまだ　",
    ("ISO 2022 IR 13", "ISO 2022 IR 87"): "ﾔﾏﾀﾞ山田",
    ("", "ISO 2022 IR 87", "ISO 2022 IR 159"): "山丂é",
    ("", "ISO 2022 IR 149"): "홍길동洪",
    ("", "ISO 2022 IR 58"): "王小东",
    ("ISO 2022 IR 100", "ISO 2022 IR 126", "ISO 2022 IR 144"): "éαж",
    ("ISO 2022 IR 6", "ISO 2022 IR 100", "ISO 2022 IR 87"): "é山",
}
_FOREIGN = "éαж山ﾔ홍王東😀"


@st.composite
def _text_in_a_set(draw: st.DrawFn) -> tuple[tuple[str, ...], str, str]:
    terms = draw(st.sampled_from(sorted(_OWN)))
    vr = draw(st.sampled_from(("PN", "LO", "SH", "ST", "LT", "UT", "UC")))
    extra = "\r\n\t" if vr in ("ST", "LT", "UT") else ""
    return terms, vr, draw(st.text(_ASCII + _OWN[terms] + extra, max_size=20))


def _decode(data: bytes, vr: str, terms: tuple[str, ...]) -> str:
    delimiters = PN_DELIMITERS if vr == "PN" else TEXT_DELIMITERS
    return decode_text(data, python_codecs(terms), delimiters)


@settings(max_examples=300, deadline=None)
@given(case=_text_in_a_set())
def test_round_trip_within_a_set(case: tuple[tuple[str, ...], str, str]) -> None:
    terms, vr, value = case
    assert can_encode([value], terms)
    assert _decode(encode_value(value, vr, terms), vr, terms) == value


@settings(max_examples=200, deadline=None)
@given(
    terms=st.sampled_from(sorted(_OWN)),
    value=st.text(_ASCII + _FOREIGN, max_size=12),
)
def test_mixed_text_round_trips_or_is_refused(terms: tuple[str, ...], value: str) -> None:
    try:
        data = encode_value(value, "PN", terms)
    except UnencodableError:
        assert not can_encode([value], terms)
        assert response_character_set([value], terms) == ("ISO_IR 192",)
        return
    assert _decode(data, "PN", terms) == value
    assert response_character_set([value], terms) == terms
