"""Sequence Matching, PS3.4 C.2.2.2.6: parsing, the reference matcher, responses.

The index's SQL is checked against the same matcher in ``tests/index``; here the
rules themselves, table-driven, with pydicom reading the response bytes.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

import pydicom
import pytest
from pydicom.filereader import read_dataset

from archive.dicom.dataset import Element
from archive.dicom.dictionary import keyword_for_tag, tag_for_keyword, vr_of
from archive.dicom.query import MatchKind, Query, QueryError, QueryModel, parse_identifier
from archive.dicom.query_identifier import response_identifier
from archive.dicom.query_keys import SEQUENCE_KEYS, KeyInfo
from archive.dicom.query_match import matches

SR = QueryModel.STUDY_ROOT
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
CONCEPT = 0x0040A043
REQUEST = 0x00400275


def el(keyword: str, value: Any) -> Element:
    """An element by keyword: text, or items (each a list of elements)."""
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    if isinstance(value, list):
        return Element(tag, "SQ", tuple(tuple(item) for item in value))
    return Element(tag, vr_of(tag), value.encode("utf-8"))


def find(level: str, *elements: Element, model: QueryModel = SR, **options: Any) -> Query:
    head = [Element(0x00080052, "CS", level.encode())]
    if any(_wide(e) for e in elements):
        head.append(Element(0x00080005, "CS", b"ISO_IR 192"))
    return parse_identifier([*head, *elements], model, **options)


def _wide(element: Element) -> bool:
    if isinstance(element.value, tuple):
        return any(_wide(e) for item in element.value for e in item)
    return not element.value.isascii()


def items(*objects: dict[str, Any]) -> str:
    """A sequence as the index keeps it (header.py)."""
    return json.dumps(list(objects), ensure_ascii=False, separators=(",", ":"))


KOS = items({"CodeValue": "113000", "CodingSchemeDesignator": "DCM", "CodeMeaning": "Of Interest"})
REPORT = items(
    {"CodeValue": "18748-4", "CodingSchemeDesignator": "LN", "CodeMeaning": "Diagnostic"},
    {"CodeValue": "11528-7", "CodingSchemeDesignator": "LN", "CodeMeaning": "Radiology"},
)
ORDERS = items(
    {
        "AccessionNumber": "A1",
        "ScheduledProtocolCodeSequence": [{"CodeValue": "P1", "CodingSchemeDesignator": "L"}],
        "ScheduledProcedureStepID": "SPS1",
        "RequestedProcedureID": "RP1",
    },
    {"AccessionNumber": "A2", "RequestedProcedureID": "RP2"},
)


def instance(concept: str = "", request: str = "") -> dict[str, object]:
    return {
        "StudyInstanceUID": "1.2",
        "SeriesInstanceUID": "1.2.3",
        "SOPInstanceUID": "1.2.3.4",
        "ConceptNameCodeSequence": concept,
        "RequestAttributesSequence": request,
    }


def _read(data: bytes, transfer_syntax: str = EXPLICIT_LE) -> pydicom.Dataset:
    implicit = transfer_syntax == IMPLICIT_LE
    little = transfer_syntax != EXPLICIT_BE
    ds = read_dataset(BytesIO(data), is_implicit_VR=implicit, is_little_endian=little)
    ds.decode()
    return ds


# -- the key table ------------------------------------------------------------------


def _item_keys(info: KeyInfo) -> list[tuple[int, KeyInfo]]:
    found = []
    for tag, key in (info.items or {}).items():
        found.append((tag, key))
        found += _item_keys(key)
    return found


@pytest.mark.parametrize("tag", sorted(SEQUENCE_KEYS), ids=lambda tag: f"{tag:08X}")
def test_item_keys_agree_with_the_data_dictionary(tag: int) -> None:
    info = SEQUENCE_KEYS[tag]
    assert (info.keyword, info.vr) == (keyword_for_tag(tag), "SQ") == (info.keyword, vr_of(tag))
    for item_tag, key in _item_keys(info):
        assert (key.keyword, key.vr) == (keyword_for_tag(item_tag), vr_of(item_tag))
        assert key.level is info.level
        assert (key.items is not None) == (key.vr == "SQ")


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        [],  # no item: the whole sequence
        [[]],  # one empty item: the same (PS3.4 C.2.2.2.6, last paragraph)
        [[el("CodeValue", ""), el("CodeMeaning", "*")]],  # item keys all universal
    ],
    ids=["no item", "empty item", "universal item keys"],
)
def test_universal_sequence_keys_match_everything(value: list[Any]) -> None:
    q = find("IMAGE", el("ConceptNameCodeSequence", value))
    assert q.conditions == ()
    assert q.unsupported == ()
    assert matches(q, instance())
    assert matches(q, instance(concept=KOS))


def test_item_keys_become_one_sequence_condition() -> None:
    q = find(
        "IMAGE",
        el("ConceptNameCodeSequence", [[el("CodeValue", "113000"), el("CodeMeaning", "")]]),
    )
    (condition,) = q.conditions
    assert (condition.tag, condition.kind, condition.vr) == (CONCEPT, MatchKind.SEQUENCE, "SQ")
    (inner,) = condition.items
    assert (inner.keyword, inner.kind, inner.terms[0].value) == (
        "CodeValue",
        MatchKind.SINGLE,
        "113000",
    )


def test_a_key_of_several_items_is_refused() -> None:
    two = [[el("CodeValue", "1")], [el("CodeValue", "2")]]
    with pytest.raises(QueryError) as caught:
        find("IMAGE", el("ConceptNameCodeSequence", two))
    assert caught.value.status == 0xA900


def test_item_keys_not_held_are_returned_empty_and_flagged_when_not_universal() -> None:
    q = find("IMAGE", el("ConceptNameCodeSequence", [[el("ContextUID", "1.2")]]))
    assert q.conditions == ()
    assert q.unsupported == (CONCEPT,)
    universal = find("IMAGE", el("ConceptNameCodeSequence", [[el("ContextUID", "")]]))
    assert universal.unsupported == ()


def test_a_sequence_key_below_the_level() -> None:
    key = el("ConceptNameCodeSequence", [[el("CodeValue", "113000")]])
    with pytest.raises(QueryError) as caught:
        find("SERIES", key)
    assert caught.value.status == 0xA900
    # Returned empty when universal: a series holds no document title.
    assert find("SERIES", el("ConceptNameCodeSequence", [])).conditions == ()


def test_a_retrieve_ignores_sequence_keys() -> None:
    q = parse_identifier(
        [
            Element(0x00080052, "CS", b"STUDY"),
            Element(0x0020000D, "UI", b"1.2"),
            el("ProcedureCodeSequence", [[el("CodeValue", "X")]]),
        ],
        SR,
        purpose="retrieve",
    )
    assert [c.keyword for c in q.conditions] == ["StudyInstanceUID"]


# -- matching (the reference matcher) ------------------------------------------------

CASES = [
    # (item keys of the query, stored items, matches)
    ([el("CodeValue", "113000")], KOS, True),
    ([el("CodeValue", "113001")], KOS, False),
    ([el("CodeValue", "113000")], "", False),  # no item: nothing to match
    ([el("CodeValue", "11528-7")], REPORT, True),  # any item may match
    ([el("CodeValue", "1152*")], REPORT, True),  # wild card
    ([el("CodeValue", "1152?-7")], REPORT, True),
    ([el("CodeValue", "113000\\11528-7")], REPORT, True),  # list
    ([el("CodeMeaning", "radiology")], REPORT, False),  # case-sensitive
    # All item keys must match within one item, not across items.
    ([el("CodeValue", "18748-4"), el("CodeMeaning", "Radiology")], REPORT, False),
    ([el("CodeValue", "18748-4"), el("CodeMeaning", "Diag*")], REPORT, True),
    # An item key absent from the item is empty: only universal matching finds it.
    ([el("CodingSchemeVersion", "1")], KOS, False),
    ([el("CodingSchemeVersion", "")], KOS, True),
]


@pytest.mark.parametrize(("keys", "stored", "expected"), CASES)
def test_sequence_matching(keys: list[Element], stored: str, expected: bool) -> None:
    q = find("IMAGE", el("ConceptNameCodeSequence", [keys]))
    assert matches(q, instance(concept=stored)) is expected


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([el("RequestedProcedureID", "RP2")], True),
        ([el("RequestedProcedureID", "RP2"), el("AccessionNumber", "A1")], False),
        # Recursive Sequence Matching: a nested code sequence.
        ([el("ScheduledProtocolCodeSequence", [[el("CodeValue", "P1")]])], True),
        ([el("ScheduledProtocolCodeSequence", [[el("CodeValue", "P2")]])], False),
        (
            [
                el("AccessionNumber", "A2"),
                el("ScheduledProtocolCodeSequence", [[el("CodeValue", "P1")]]),
            ],
            False,  # P1 is in the other item
        ),
        ([el("ScheduledProtocolCodeSequence", [])], True),
    ],
)
def test_nested_sequence_matching(keys: list[Element], expected: bool) -> None:
    q = find("IMAGE", el("RequestAttributesSequence", [keys]))
    assert matches(q, instance(request=ORDERS)) is expected


# -- responses -------------------------------------------------------------------------


def test_response_holds_the_matching_items_with_the_requested_keys_only() -> None:
    q = find(
        "IMAGE",
        el("ConceptNameCodeSequence", [[el("CodeValue", "1152*"), el("CodeMeaning", "")]]),
    )
    ds = _read(response_identifier(q, instance(concept=REPORT), EXPLICIT_LE))
    (item,) = ds.ConceptNameCodeSequence
    assert item.CodeValue == "11528-7"
    assert item.CodeMeaning == "Radiology"
    assert "CodingSchemeDesignator" not in item


@pytest.mark.parametrize("value", [[], [[]]], ids=["no item", "empty item"])
@pytest.mark.parametrize("transfer_syntax", [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE])
def test_universal_sequence_key_returns_every_item_whole(
    value: list[Any], transfer_syntax: str
) -> None:
    q = find("IMAGE", el("ConceptNameCodeSequence", value))
    ds = _read(response_identifier(q, instance(concept=REPORT), transfer_syntax), transfer_syntax)
    assert [(i.CodeValue, i.CodingSchemeDesignator, i.CodeMeaning) for i in ds[CONCEPT]] == [
        ("18748-4", "LN", "Diagnostic"),
        ("11528-7", "LN", "Radiology"),
    ]
    # Every item key held is returned (zero length when the item has none).
    assert ds.ConceptNameCodeSequence[0].CodingSchemeVersion == ""


def test_an_entity_without_items_returns_an_empty_sequence() -> None:
    q = find("IMAGE", el("ConceptNameCodeSequence", []))
    ds = _read(response_identifier(q, instance(), EXPLICIT_LE))
    assert ds.ConceptNameCodeSequence == []


def test_nested_items_in_the_response() -> None:
    nested = el("ScheduledProtocolCodeSequence", [[el("CodeValue", ""), el("CodeMeaning", "")]])
    q = find("IMAGE", el("RequestAttributesSequence", [[el("RequestedProcedureID", ""), nested]]))
    ds = _read(response_identifier(q, instance(request=ORDERS), EXPLICIT_LE))
    first, second = ds.RequestAttributesSequence
    assert first.RequestedProcedureID == "RP1"
    (code,) = first.ScheduledProtocolCodeSequence
    assert (code.CodeValue, code.CodeMeaning) == ("P1", "")
    assert second.RequestedProcedureID == "RP2"
    assert second.ScheduledProtocolCodeSequence == []
    assert "AccessionNumber" not in first


def test_item_text_beyond_ascii_sets_the_character_set() -> None:
    stored = items({"CodeValue": "X", "CodeMeaning": "Lésion 病変"})
    q = find("IMAGE", el("ConceptNameCodeSequence", []))
    ds = _read(response_identifier(q, instance(concept=stored), IMPLICIT_LE), IMPLICIT_LE)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert ds.ConceptNameCodeSequence[0].CodeMeaning == "Lésion 病変"


def test_a_held_sequence_key_sent_as_un() -> None:
    """PS3.5 6.2.2: an SCU that does not know the tag sends UN, its items in
    Implicit VR LE; a zero-length one is the whole sequence."""
    code = b"\x08\x00\x00\x01\x06\x00\x00\x00113000"  # (0008,0100) "113000", Implicit VR
    item = b"\xfe\xff\x00\xe0" + len(code).to_bytes(4, "little") + code
    keyed = find("IMAGE", Element(CONCEPT, "UN", item))
    (condition,) = keyed.conditions
    assert condition.items[0].terms[0].value == "113000"
    assert matches(keyed, instance(concept=KOS))
    assert not matches(keyed, instance(concept=REPORT))
    whole = find("IMAGE", Element(CONCEPT, "UN", b""))
    assert whole.conditions == ()
    ds = _read(response_identifier(whole, instance(concept=REPORT), EXPLICIT_LE))
    assert len(ds.ConceptNameCodeSequence) == 2


def test_not_held_keys_in_a_nested_item_are_flagged() -> None:
    nested = el("ScheduledProtocolCodeSequence", [[el("ContextUID", "1.2")]])
    q = find("SERIES", el("RequestAttributesSequence", [[nested]]))
    assert q.unsupported == (REQUEST,)
    assert q.conditions == ()
    deeper = el("ScheduledProtocolCodeSequence", [[el("ProtocolContextSequence", [[]])]])
    assert find("SERIES", el("RequestAttributesSequence", [[deeper]])).unsupported == ()
    valued = [[el("ProtocolContextSequence", [[el("ValueType", "TEXT")]])]]
    flagged = el("ScheduledProtocolCodeSequence", valued)
    assert find("SERIES", el("RequestAttributesSequence", [[flagged]])).unsupported == (REQUEST,)


def test_a_key_below_the_level_with_only_keys_not_held_is_refused() -> None:
    with pytest.raises(QueryError):
        find("SERIES", el("ConceptNameCodeSequence", [[el("ContextUID", "1.2")]]))


def test_specific_character_set_inside_an_item_is_not_a_key() -> None:
    item = [el("SpecificCharacterSet", "ISO_IR 192"), el("CodeValue", "")]
    q = find("IMAGE", el("ConceptNameCodeSequence", [item]))
    assert q.unsupported == ()
    ds = _read(response_identifier(q, instance(concept=KOS), EXPLICIT_LE))
    (returned,) = ds.ConceptNameCodeSequence
    assert list(returned.keys()) == [tag_for_keyword("CodeValue")]


def test_a_sequence_key_whose_value_is_no_items_is_universal_and_flagged() -> None:
    for value in (Element(CONCEPT, "UN", b"garbage!"), Element(CONCEPT, "LO", b"113000")):
        q = find("IMAGE", value)
        assert q.conditions == ()
        assert q.unsupported == (CONCEPT,)
    nested = Element(0x00321064, "UN", b"junkjunk")
    q = find("SERIES", el("RequestAttributesSequence", [[nested]]))
    assert q.conditions == ()
    assert q.unsupported == (REQUEST,)


def test_a_nested_held_sequence_sent_as_un_in_the_request() -> None:
    code = b"\x08\x00\x00\x01\x02\x00\x00\x00P1"  # (0008,0100) "P1", Implicit VR
    item = b"\xfe\xff\x00\xe0" + len(code).to_bytes(4, "little") + code
    nested = Element(0x00400008, "UN", item)
    q = find("IMAGE", el("RequestAttributesSequence", [[nested]]))
    (condition,) = q.conditions
    (inner,) = condition.items
    assert (inner.keyword, inner.kind) == ("ScheduledProtocolCodeSequence", MatchKind.SEQUENCE)
    assert matches(q, instance(request=ORDERS))
    assert q.unsupported == ()
