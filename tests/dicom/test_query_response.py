"""The fast C-FIND-RSP encoder gives exactly the bytes of the general one."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.dicom import query_response
from archive.dicom.query import QueryModel
from archive.dicom.query_identifier import response_identifier
from archive.dicom.query_keys import Level
from archive.dicom.query_response import fast_plan_covers, response_encoder
from archive.index.query import RECORD_KEYWORDS
from tests.dicom.test_query import EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, query

PR, SR = QueryModel.PATIENT_ROOT, QueryModel.STUDY_ROOT
STUDY_KEYS = (
    ("StudyInstanceUID", ""), ("StudyDate", ""), ("StudyTime", ""), ("AccessionNumber", ""),
    ("PatientName", "S*"), ("PatientID", ""), ("StudyID", ""), ("StudyDescription", ""),
    ("ModalitiesInStudy", ""), ("NumberOfStudyRelatedInstances", ""), ("RetrieveAETitle", ""),
    ("InstanceAvailability", ""), ("InstitutionName", ""),  # not held: zero length
)  # fmt: skip
QUERIES = {
    "study": query("STUDY", *STUDY_KEYS),
    "series": query("SERIES", ("SeriesInstanceUID", ""), ("Modality", ""), ("SeriesNumber", ""),
                    ("NumberOfSeriesRelatedInstances", ""), ("StudyInstanceUID", "1.2")),
    "image": query("IMAGE", ("SOPInstanceUID", ""), ("InstanceNumber", ""), ("Rows", ""),
                   ("Columns", ""), ("SOPClassUID", ""), ("SeriesInstanceUID", "1.2.3")),
    "patient": query("PATIENT", ("PatientName", ""), ("PatientID", ""), ("PatientBirthDate", ""),
                     ("NumberOfPatientRelatedStudies", ""), model=PR),
    "sequence": query("STUDY", ("StudyInstanceUID", ""), ("ReferencedStudySequence", ())),
}  # fmt: skip
LEVELS = {"study": "STUDY", "series": "SERIES", "image": "IMAGE", "patient": "PATIENT",
          "sequence": "STUDY"}  # fmt: skip

_text = st.one_of(
    st.text(st.characters(codec="ascii", exclude_characters="\\\x00"), max_size=20),
    st.text(max_size=8).filter(lambda t: "\\" not in t and "\x1b" not in t),
)
_value = st.one_of(_text, st.integers(0, 65535), st.none())


@st.composite
def records(draw: Any, level: str) -> dict[str, object]:
    return {keyword: draw(_value) for keyword in RECORD_KEYWORDS[Level(level)]}


FAST = sorted(name for name in QUERIES if name != "sequence")


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("transfer_syntax", [EXPLICIT_LE, IMPLICIT_LE])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_fast_encoder_equals_general(name: str, transfer_syntax: str, data: Any) -> None:
    q = QUERIES[name]
    record = data.draw(records(LEVELS[name]))
    # Else this would compare the general path with itself.
    assert fast_plan_covers(q, transfer_syntax, retrieve_ae="ARCHIVE")
    encode = response_encoder(q, transfer_syntax, retrieve_ae="ARCHIVE")
    # The C-FIND provider's form: rows as the index pages them, pk first.
    columns = ("pk", *record)
    encode_row = response_encoder(q, transfer_syntax, retrieve_ae="ARCHIVE", columns=columns)
    row = (12345, *record.values())
    try:
        expected = response_identifier(q, record, transfer_syntax, retrieve_ae="ARCHIVE")
    except Exception as exc:  # the general path refuses: so must the fast one
        with pytest.raises(type(exc)):
            encode(record)
        with pytest.raises(type(exc)):
            encode_row(row)
        return
    assert encode(record) == expected
    assert encode_row(row) == expected


@pytest.mark.parametrize(
    ("name", "transfer_syntax"),
    [("study", EXPLICIT_BE), ("sequence", EXPLICIT_LE), ("sequence", IMPLICIT_LE)],
)
def test_outside_the_plan_the_general_encoder_is_used(
    name: str, transfer_syntax: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big Endian and sequence keys are not in the fast plan: it hands them over."""
    assert not fast_plan_covers(QUERIES[name], transfer_syntax)
    calls = _spy_on_general_encoder(monkeypatch)
    record = dict.fromkeys(RECORD_KEYWORDS[Level(LEVELS[name])], "A")
    response_encoder(QUERIES[name], transfer_syntax)(record)
    response_encoder(QUERIES[name], transfer_syntax, columns=tuple(record))(tuple(record.values()))
    assert calls == [record, record]


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("transfer_syntax", [EXPLICIT_LE, IMPLICIT_LE])
def test_inside_the_plan_the_general_encoder_is_not_used(
    name: str, transfer_syntax: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``fast_plan_covers`` says is what both forms of the encoder do."""
    assert fast_plan_covers(QUERIES[name], transfer_syntax, retrieve_ae="ARCHIVE")
    record = dict.fromkeys(RECORD_KEYWORDS[Level(LEVELS[name])], "A")
    expected = response_identifier(QUERIES[name], record, transfer_syntax, retrieve_ae="ARCHIVE")
    calls = _spy_on_general_encoder(monkeypatch)
    encode = response_encoder(QUERIES[name], transfer_syntax, retrieve_ae="ARCHIVE")
    columns = tuple(record)
    encode_row = response_encoder(
        QUERIES[name], transfer_syntax, retrieve_ae="ARCHIVE", columns=columns
    )
    assert encode(record) == expected
    assert encode_row(tuple(record.values())) == expected
    assert calls == []


def _spy_on_general_encoder(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """Record what reaches ``response_identifier`` through the encoders."""
    calls: list[dict[str, object]] = []
    general = query_response.response_identifier

    def spy(query: Any, record: Any, *args: Any, **kwargs: Any) -> bytes:
        calls.append(dict(record))
        return general(query, record, *args, **kwargs)

    monkeypatch.setattr(query_response, "response_identifier", spy)
    return calls
