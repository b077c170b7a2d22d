"""Unit tests of the streaming header extractor, with pydicom as the oracle.

Data sets come from pydicom's test files (file meta stripped, as a C-STORE carries
them) or are re-encoded with pydicom in each transfer syntax, or are built byte by
byte with :func:`element` where pydicom cannot write what we need.

Every data set is fed to its end, as the C-STORE handler does: values are read only
until the reader is done, but element headers are walked to the end so that a data
set cut short anywhere (Pixel Data included) fails in ``finish()``; a Deflated one
is not inflated past its header (``test_header_deflate``).

This module: exact values from pydicom's files, sequences, value decoding,
``check_store_request`` and the character set decoder. When the reader is done and
where a data set ends are tested in ``test_header_end``; pydicom's whole corpus and
the memory bounds in ``test_header_corpus``; the builders live in ``header_helpers``.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from archive.dicom.charset import (
    PN_DELIMITERS,
    TEXT_DELIMITERS,
    decode_person_name,
    decode_text,
    normal_term,
    python_codecs,
)
from archive.dicom.header import (
    HeaderError,
    InstanceAttributes,
)
from archive.dicom.store_request import check_store_request
from tests.dicom.header_helpers import (
    BIG,
    CANNOT_UNDERSTAND,
    DEFLATED,
    DOES_NOT_MATCH,
    EXPLICIT,
    IMPLICIT,
    NATIVE,
    UIDS,
    bytewise,
    deflate,
    element,
    encode,
    expected,
    item,
    minimal,
    read,
    sample_path,
    split_file,
    undefined_sequence,
)

ROOT = Path(__file__).resolve().parents[2]


# --- exact values of pydicom's files ----------------------------------------------------


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


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"2004.01.15", "20040115"),  # ACR-NEMA: indexed in the DICOM form
        (b"2004.01.15 ", "20040115"),
        (b"20040115", "20040115"),
        (b"2004.1.15 ", "2004.1.15"),  # not the ACR-NEMA form: as it is
        (b"2004.0a.15", "2004.0a.15"),
        ("2004.0\u00b2.15".encode("latin_1"), "2004.0\u00b2.15"),  # a digit to isdigit()
        (b"", ""),
    ],
)
def test_acr_nema_dates_are_indexed_in_the_dicom_form(raw: bytes, value: str) -> None:
    data = minimal(
        EXPLICIT,
        element(0x00080020, "DA", raw),
        element(0x00080021, "DA", raw),
        element(0x00080023, "DA", raw),
        element(0x00100030, "DA", raw),
    )
    got = read(EXPLICIT, [data])
    dates = (got.study_date, got.series_date, got.content_date, got.patient_birth_date)
    assert dates == (value,) * 4


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"10:15:30", "101530"),  # ACR-NEMA: indexed in the DICOM form (a review)
        (b"10:15:30.25 ", "101530.25"),
        (b"10:15", "1015"),
        (b"101530.25", "101530.25"),
        (b"10:1:30", "10:1:30"),  # not the ACR-NEMA form: as it is
        (b"10:15:30.1234567", "10:15:30.1234567"),
        (b"", ""),
    ],
)
def test_acr_nema_times_are_indexed_in_the_dicom_form(raw: bytes, value: str) -> None:
    data = minimal(
        EXPLICIT,
        element(0x00080030, "TM", raw),
        element(0x00080031, "TM", raw),
        element(0x00080033, "TM", raw),
    )
    got = read(EXPLICIT, [data])
    assert (got.study_time, got.series_time, got.content_time) == (value,) * 3


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


# --- check_store_request -------------------------------------------------------------


def _attrs(**changes: str) -> InstanceAttributes:
    return msgspec.structs.replace(InstanceAttributes(), **{**UIDS, **changes})


def test_check_store_request_accepts_a_match() -> None:
    check_store_request(_attrs(), UIDS["sop_class_uid"], UIDS["sop_instance_uid"])
    # UIDs as they come from a command set may keep their NUL padding.
    check_store_request(_attrs(), UIDS["sop_class_uid"], UIDS["sop_instance_uid"] + "\0")


@pytest.mark.parametrize(
    ("attrs", "status", "message", "offending"),
    [
        (
            _attrs(sop_class_uid="1.2.840.10008.5.1.4.1.1.2"),
            DOES_NOT_MATCH,
            "SOP Class UID (0008,0016) differs from the command's:"
            " '1.2.840.10008.5.1.4.1.1.2', command '1.2.840.10008.5.1.4.1.1.7'",
            0x00080016,
        ),
        # Without its SOP Class or Instance UID the data set cannot be told what it
        # is: C000, as DCMTK's storescp answers, not a mismatch.
        (
            _attrs(sop_class_uid=""),
            CANNOT_UNDERSTAND,
            "SOP Class UID (0008,0016) missing from the data set",
            0x00080016,
        ),
        (
            _attrs(sop_instance_uid=""),
            CANNOT_UNDERSTAND,
            "SOP Instance UID (0008,0018) missing from the data set",
            0x00080018,
        ),
        (
            _attrs(sop_class_uid="", sop_instance_uid="1.2.3.4.6"),
            CANNOT_UNDERSTAND,
            "SOP Class UID (0008,0016) missing from the data set",
            0x00080016,
        ),
        (
            _attrs(sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=""),
            CANNOT_UNDERSTAND,
            "SOP Instance UID (0008,0018) missing from the data set",
            0x00080018,
        ),
        (
            _attrs(sop_instance_uid="1.2.3.4.6"),
            DOES_NOT_MATCH,
            "SOP Instance UID (0008,0018) differs from the command's:"
            " '1.2.3.4.6', command '1.2.3.4.5'",
            0x00080018,
        ),
        (
            _attrs(study_instance_uid=""),
            DOES_NOT_MATCH,
            "Study Instance UID (0020,000D) missing from the data set",
            0x0020000D,
        ),
        (
            _attrs(series_instance_uid=""),
            DOES_NOT_MATCH,
            "Series Instance UID (0020,000E) missing from the data set",
            0x0020000E,
        ),
    ],
)
def test_check_store_request_failures(
    attrs: InstanceAttributes, status: int, message: str, offending: int
) -> None:
    with pytest.raises(HeaderError) as info:
        check_store_request(attrs, UIDS["sop_class_uid"], UIDS["sop_instance_uid"])
    assert info.value.status == status
    assert str(info.value) == message
    assert info.value.offending == offending
    # What is wrong fits the 64 characters of an Error Comment; the UIDs follow.
    assert len(message.split(":")[0]) <= 64
    assert info.value.code == "dicom.header"


def test_header_error_is_an_archive_error() -> None:
    from archive.errors import ArchiveError

    error = HeaderError("x")
    assert isinstance(error, ArchiveError)
    assert error.status == CANNOT_UNDERSTAND
    assert HeaderError("y", 0xA700).status == 0xA700


def test_status_errors_share_one_base() -> None:
    from archive.dicom.dataset import DatasetError
    from archive.dicom.dimse.status import Status
    from archive.dicom.errors import StatusError
    from archive.dicom.query import QueryError

    for cls, status, code in (
        (HeaderError, 0xC000, "dicom.header"),
        (DatasetError, 0xC000, "dicom.dataset"),
        (QueryError, 0xA900, "dicom.query"),
    ):
        error = cls("x")
        assert isinstance(error, StatusError)
        assert (type(error.status), error.status, error.code, str(error)) == (
            int,
            status,
            code,
            "x",
        )
        assert type(cls("y", Status.OUT_OF_RESOURCES).status) is int  # not the enum member


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


@pytest.mark.parametrize(
    ("term", "normal"),
    [
        ("ISO 2022 IR87", "ISO 2022 IR 87"),  # no separator: no digit lost
        ("ISO 2022 IR100", "ISO 2022 IR 100"),
        ("ISO_2022_IR_87", "ISO 2022 IR 87"),
        ("ISO-2022-IR-149", "ISO 2022 IR 149"),
        ("ISO 2022 IR 6", "ISO 2022 IR 6"),
        ("ISO IR 100", "ISO_IR 100"),
        ("ISO-IR 144", "ISO_IR 144"),
        ("  ISO_IR 192 ", "ISO_IR 192"),
        ("ISO 2022 GBK", "GBK"),  # pydicom reads these two so
        ("ISO 2022 58", "ISO 2022 IR 58"),
    ],
)
def test_misspelt_terms_are_normalised(term: str, normal: str) -> None:
    assert normal_term(term) == normal


@pytest.mark.parametrize("term", ["ISO 2022 GBK", "ISO 2022 58"])
def test_chinese_aliases_decode_as_pydicom_does(term: str) -> None:
    assert decode_person_name("王^小东".encode("gb2312"), python_codecs([term])) == "王^小东"


def test_an_alias_of_a_stand_alone_set_allows_no_code_extensions() -> None:
    # As GBK itself (PS3.5 6.1.2.5.4 d), and as the encoder plans it (a review).
    assert python_codecs(["ISO 2022 GBK", "ISO 2022 IR 87"]) == python_codecs(["GBK"])
    raw = b"\x1b$B;3ED\x1b(B"
    assert decode_text(raw, python_codecs(["ISO 2022 GBK", "ISO 2022 IR 87"]), TEXT_DELIMITERS) == (
        decode_text(raw, python_codecs(["GBK", "ISO 2022 IR 87"]), TEXT_DELIMITERS)
    )


def test_an_escape_the_decoder_does_not_take_inside_a_kanji_run_goes_to_the_codec() -> None:
    # ESC $ @ (JIS C 6226-1978) is no DICOM designation; Python's codec reads it,
    # as it did before spaces were split out of a run (a review).
    codecs = python_codecs(["", "ISO 2022 IR 87"])
    assert decode_text(b"\x1b$B;3ED\x1b$@B@O:\x1b(B", codecs, TEXT_DELIMITERS) == "山田太郎"
    # After a space, and first in the run, too (a review of the first fix).
    assert decode_text(b"\x1b$B;3ED \x1b$@B@O:\x1b(B", codecs, TEXT_DELIMITERS) == "山田 太郎"
    assert decode_text(b"\x1b$B\x1b$@B@O:\x1b(B", codecs, TEXT_DELIMITERS) == "太郎"


def test_pn_group_delimiter_inside_a_kanji_is_not_a_delimiter() -> None:
    # 予 is 4D 3D and 五 is 38 5E in JIS X 0208: bytes of '=' and '^' inside
    # characters. Splitting the raw bytes on them (as pydicom does) would garble them.
    value = b"Yo^Go=\x1b$BM=\x1b(B^\x1b$B8^\x1b(B"
    codecs = python_codecs(["", "ISO 2022 IR 87"])
    assert decode_person_name(value, codecs) == "Yo^Go=予^五"


@pytest.mark.parametrize("text", ["山田 太郎", "山田  太郎 ", " 山田", "山\t田"])
def test_a_space_inside_a_run_of_kanji_is_a_space(text: str) -> None:
    # 0x20 is SPACE whatever G0 holds (ISO 2022), and PS3.5 6.1.2.5.3 asks for
    # no return to value 1's set before it: Python's iso2022_jp codec refuses
    # it inside a JIS X 0208 run, and every pair after it came out misaligned.
    jis = {"山": b";3", "田": b"ED", "太": b"B@", "郎": b"O:"}
    raw = b"\x1b$B" + b"".join(jis.get(c, c.encode()) for c in text) + b"\x1b(B"
    codecs = python_codecs(["", "ISO 2022 IR 87"])
    assert decode_text(raw, codecs, TEXT_DELIMITERS) == text
    assert decode_person_name(raw + b"^X", codecs) == text.strip() + "^X"


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b"DOE^JOHN^^^", "DOE^JOHN"),
        (b"DOE^JOHN^^^ ", "DOE^JOHN"),  # a query value keeps its padding
        (b"DOE^JOHN==", "DOE^JOHN"),
        (b"DOE^^^^=X^^", "DOE=X"),
        (b"^^^=X", "=X"),
        (b"^^^^", ""),
        (b"A^^\\B^C^^ ", "A\\B^C"),  # each value of a multi-valued one
        (b"DOE^^A", "DOE^^A"),  # an empty middle component stays
        # Spaces around a component are insignificant (PS3.5 Table 6.2-1, CP-726):
        (b" DOE^JOHN", "DOE^JOHN"),
        (b"DOE ^ JOHN ^^", "DOE^JOHN"),
        (b"  DOE^JOHN = X ", "DOE^JOHN=X"),
        (b"A \\ B", "A\\B"),
        (b"VAN DYKE^MARY ANN ", "VAN DYKE^MARY ANN"),  # inside a component they stay
        (b" ^ ^ ", ""),
    ],
)
def test_pn_trailing_empty_components_and_groups_are_dropped(raw: bytes, name: str) -> None:
    """PS3.5 6.2.1.1: a sender may omit trailing empty components and groups, with
    their delimiters, so the forms with and without them index and match alike;
    and the spaces around each component are insignificant."""
    assert decode_person_name(raw, python_codecs([])) == name


def test_delimiter_resets_g1_to_the_initial_set() -> None:
    codecs = python_codecs(["", "ISO 2022 IR 149"])
    hong = "홍".encode("euc_kr")
    # G1 designated once: after ^ the initial state (ASCII, no G1) is back, so the
    # second run of high bytes is decoded as value 1 (Latin-1 here), PS3.5 6.1.2.5.3.
    value = b"\x1b$)C" + hong + b"^" + hong
    assert decode_text(value, codecs, PN_DELIMITERS) == "홍^" + hong.decode("latin_1")
    assert decode_text(value, codecs, TEXT_DELIMITERS) == "홍^홍"


def test_a_space_next_to_an_escape_sequence_is_dropped_as_any_other() -> None:
    """Leading and trailing spaces of SH and LO are insignificant (PS3.5 Table
    6.2-1), an escape sequence in front of them or behind them included: a query
    for the value without them must find it (query values are stripped too)."""
    hong = "홍길동".encode("euc_kr")
    leading = b"\x1b$)C " + hong + b" "  # as pydicom encodes " 홍길동"
    trailing = b"\x1b$)C" + hong + b" \x1b(B"
    code = element(0x00080100, "SH", b"C1") + element(0x00080104, "LO", leading)
    data = minimal(
        EXPLICIT,
        element(0x00080005, "CS", b"\\ISO 2022 IR 149"),
        element(0x00080050, "SH", trailing),
        element(0x00081030, "LO", leading),
        element(0x0008103E, "LO", trailing),
        element(0x00081032, "SQ", item(code)),
        element(0x00100020, "LO", leading),
    )
    got = read(EXPLICIT, [data])
    assert (got.accession_number, got.study_description) == ("홍길동", "홍길동")
    assert (got.series_description, got.patient_id) == ("홍길동", "홍길동")
    assert json.loads(got.procedure_code_sequence) == [{"CodeValue": "C1", "CodeMeaning": "홍길동"}]


def test_unknown_escape_sequence_is_kept_as_text() -> None:
    codecs = python_codecs(["", "ISO 2022 IR 100"])
    assert decode_text(b"a\x1b%Zb\x1b-A\xe9", codecs, TEXT_DELIMITERS) == "a\x1b%Zbé"


@pytest.mark.parametrize(
    "terms",
    [["ISO_IR 192"], ["GB18030"], ["GBK"], ["ISO_IR 192", "ISO 2022 IR 87"], ["ISO_IR 100"]],
)
def test_escape_sequences_are_text_where_code_extensions_are_not_allowed(
    terms: list[str],
) -> None:
    """A stand-alone set as value 1 (PS3.3 Table C.12-5), or one single-byte set of
    Table C.12-2, allows no code extensions: ESC is a byte of the text, not the start
    of a designation, and the value is decoded directly (as pydicom does)."""
    codecs = python_codecs(terms)
    value = b"Gr\xc3\xb6\x1b$BF|\x1b(B\xc3\xa9"  # ESC $ B would designate JIS X 0208
    assert decode_text(value, codecs, TEXT_DELIMITERS) == value.decode(codecs[0], "replace")
    assert decode_person_name(b"\x1b-Aa^b", codecs) == "\x1b-Aa^b"


def test_escape_sequences_are_honoured_where_code_extensions_are_allowed() -> None:
    value = b"\x1b$BF|\x1b(B"  # 日 in JIS X 0208
    assert decode_text(value, python_codecs(["", "ISO 2022 IR 87"]), TEXT_DELIMITERS) == "日"
    assert decode_text(value, python_codecs(["ISO 2022 IR 6"]), TEXT_DELIMITERS) == "日"
    # Without a Specific Character Set they are honoured too: a sender's ISO 2022
    # text missing its declaration.
    assert decode_text(value, python_codecs([]), TEXT_DELIMITERS) == "日"
    latin = b"\x1b-A\xe9"
    assert decode_text(latin, python_codecs(["ISO 2022 IR 100"]), TEXT_DELIMITERS) == "é"


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
