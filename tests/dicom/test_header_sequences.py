"""The sequences the index holds, as HeaderReader gathers them (Sequence Matching).

pydicom encodes the data sets (every native transfer syntax, defined and undefined
lengths) and reads them back as the oracle (``header_helpers.expected``); byte-built
cases cover what pydicom does not write: a sequence sent as UN, one too long to
index, one whose items do not decode.
"""

from __future__ import annotations

import json

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from archive.dicom.header import MAX_SEQUENCE_LENGTH
from tests.dicom.header_helpers import (
    EXPLICIT,
    IMPLICIT,
    NATIVE,
    bytewise,
    element,
    encode,
    expected,
    item,
    minimal,
    read,
    sevens,
    undefined_sequence,
)


def _code(value: str, scheme: str, meaning: str = "") -> Dataset:
    code = Dataset()
    code.CodeValue = value
    code.CodingSchemeDesignator = scheme
    if meaning:
        code.CodeMeaning = meaning
    return code


def _document(undefined: bool) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.59"
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P1"
    ids = Dataset()
    ids.PatientID = "X-1"
    ids.IssuerOfPatientID = "CLINIC"
    ids.TypeOfPatientID = "TEXT"
    ids.PatientComments = "not kept"
    ds.OtherPatientIDsSequence = Sequence([ids])
    ds.ProcedureCodeSequence = Sequence([_code("CTHD", "L", "CT Kopf ä")])
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.1"
    order = Dataset()
    order.AccessionNumber = "A1"
    order.RequestedProcedureID = "RP1"
    order.ScheduledProcedureStepID = "SPS1"
    order.ScheduledProtocolCodeSequence = Sequence([_code("P1", "L")])
    order.ReferencedStudySequence = Sequence([])  # not kept
    empty = Dataset()
    empty.RequestedProcedureID = ""
    ds.RequestAttributesSequence = Sequence([order, empty])
    ds.ConceptNameCodeSequence = Sequence([_code("113000", "DCM", "Of Interest")])
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2010"
    ds.ContentTemplateSequence = Sequence([template])
    if undefined:
        for element_ in ds.iterall():
            if element_.VR == "SQ":
                element_.is_undefined_length = True
                for inner in element_.value:
                    inner.is_undefined_length_sequence_item = True
    return ds


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
@pytest.mark.parametrize("ts", NATIVE)
def test_sequences_as_pydicom_reads_them_in_any_fragments(ts: str, undefined: bool) -> None:
    ds = _document(undefined)
    data = encode(ds, ts)
    want = expected(ds)
    assert json.loads(want.request_attributes_sequence) == [
        {
            "AccessionNumber": "A1",
            "ScheduledProtocolCodeSequence": [{"CodeValue": "P1", "CodingSchemeDesignator": "L"}],
            "ScheduledProcedureStepID": "SPS1",
            "RequestedProcedureID": "RP1",
        },
        {},  # an item of empty values keeps its place
    ]
    for pieces in ([data], sevens(data), bytewise(data)):
        got = read(ts, pieces)
        assert got == want
    assert json.loads(got.other_patient_ids_sequence) == [
        {"PatientID": "X-1", "IssuerOfPatientID": "CLINIC", "TypeOfPatientID": "TEXT"}
    ]
    assert json.loads(got.procedure_code_sequence)[0]["CodeMeaning"] == "CT Kopf ä"
    assert json.loads(got.content_template_sequence) == [
        {"MappingResource": "DCMR", "TemplateIdentifier": "2010"}
    ]


CODE = element(0x00080100, "SH", b"113000", IMPLICIT) + element(0x00080102, "SH", b"DCM ", IMPLICIT)
KOS = '[{"CodeValue":"113000","CodingSchemeDesignator":"DCM"}]'


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_a_sequence_sent_as_un_is_read_in_implicit_vr(undefined: bool) -> None:
    # PS3.5 6.2.2: the value of an UN that is a sequence is Implicit VR LE.
    items = item(CODE, IMPLICIT, undefined=undefined)
    if undefined:
        concept = undefined_sequence(0x0040A043, items, EXPLICIT, vr="UN")
    else:
        concept = element(0x0040A043, "UN", items, EXPLICIT)
    data = minimal(EXPLICIT, tail=concept)
    for pieces in ([data], bytewise(data)):
        assert read(EXPLICIT, pieces).concept_name_code_sequence == KOS


def _code_item(ts: str, meaning: bytes) -> bytes:
    code = element(0x00080100, "SH", b"113000", ts) + element(0x00080102, "SH", b"DCM ", ts)
    return item(code + element(0x00080104, "LO", meaning, ts), ts)


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_a_sequence_too_long_to_index_is_walked_and_left_out(undefined: bool) -> None:
    # Many items, each small: longer than MAX_SEQUENCE_LENGTH in all.
    one = _code_item(EXPLICIT, b"x" * 200)
    items = one * (MAX_SEQUENCE_LENGTH // len(one) + 1)
    whole = undefined_sequence if undefined else _defined_sequence
    concept = whole(0x0040A043, items)
    short = element(0x0040A504, "SQ", item(element(0x0040DB00, "CS", b"2010")))
    data = minimal(EXPLICIT, tail=concept + short)
    for pieces in ([data], sevens(data)):
        got = read(EXPLICIT, pieces)
        assert got.concept_name_code_sequence == ""
        assert got.content_template_sequence == '[{"TemplateIdentifier":"2010"}]'
        assert got.series_instance_uid == "1.2.3.4.1"
    # Just within the bound, it is indexed.
    fits = one * (MAX_SEQUENCE_LENGTH // len(one))
    got = read(EXPLICIT, [minimal(EXPLICIT, tail=undefined_sequence(0x0040A043, fits))])
    assert len(json.loads(got.concept_name_code_sequence)) == MAX_SEQUENCE_LENGTH // len(one)


def _defined_sequence(tag: int, items: bytes) -> bytes:
    return element(tag, "SQ", items)


def test_a_sequence_whose_items_do_not_decode_is_not_indexed() -> None:
    # A defined length SQ is walked as one value: its inside is only read when
    # decoded, and a broken inside leaves the sequence out, not the instance.
    broken = element(0x0040A043, "SQ", element(0x00080100, "SH", b"113000"))
    got = read(EXPLICIT, [minimal(EXPLICIT, tail=broken)])
    assert got.concept_name_code_sequence == ""
    assert got.sop_instance_uid == "1.2.3.4.5"


def test_a_sequence_of_empty_items_is_indexed_as_none() -> None:
    empty = element(0x0040A043, "SQ", item(element(0x00080104, "LO", b"")) + item(b""))
    assert read(EXPLICIT, [minimal(EXPLICIT, tail=empty)]).concept_name_code_sequence == ""
    nothing = element(0x0040A043, "SQ", b"")
    assert read(EXPLICIT, [minimal(EXPLICIT, tail=nothing)]).concept_name_code_sequence == ""


def test_a_nested_wanted_tag_is_not_taken_for_a_top_level_one() -> None:
    # Concept Name Code Sequence inside another sequence's item (as in an SR's
    # Content Sequence) is not the document title.
    inner = undefined_sequence(0x0040A043, _code_item(EXPLICIT, b"Title"))
    outer = undefined_sequence(0x00400260, item(inner, undefined=True))
    got = read(EXPLICIT, [minimal(EXPLICIT, tail=outer)])
    assert got.concept_name_code_sequence == ""
