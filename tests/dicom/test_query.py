"""The C-FIND query model: identifier parsing, the matching rules of PS3.4 C.2.2.2,
and response identifiers (pydicom as the oracle of the encoded bytes)."""

from __future__ import annotations

import struct
from io import BytesIO
from typing import Any

import pydicom
import pytest
from pydicom.filereader import read_dataset

from archive.dicom.dataset import Element
from archive.dicom.dictionary import keyword_for_tag, tag_for_keyword, vr_of
from archive.dicom.query import (
    MatchKind,
    Query,
    QueryError,
    QueryModel,
    information_model,
    parse_identifier,
)
from archive.dicom.query_identifier import response_identifier
from archive.dicom.query_keys import KEYS, Level
from archive.dicom.query_match import matches

PR, SR = QueryModel.PATIENT_ROOT, QueryModel.STUDY_ROOT
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"


def identifier(level: str | None, *keys: tuple[str, Any]) -> list[Element]:
    """Elements of an identifier: (keyword, str | bytes | items) pairs, VR from the table."""
    elements = [] if level is None else [Element(0x00080052, "CS", level.encode())]
    for keyword, value in keys:
        tag = tag_for_keyword(keyword)
        assert tag is not None, keyword
        vr = KEYS[tag].vr if tag in KEYS else vr_of(tag)
        data = value.encode("utf-8") if isinstance(value, str) else value
        elements.append(Element(tag, vr, data))
    if any(isinstance(value, str) and not value.isascii() for _, value in keys):
        elements.append(Element(0x00080005, "CS", b"ISO_IR 192"))
    return elements


def query(level: str, *keys: tuple[str, Any], model: QueryModel = SR, **options: Any) -> Query:
    return parse_identifier(identifier(level, *keys), model, **options)


# -- SOP classes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        ("1.2.840.10008.5.1.4.1.2.1.1", (PR, "find")),
        ("1.2.840.10008.5.1.4.1.2.1.2", (PR, "move")),
        ("1.2.840.10008.5.1.4.1.2.1.3", (PR, "get")),
        ("1.2.840.10008.5.1.4.1.2.2.1", (SR, "find")),
        ("1.2.840.10008.5.1.4.1.2.2.2", (SR, "move")),
        ("1.2.840.10008.5.1.4.1.2.2.3", (SR, "get")),
        ("1.2.840.10008.5.1.4.1.2.3.1", None),  # Patient/Study Only: retired
        ("1.2.840.10008.1.1", None),
    ],
)
def test_information_model(uid: str, expected: object) -> None:
    assert information_model(uid) == expected


@pytest.mark.parametrize("tag", sorted(KEYS), ids=lambda tag: f"{tag:08X}")
def test_key_table_agrees_with_the_data_dictionary(tag: int) -> None:
    """A typo guard: each key's keyword and VR are those PS3.6 gives its tag."""
    info = KEYS[tag]
    assert (info.keyword, info.vr) == (keyword_for_tag(tag), vr_of(tag))


# -- identifier errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "keys", "model", "status", "options"),
    [
        # C.4.1.1.3.1: the Query/Retrieve Level shall be present.
        (None, [("PatientID", "P1")], SR, 0xA900, {}),
        ("WORLD", [], SR, 0xA900, {}),
        ("", [], SR, 0xA900, {}),
        ("PATIENT", [], SR, 0xA900, {}),  # no patient level in Study Root
        # A matching key below the level in a hierarchical query.
        ("STUDY", [("Modality", "CT")], SR, 0xA900, {}),
        ("PATIENT", [("StudyDate", "20240101")], PR, 0xA900, {}),
        # Values that cannot be matched.
        ("STUDY", [("StudyDate", "2024")], SR, 0xC000, {}),
        ("STUDY", [("StudyDate", "20240101-2025")], SR, 0xC000, {}),
        ("STUDY", [("StudyTime", "25h")], SR, 0xC000, {}),
        ("SERIES", [("SeriesNumber", "one")], SR, 0xC000, {}),
        # A retrieve must name the entities of its level.
        ("STUDY", [("PatientID", "P1")], SR, 0xA900, {"purpose": "retrieve"}),
        ("SERIES", [("StudyInstanceUID", "1.2")], SR, 0xA900, {"purpose": "retrieve"}),
    ],
)
def test_identifier_errors(
    level: str | None,
    keys: list[tuple[str, str]],
    model: QueryModel,
    status: int,
    options: dict[str, Any],
) -> None:
    with pytest.raises(QueryError) as caught:
        parse_identifier(identifier(level, *keys), model, **options)
    assert caught.value.status == status
    assert caught.value.code == "dicom.query"


def test_level_with_padding_and_empty_keys_below_it() -> None:
    q = query("STUDY ", ("Modality", ""), ("StudyInstanceUID", ""))
    assert q.level is Level.STUDY
    assert q.conditions == ()
    # The series key is returned empty: the study record holds no single modality.
    assert [(k.tag, k.attribute) for k in q.return_keys] == [
        (0x00080060, None),
        (0x0020000D, "StudyInstanceUID"),
    ]


def test_unsupported_keys_are_listed_for_pending_warning() -> None:
    items = ((Element(0x00081155, "UI", b"1.2.3"),),)
    q = query(
        "STUDY",
        ("NumberOfStudyRelatedInstances", "12"),  # computed: returned, not matched
        ("PatientComments", "x"),  # not held
        ("ReferencedPatientSequence", items),  # a sequence not held, with an item key
        ("ReferencedStudySequence", ()),  # universal sequence
    )
    assert q.conditions == ()
    assert sorted(q.unsupported) == [0x00081120, 0x00104000, 0x00201208]
    assert [k.vr for k in q.return_keys] == ["IS", "LT", "SQ", "SQ"]


def test_conditions_carry_kind_level_and_terms() -> None:
    q = query(
        "SERIES",
        ("PatientName", "SMITH*"),
        ("StudyInstanceUID", "1.2.3\\1.2.4"),
        ("StudyDate", "20240101-"),
        ("Modality", "CT"),
        ("SeriesInstanceUID", ""),
    )
    kinds = {c.keyword: (c.kind, c.level) for c in q.conditions}
    assert kinds == {
        "PatientName": (MatchKind.WILDCARD, Level.STUDY),  # Study Root: a study attribute
        "StudyInstanceUID": (MatchKind.LIST, Level.STUDY),
        "StudyDate": (MatchKind.RANGE, Level.STUDY),
        "Modality": (MatchKind.SINGLE, Level.SERIES),
    }
    dates = next(c for c in q.conditions if c.keyword == "StudyDate")
    assert (dates.terms[0].low, dates.terms[0].high) == ("20240101", "")


def test_character_set_decodes_values() -> None:
    elements = identifier("STUDY", ("PatientName", "M\xfcller*".encode("latin_1")))
    elements.append(Element(0x00080005, "CS", b"ISO_IR 100"))
    q = parse_identifier(elements, SR)
    assert q.character_set == ("ISO_IR 100",)
    assert q.conditions[0].terms[0].value == "Müller*"


def test_retrieve_keeps_unique_keys_only() -> None:
    q = query(
        "SERIES",
        ("PatientID", "P1"),  # not a unique key in Study Root
        ("StudyInstanceUID", "1.2.3"),
        ("SeriesInstanceUID", "1.2.3.4\\1.2.3.5"),
        ("Modality", "CT"),
        purpose="retrieve",
    )
    assert [(c.keyword, [t.value for t in c.terms]) for c in q.conditions] == [
        ("StudyInstanceUID", ["1.2.3"]),
        ("SeriesInstanceUID", ["1.2.3.4", "1.2.3.5"]),
    ]
    patient = query("PATIENT", ("PatientID", "P*"), model=PR, purpose="retrieve")
    assert patient.conditions[0].kind is MatchKind.SINGLE  # no wild cards in a retrieve


@pytest.mark.parametrize(
    ("level", "keys"),
    [
        ("STUDY", [("StudyInstanceUID", "*")]),
        ("STUDY", [("StudyInstanceUID", "1.2.3\\1.2.?")]),
        ("SERIES", [("StudyInstanceUID", "1.2.3"), ("SeriesInstanceUID", "1.2.3.*")]),
    ],
)
def test_a_wild_card_in_a_retrieves_uid_is_refused(level: str, keys: list[tuple[str, str]]) -> None:
    """PS3.4 C.4.2.2.1: a retrieve names a single UID or a list of them. Taken
    literally, a wild card matched nothing and the C-MOVE answered Success with no
    sub-operations; it is A900 now, as an empty UID is."""
    with pytest.raises(QueryError, match="wild card in UID key") as info:
        query(level, *keys, purpose="retrieve")
    assert info.value.status == 0xA900


# -- matching rules, PS3.4 C.2.2.2 ---------------------------------------------------

MATCHING = [
    # Single Value Matching, C.2.2.2.1: exact, case-sensitive, spaces insignificant.
    ("AccessionNumber", "ACC1", "ACC1", True),
    ("AccessionNumber", "  ACC1 ", "ACC1", True),
    ("AccessionNumber", "acc1", "ACC1", False),
    ("AccessionNumber", "ACC1", "ACC10", False),
    # PS3.4 C.2.2.1.2: a Required Key of zero length is unknown and matches any value;
    # an Optional Key of zero length matches only universal matching.
    ("AccessionNumber", "ACC1", "", True),
    ("StudyDescription", "HEAD", "", False),
    ("StudyDescription", "H*", "", False),
    ("PatientName", "Smith^John", "SMITH^JOHN", False),
    ("StudyInstanceUID", "1.2.3\x00", "1.2.3", True),
    # List of UID Matching, C.2.2.2.2.
    ("StudyInstanceUID", "1.2.3\\1.2.4", "1.2.4", True),
    ("StudyInstanceUID", "1.2.3\\1.2.4", "1.2.5", False),
    # Universal Matching, C.2.2.2.3, and "*", C.2.2.2.4 note 1.
    ("PatientName", "", "", True),
    ("PatientName", "*", "", True),
    ("PatientName", "**", "ANY", True),
    # Wild Card Matching, C.2.2.2.4.
    ("PatientName", "SMITH*", "SMITHSON^JOHN", True),
    ("PatientName", "SMITH*", "SMITH", True),
    ("PatientName", "SMITH*", "BLACKSMITH", False),
    ("PatientName", "*MITH*", "BLACKSMITH^J", True),
    ("PatientName", "SM?TH", "SMYTH", True),
    ("PatientName", "SM?TH", "SMIITH", False),
    ("PatientName", "SM?TH", "SMTH", False),
    ("PatientName", "?*", "", True),  # Required: unknown matches
    ("PatientName", "smith*", "SMITH^J", False),
    # Names are held without trailing empty components (PS3.5 6.2.1.1): a key that
    # has them matches without them, and a wild card component after the last
    # caret may match an absent one. Stored "DOE" may have been sent as "DOE^".
    ("PatientName", "DOE^JOHN^^^", "DOE^JOHN", True),
    # Spaces around components are insignificant (PS3.5 Table 6.2-1): held without.
    ("PatientName", " DOE ^ JOHN", "DOE^JOHN", True),
    ("PatientName", "DOE ^J*", "DOE^JOHN", True),
    ("PatientName", "DOE^*", "DOE", True),
    ("PatientName", "DOE^*", "DOEX", False),
    ("PatientName", "DOE^*^*", "DOE^JOHN", True),
    ("PatientName", "ROE^JANE^*", "ROE^JANE", True),
    ("PatientName", "POE^JO=*", "POE^JO", True),
    ("PatientName", "DOE^?", "DOE", False),
    ("PatientName", "DOE^J*", "DOE", False),
    ("StudyDescription", "A[B*", "A[BC", True),  # "[" is no class, in DICOM
    ("StudyDescription", "A[B*", "AB", False),
    ("StudyDescription", "*.*", "CT.HEAD", True),
    ("StudyDescription", "*.*", "CTXHEAD", False),
    ("StudyDescription", "CT\\MR*", "MRI", True),
    # Range Matching of DA, C.2.2.2.5.1 (and its combined-datetime note's dates).
    ("StudyDate", "20060705-20060707", "20060704", False),
    ("StudyDate", "20060705-20060707", "20060705", True),
    ("StudyDate", "20060705-20060707", "20060707", True),
    ("StudyDate", "20060705-20060707", "20060708", False),
    ("StudyDate", "-20060707", "19991231", True),
    ("StudyDate", "-20060707", "20060708", False),
    ("StudyDate", "-20060707", "", True),  # Required: unknown matches
    ("StudyDate", "20060705-", "20250101", True),
    ("StudyDate", "20060705-", "20060704", False),
    ("StudyDate", "20060705", "20060705", True),
    ("StudyDate", "2006.07.05", "20060705", True),  # ACR-NEMA form
    ("StudyDate", "-", "20060705", True),
    ("StudyDate", "20060701-20060702\\20060705", "20060705", True),
    # Range Matching of TM, C.2.2.2.5.2; partial times by meaning.
    ("StudyTime", "1000-1800", "095959", False),
    ("StudyTime", "1000-1800", "1000", True),
    ("StudyTime", "1000-1800", "100000", True),
    ("StudyTime", "1000-1800", "180059.999", True),
    ("StudyTime", "1000-1800", "180100", False),
    ("StudyTime", "10-10", "105959.999999", True),
    ("StudyTime", "-0800", "075959", True),
    ("StudyTime", "-0800", "080100", False),
    ("StudyTime", "1030-", "103000.5", True),
    ("StudyTime", "10:00-18:00", "120000", True),  # ACR-NEMA separators
    ("StudyTime", "103000.5-103000.6", "103000.55", True),
    ("StudyTime", "103000.5-103000.6", "103000.7", False),
    # A stored partial or ACR-NEMA time is its earliest reading (10:15 is 101500).
    ("StudyTime", "101500-101600", "1015", True),
    ("StudyTime", "101500", "1015", True),
    ("StudyTime", "101500-", "10", False),
    ("StudyTime", "100000-101600", "10", True),
    ("StudyTime", "101530", "10:15:30", True),
    ("StudyTime", "-1014", "1015", False),
    # C.2.2.2.1.3 note 1: TM "2230" matches "223000".
    ("StudyTime", "2230", "223000", True),
    ("StudyTime", "2230", "223100", False),
    # Integer keys.
    ("SeriesNumber", "3", 3, True),
    ("SeriesNumber", " 003 ", 3, True),
    ("SeriesNumber", "3", 4, False),
    ("SeriesNumber", "3", None, True),  # Required: unknown matches
    ("PatientBirthDate", "19700101", "", False),  # Optional: it does not
    ("SeriesNumber", "3\\4", 4, True),
    ("Rows", "512", 512, True),
    # Multiple values, C.2.2.3: any value of the record may match.
    ("ModalitiesInStudy", "CT", "CT\\MR", True),
    ("ModalitiesInStudy", "MR", "CT\\MR", True),
    ("ModalitiesInStudy", "US", "CT\\MR", False),
    ("ModalitiesInStudy", "US\\MR", "CT\\MR", True),
    ("ModalitiesInStudy", "M?", "CT\\MR", True),
    ("ModalitiesInStudy", "CT", "", False),
]


@pytest.mark.parametrize(("keyword", "key", "value", "expected"), MATCHING)
def test_matching(keyword: str, key: str, value: object, expected: bool) -> None:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    level = {"SERIES": "SERIES", "IMAGE": "IMAGE"}.get(KEYS[tag].level.value, "STUDY")
    q = query(level, (keyword, key))
    assert matches(q, {keyword: value}) is expected


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("smith*", "SMITH^JOHN", True),
        ("SMITH^JOHN", "smith^john", True),
        ("MÜLLER*", "müller^hans", True),
        ("STRASSE", "Straße", True),  # casefold, not lower()
        ("SM?TH", "smyth", True),
        ("JONES", "SMITH", False),
    ],
)
def test_person_names_folded(key: str, value: str, expected: bool) -> None:
    q = query("STUDY", ("PatientName", key), fold_person_names=True)
    assert q.conditions[0].fold
    assert matches(q, {"PatientName": value}) is expected


def test_all_conditions_must_match() -> None:
    q = query("STUDY", ("PatientID", "P1"), ("StudyDate", "20240101-"))
    assert matches(q, {"PatientID": "P1", "StudyDate": "20240102"})
    assert not matches(q, {"PatientID": "P2", "StudyDate": "20240102"})
    assert not matches(q, {"PatientID": "P1", "StudyDate": "20231231"})
    # A missing (unknown) Required Key matches; an Optional one does not.
    assert matches(q, {"StudyDate": "20240102"})
    assert not matches(query("STUDY", ("StudyDescription", "X")), {})


# -- responses ---------------------------------------------------------------------------

STUDY_RECORD: dict[str, object] = {
    "PatientID": "P1",
    "IssuerOfPatientID": "",
    "PatientName": "Doe^John",
    "PatientBirthDate": "19700101",
    "PatientSex": "M",
    "NumberOfPatientRelatedStudies": 2,
    "NumberOfPatientRelatedSeries": 3,
    "NumberOfPatientRelatedInstances": 40,
    "StudyInstanceUID": "1.2.3",
    "StudyDate": "20240229",
    "StudyTime": "101010",
    "AccessionNumber": "ACC1",
    "StudyID": "S1",
    "StudyDescription": "CT HEAD",
    "ReferringPhysicianName": "",
    "ModalitiesInStudy": "CT\\SR",
    "SOPClassesInStudy": "1.2.840.10008.5.1.4.1.1.2",
    "NumberOfStudyRelatedSeries": 2,
    "NumberOfStudyRelatedInstances": 21,
}


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def test_response_bytes_study_level() -> None:
    q = query(
        "STUDY",
        ("StudyInstanceUID", ""),
        ("PatientName", "D*"),
        ("ModalitiesInStudy", ""),
        ("NumberOfStudyRelatedInstances", ""),
        ("PatientComments", ""),
    )
    data = response_identifier(q, STUDY_RECORD, EXPLICIT_LE, retrieve_ae="ARCHIVE")
    expected = b"".join(
        [
            _element(0x00080052, b"CS", b"STUDY "),
            # Not asked for, always there: PS3.4 C.4.1.1.3.2 (a review).
            _element(0x00080054, b"AE", b"ARCHIVE "),
            _element(0x00080061, b"CS", b"CT\\SR "),
            _element(0x00100010, b"PN", b"Doe^John"),
            _element(0x00104000, b"LT", b""),  # not held: zero length
            _element(0x0020000D, b"UI", b"1.2.3\x00"),
            _element(0x00201208, b"IS", b"21"),
        ]
    )
    assert data == expected


def test_response_adds_unique_keys_above_and_retrieve_ae() -> None:
    q = query(
        "IMAGE",
        ("SOPInstanceUID", ""),
        ("Rows", ""),
        ("RetrieveAETitle", ""),
        model=PR,
    )
    record = {
        **STUDY_RECORD,
        "SeriesInstanceUID": "1.2.3.4",
        "SOPInstanceUID": "1.2.3.4.5",
        "Rows": 512,
    }
    ds = _read(response_identifier(q, record, EXPLICIT_BE, retrieve_ae="ARCHIVE"), EXPLICIT_BE)
    assert [(e.keyword, e.value) for e in ds] == [
        ("SOPInstanceUID", "1.2.3.4.5"),
        ("QueryRetrieveLevel", "IMAGE"),
        ("RetrieveAETitle", "ARCHIVE"),
        ("PatientID", "P1"),
        ("StudyInstanceUID", "1.2.3"),
        ("SeriesInstanceUID", "1.2.3.4"),
        ("Rows", 512),
    ]


def test_response_character_set_when_needed() -> None:
    elements = identifier("STUDY", ("PatientName", b""), ("StudyDescription", b""))
    elements.append(Element(0x00080005, "CS", b"ISO_IR 100"))
    q = parse_identifier(elements, SR)
    ascii_only = _read(response_identifier(q, STUDY_RECORD, IMPLICIT_LE), IMPLICIT_LE)
    assert "SpecificCharacterSet" not in ascii_only
    record = {**STUDY_RECORD, "PatientName": "Müller^Jürgen"}
    latin = _read(response_identifier(q, record, IMPLICIT_LE), IMPLICIT_LE)
    assert latin.SpecificCharacterSet == "ISO_IR 100"
    assert latin.PatientName == "Müller^Jürgen"
    record = {**STUDY_RECORD, "PatientName": "山田^太郎"}
    utf8 = _read(response_identifier(q, record, IMPLICIT_LE), IMPLICIT_LE)
    assert utf8.SpecificCharacterSet == "ISO_IR 192"
    assert utf8.PatientName == "山田^太郎"


def test_response_sequence_keys_not_held_are_empty_sequences() -> None:
    q = query("STUDY", ("ReferencedStudySequence", ((Element(0x00081155, "UI", b"1.2"),),)))
    ds = _read(response_identifier(q, STUDY_RECORD, EXPLICIT_LE), EXPLICIT_LE)
    assert ds.ReferencedStudySequence == []
    assert ds.QueryRetrieveLevel == "STUDY"


def _read(data: bytes, transfer_syntax: str) -> pydicom.Dataset:
    implicit = transfer_syntax == IMPLICIT_LE
    little = transfer_syntax != EXPLICIT_BE
    ds = read_dataset(BytesIO(data), is_implicit_VR=implicit, is_little_endian=little)
    ds.decode()
    return ds


@pytest.mark.parametrize("level", ["PATIENT", "STUDY"])
def test_an_empty_patient_id_is_unknown_in_study_root_only(level: str) -> None:
    # Study Root: Patient ID is a Required Key (Table C.6-5), unknown matches.
    # Patient Root: it is the PATIENT level's Unique Key (Table C.6-1), which every
    # patient has (C.2.2.1.1): an instance filed without one is nobody's "P1".
    anonymous = {"PatientID": "", "PatientName": "Doe^Anon"}
    if level == "STUDY":
        assert matches(query(level, ("PatientID", "P1")), anonymous)
    assert not matches(query(level, ("PatientID", "P1"), model=PR), anonymous)
    assert matches(query(level, ("PatientID", "P1"), model=PR), {"PatientID": "P1"})
    # Patient Name stays a Required Key in both.
    assert matches(query(level, ("PatientName", "X*"), model=PR), {"PatientName": ""})


# Combined date-time matching (negotiated; PS3.4 C.2.2.2.5): date and time keys
# as one range. 5 January 12:00 to 20 March 09:00 here.
COMBINED_KEYS = (("StudyDate", "20240105-20240320"), ("StudyTime", "1200-0900"))


@pytest.mark.parametrize(
    ("date", "time", "combined", "independent"),
    [
        ("20240105", "101500", False, False),  # the first day, before 12:00
        ("20240105", "120000", True, False),
        ("20240210", "140000", True, False),  # a day between: any time
        ("20240210", "030000", True, False),
        ("20240320", "083000", True, False),  # the last day, before 09:00
        ("20240320", "091500", False, False),
        ("20240320", "09", True, False),  # 09 is 09:00:00, its earliest reading
        ("20231115", "120000", False, False),
        ("20240210", "", True, True),  # unknown time: the date decides
        ("20240321", "", False, False),
        ("", "140000", False, False),  # unknown date: the time decides
        ("", "", True, True),  # both unknown (Required Keys)
    ],
)
def test_combined_date_time_matching(
    date: str, time: str, combined: bool, independent: bool
) -> None:
    record = {"StudyDate": date, "StudyTime": time}
    q = query("STUDY", *COMBINED_KEYS, combined_date_time=True)
    assert [c.keyword for c in q.conditions] == ["StudyDate"]
    assert (q.conditions[0].vr, q.conditions[0].time_keyword) == ("DT", "StudyTime")
    assert matches(q, record) is combined
    # Not negotiated: each key alone (the time range 12:00-09:00 is empty).
    assert matches(query("STUDY", *COMBINED_KEYS), record) is independent


@pytest.mark.parametrize(
    ("keys", "record", "expected"),
    [
        # Open ends: from 5 January 12:00 on / until 20 March 09:00.
        ((("StudyDate", "20240105-"), ("StudyTime", "1200-")), ("20240105", "1100"), False),
        ((("StudyDate", "20240105-"), ("StudyTime", "1200-")), ("20991231", "0000"), True),
        ((("StudyDate", "-20240320"), ("StudyTime", "-0900")), ("20240320", "0901"), False),
        ((("StudyDate", "-20240320"), ("StudyTime", "-0900")), ("19990101", "2359"), True),
        # One day, a time range: as without combining.
        ((("StudyDate", "20240105"), ("StudyTime", "1000-1100")), ("20240105", "1030"), True),
        ((("StudyDate", "20240105"), ("StudyTime", "1000-1100")), ("20240105", "1130"), False),
        # Ranges of different forms: key by key (the time at or after 12:00 on any day).
        ((("StudyDate", "20240105-20240106"), ("StudyTime", "1200-")), ("20240106", "2359"), True),
        ((("StudyDate", "20240105-20240106"), ("StudyTime", "1200-")), ("20240106", "1100"), False),
        # A leap second is in its minute.
        ((("StudyDate", "-20240320"), ("StudyTime", "-2359")), ("20240320", "235960.5"), True),
    ],
)
def test_combined_date_time_open_ends(
    keys: tuple[tuple[str, str], ...], record: tuple[str, str], expected: bool
) -> None:
    q = query("STUDY", *keys, combined_date_time=True)
    assert matches(q, {"StudyDate": record[0], "StudyTime": record[1]}) is expected


def test_combined_date_time_needs_two_ranges_of_the_same_form() -> None:
    # PS3.4 C.2.2.2.5: "both of which specify the same form of Range Matching".
    # A time key alone, a list of dates, a single value, or ranges of different
    # forms: nothing to combine, each key as usual.
    for date, time in (
        ("20240105", "1200-1300"),
        ("20240105-20240106", "1200-"),
        ("-20240106", "1200-"),
    ):
        pair = query("STUDY", ("StudyDate", date), ("StudyTime", time), combined_date_time=True)
        assert [c.vr for c in pair.conditions] == ["DA", "TM"], (date, time)
    alone = query("STUDY", ("StudyTime", "1200-"), combined_date_time=True)
    assert [c.vr for c in alone.conditions] == ["TM"]
    listed = query(
        "STUDY",
        ("StudyDate", "20240105\\20240106"),
        ("StudyTime", "1200-"),
        combined_date_time=True,
    )
    assert [c.vr for c in listed.conditions] == ["DA", "TM"]
    series = query(
        "SERIES",
        ("SeriesDate", "20240105-20240106"),
        ("SeriesTime", "1200-1100"),
        combined_date_time=True,
    )
    assert [(c.keyword, c.vr) for c in series.conditions] == [("SeriesDate", "DT")]
    assert matches(series, {"SeriesDate": "20240106", "SeriesTime": "0800"})


def test_match_unknown_off_matches_empty_values_only_universally() -> None:
    """[query] match_unknown = false: Orthanc's behaviour, not PS3.4 C.2.2.1.2's."""
    q = query("STUDY", ("StudyDate", "20240101-"), match_unknown=False)
    assert not matches(q, {"StudyDate": ""})
    assert matches(q, {"StudyDate": "20240102"})
    assert matches(query("STUDY", ("StudyDate", "20240101-")), {"StudyDate": ""})
