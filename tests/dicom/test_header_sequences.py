"""The sequences the index holds, as HeaderReader gathers them (Sequence Matching).

pydicom encodes the data sets (every native transfer syntax, defined and undefined
lengths) and reads them back as the oracle (``header_helpers.expected``); byte-built
cases cover what pydicom does not write: a sequence sent as UN, one too long to
index, one whose items do not decode.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from archive.dicom.header import MAX_HELD, MAX_SEQUENCE_LENGTH, MAX_VALUE_LENGTH, HeaderReader
from tests.dicom.header_helpers import (
    DEFLATED,
    EXPLICIT,
    IMPLICIT,
    NATIVE,
    bytewise,
    dataset,
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
    code = dataset(CodeValue=value, CodingSchemeDesignator=scheme)
    if meaning:
        code.CodeMeaning = meaning
    return code


def _document(undefined: bool) -> Dataset:
    ids = dataset(
        PatientID="X-1",
        IssuerOfPatientID="CLINIC",
        TypeOfPatientID="TEXT",
        PatientComments="not kept",
    )
    order = dataset(
        AccessionNumber="A1",
        RequestedProcedureID="RP1",
        ScheduledProcedureStepID="SPS1",
        ScheduledProtocolCodeSequence=Sequence([_code("P1", "L")]),
        ReferencedStudySequence=Sequence([]),  # not kept
    )
    ds = dataset(
        SpecificCharacterSet="ISO_IR 192",
        SOPClassUID="1.2.840.10008.5.1.4.1.1.88.59",
        SOPInstanceUID="1.2.3.4.5",
        PatientName="Doe^Jane",
        PatientID="P1",
        OtherPatientIDsSequence=Sequence([ids]),
        ProcedureCodeSequence=Sequence([_code("CTHD", "L", "CT Kopf ä")]),
        StudyInstanceUID="1.2.3.4",
        SeriesInstanceUID="1.2.3.4.1",
        # An item of empty values keeps its place.
        RequestAttributesSequence=Sequence([order, dataset(RequestedProcedureID="")]),
        ConceptNameCodeSequence=Sequence([_code("113000", "DCM", "Of Interest")]),
        ContentTemplateSequence=Sequence(
            [dataset(MappingResource="DCMR", TemplateIdentifier="2010")]
        ),
    )
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


def _kos(value: str) -> bytes:
    code = element(0x00080100, "SH", value.encode()) + element(0x00080102, "SH", b"DCM ")
    return item(code)


@pytest.mark.parametrize(
    ("first_undefined", "second"),
    [(False, "defined"), (False, "undefined"), (False, "too long"), (True, "defined")],
)
def test_a_repeated_sequence_keeps_its_first_copy(first_undefined: bool, second: str) -> None:
    """A tag twice is no valid data set, but it must not cost the instance (a
    second copy too long to index once raised a KeyError in finish())."""
    first = (undefined_sequence if first_undefined else _defined_sequence)(
        0x0040A043, _kos("111111")
    )
    if second == "too long":
        filler = _code_item(EXPLICIT, b"x" * 200)
        again = undefined_sequence(0x0040A043, filler * (MAX_SEQUENCE_LENGTH // len(filler) + 1))
    elif second == "undefined":
        again = undefined_sequence(0x0040A043, _kos("222222"))
    else:
        again = _defined_sequence(0x0040A043, _kos("222222"))
    data = minimal(EXPLICIT, tail=first + again)
    for pieces in ([data], sevens(data)):
        got = read(EXPLICIT, pieces)
        assert got.concept_name_code_sequence == (
            '[{"CodeValue":"111111","CodingSchemeDesignator":"DCM"}]'
        )


def _sized_item(size: int) -> bytes:
    """One item of exactly ``size`` bytes with its header (Code Meaning pads it)."""
    code = element(0x00080100, "SH", b"113000") + element(0x00080102, "SH", b"DCM ")
    meaning = size - 8 - len(code) - 8
    return item(code + element(0x00080104, "LO", b"m" * meaning))


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
def test_the_bound_is_on_the_bytes_gathered(undefined: bool) -> None:
    # Defined length: the value; undefined: the value with its delimiter (8 bytes).
    delimiter = 8 if undefined else 0
    whole = undefined_sequence if undefined else _defined_sequence
    for size, kept in ((MAX_SEQUENCE_LENGTH, True), (MAX_SEQUENCE_LENGTH + 2, False)):
        items = _sized_item(size - delimiter - 6000) + _sized_item(6000)
        data = minimal(EXPLICIT, tail=whole(0x0040A043, items))
        for pieces in ([data], sevens(data)):
            got = read(EXPLICIT, pieces).concept_name_code_sequence
            assert bool(got) is kept, (size, undefined)


def test_memory_stays_bounded_whatever_the_fragment_size() -> None:
    # A 4 MiB sequence in one fragment: the reader must give it up before copying
    # more than the bound, not after.
    filler = _code_item(EXPLICIT, b"x" * 4000)
    data = minimal(EXPLICIT, tail=undefined_sequence(0x0040A043, filler * 1000))
    reader = HeaderReader(EXPLICIT)
    tracemalloc.start()
    try:
        reader.feed(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_SEQUENCE_LENGTH
    assert reader.finish().concept_name_code_sequence == ""


def test_a_nested_sequence_sent_as_un_is_read_and_a_wrong_value_left_out() -> None:
    code = element(0x00080100, "SH", b"X1", IMPLICIT) + element(0x00080102, "SH", b"L ", IMPLICIT)
    nested_un = element(0x00321064, "UN", item(code, IMPLICIT), EXPLICIT)
    wrong = element(0x00400008, "LO", b"not items ")
    order = item(element(0x00401001, "SH", b"RP1 ") + nested_un + wrong)
    data = minimal(EXPLICIT, tail=_defined_sequence(0x00400275, order))
    got = json.loads(read(EXPLICIT, [data]).request_attributes_sequence)
    assert got == [
        {
            "RequestedProcedureCodeSequence": [{"CodeValue": "X1", "CodingSchemeDesignator": "L"}],
            "RequestedProcedureID": "RP1",
        }
    ]


def test_after_a_copy_too_long_the_next_one_is_indexed() -> None:
    filler = _code_item(EXPLICIT, b"x" * 200)
    too_long = undefined_sequence(0x0040A043, filler * (MAX_SEQUENCE_LENGTH // len(filler) + 1))
    data = minimal(EXPLICIT, tail=too_long + _defined_sequence(0x0040A043, _kos("222222")))
    for pieces in ([data], sevens(data)):
        assert read(EXPLICIT, pieces).concept_name_code_sequence == (
            '[{"CodeValue":"222222","CodingSchemeDesignator":"DCM"}]'
        )


def test_an_item_key_sent_with_items_is_left_out() -> None:
    # Code Value (SH) as a sequence: not text, not kept; the rest of the item is.
    code_value = undefined_sequence(0x00080100, item(b"", undefined=True))
    odd = item(code_value + element(0x00080102, "SH", b"DCM "))
    data = minimal(EXPLICIT, tail=_defined_sequence(0x0040A043, odd))
    got = read(EXPLICIT, [data])
    assert got.concept_name_code_sequence == '[{"CodingSchemeDesignator":"DCM"}]'


def test_a_defined_length_sequence_does_not_count_toward_the_values_bound() -> None:
    # Wanted values just under MAX_HELD, then a 16 KiB sequence: not refused.
    long_text = element(0x00081030, "LO", b"d" * (MAX_VALUE_LENGTH - 2))
    count = MAX_HELD // MAX_VALUE_LENGTH - 1
    rest = MAX_HELD - count * (MAX_VALUE_LENGTH - 2) - 1000  # 1000 for the UIDs
    values = long_text * count + element(0x00081030, "LO", b"d" * rest)
    filler = _code_item(EXPLICIT, b"x" * 200)
    concept = _defined_sequence(0x0040A043, filler * (MAX_SEQUENCE_LENGTH // len(filler)))
    data = minimal(EXPLICIT, values, tail=concept)
    assert read(EXPLICIT, [data]).concept_name_code_sequence


def _item_with_its_own_character_set() -> Dataset:
    """A Latin-1 data set whose Procedure Code Sequence item says ISO_IR 192 and
    holds UTF-8 text, as does the item nested in a Request Attributes item."""
    procedure = _code("X1", "L", "Größe")
    procedure.SpecificCharacterSet = "ISO_IR 192"
    nested = dataset(
        SpecificCharacterSet="ISO_IR 192",
        RequestedProcedureDescription="Lëgs",
        RequestedProcedureCodeSequence=Sequence([_code("X2", "L", "Größe")]),
    )
    return dataset(
        SpecificCharacterSet="ISO_IR 100",
        SOPClassUID="1.2.840.10008.5.1.4.1.1.7",
        SOPInstanceUID="1.2.3.4.5",
        StudyDescription="Schädel",
        ProcedureCodeSequence=Sequence([procedure, _code("X3", "L", "Kopf ä")]),
        StudyInstanceUID="1.2.3.4",
        SeriesInstanceUID="1.2.3.4.1",
        RequestAttributesSequence=Sequence([nested]),
    )


@pytest.mark.parametrize("ts", NATIVE)
def test_an_item_with_its_own_character_set_is_decoded_with_it(ts: str) -> None:
    # PS3.5 7.5.3: an item's Specific Character Set applies to the item and the
    # items nested in it; an item without one has the data set's.
    ds = _item_with_its_own_character_set()
    data = encode(ds, ts)
    assert "Größe".encode() in data or ts == DEFLATED
    assert "Kopf ä".encode("latin_1") in data or ts == DEFLATED
    got = read(ts, [data])
    assert got == expected(ds)
    assert got.study_description == "Schädel"
    assert [code["CodeMeaning"] for code in json.loads(got.procedure_code_sequence)] == [
        "Größe",
        "Kopf ä",
    ]
    (order,) = json.loads(got.request_attributes_sequence)
    assert order["RequestedProcedureDescription"] == "Lëgs"
    assert order["RequestedProcedureCodeSequence"][0]["CodeMeaning"] == "Größe"
