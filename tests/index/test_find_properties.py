"""Index.find agrees with the brute-force matcher on random records and queries."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive.dicom.dataset import Element
from archive.dicom.dictionary import tag_for_keyword, vr_of
from archive.dicom.query import Query, QueryModel, parse_identifier
from archive.dicom.query_keys import KEYS, UNIQUE_KEYS, Level
from archive.dicom.query_match import matches
from archive.index import Index
from tests.index import CT, MR, SR, make_instance

NAMES = ["Smith^John", "SMITH^JANE", "Smyth^J", "Müller^Jö", "müller^anna", "O[B]rien", ""]
DATES = ["20240101", "20240102", "20231231", "19991231", ""]
TIMES = ["080000", "101500.5", "2359", "10", "", "1015", "10:15:30"]
MODALITIES = ["CT", "MR", "SR", "", "PT"]
#: Sequences as the index keeps them (header.py): Concept Name Code Sequence of an
#: instance, Request Attributes Sequence (with a nested code sequence) of a series.
CONCEPTS = [
    "",
    '[{"CodeValue":"113000","CodingSchemeDesignator":"DCM"}]',
    '[{"CodeValue":"18748-4","CodingSchemeDesignator":"LN","CodeMeaning":"Report"},'
    '{"CodeValue":"113000","CodingSchemeDesignator":"99X"}]',
    '[{"CodeMeaning":"Müller [B]"}]',
]
REQUESTS = [
    "",
    '[{"AccessionNumber":"A1","RequestedProcedureID":"RP1"}]',
    '[{"AccessionNumber":"A2","ScheduledProtocolCodeSequence":[{"CodeValue":"P1"}],'
    '"RequestedProcedureID":"RP1"},{"RequestedProcedureID":"RP2"}]',
]


def _code(**keys: str) -> tuple[tuple[Element, ...], ...]:
    """One item of item keys, by keyword, as a sequence key's value."""
    return (tuple(_text(keyword, value) for keyword, value in keys.items()),)


def _text(keyword: str, value: str) -> Element:
    tag = tag_for_keyword(keyword)
    assert tag is not None
    return Element(tag, vr_of(tag), value.encode("utf-8"))


#: Sequence keys' values: their single item (or none).
SEQUENCE_VALUES: dict[str, list[tuple[tuple[Element, ...], ...]]] = {
    "ConceptNameCodeSequence": [
        (),
        _code(CodeValue="113000"),
        _code(CodeValue="113000", CodingSchemeDesignator="DCM"),
        _code(CodeValue="18748-4", CodingSchemeDesignator="99X"),  # across items: no
        _code(CodeValue="1*", CodeMeaning=""),
        _code(CodeMeaning="MÜLLER*"),
        _code(CodeMeaning="*[B]"),
        _code(CodingSchemeDesignator="LN\\DCM"),
    ],
    "RequestAttributesSequence": [
        _code(RequestedProcedureID="RP1"),
        _code(RequestedProcedureID="RP2", AccessionNumber="A2"),
        _code(AccessionNumber="A?"),
        (
            (
                _text("RequestedProcedureID", "RP1"),
                Element(0x00400008, "SQ", _code(CodeValue="P1")),
            ),
        ),
        ((Element(0x00400008, "SQ", ()),),),
    ],
}


def _records() -> st.SearchStrategy[list[Any]]:
    patient = st.tuples(st.sampled_from(["P1", "P2", "P3", "p1"]), st.sampled_from(NAMES))
    study = st.tuples(
        st.sampled_from(["1.1", "1.2", "1.3", "2.1", "2.2"]),
        st.sampled_from(DATES),
        st.sampled_from(TIMES),
        st.sampled_from(["A1", "A2", "", "a1"]),
    )
    series = st.tuples(
        st.sampled_from([".1", ".2", ".3"]),
        st.sampled_from(MODALITIES),
        st.sampled_from([1, 2, None]),
        st.sampled_from(REQUESTS),
        st.lists(st.sampled_from(CONCEPTS), min_size=2, max_size=2),
    )
    return st.lists(st.tuples(patient, study, series), min_size=1, max_size=40)


KEY_VALUES: dict[str, list[str]] = {
    "PatientID": ["P1", "P2", "p1", "P*", "?1", "P1\\P3"],
    "PatientName": ["Smith^John", "SMITH*", "*ith*", "Sm?th^J*", "MÜLLER*", "O[B]*", "*"],
    "StudyDate": [
        "20240101",
        "20240101-",
        "-20240101",
        "20231231-20240101",
        "19991231\\20240102",
        "20231231-20240102",
    ],
    "StudyTime": ["10", "0800-1015", "1015-", "-1000", "2359", "101500-101600", "101530"],
    "AccessionNumber": ["A1", "a1", "A*", "?1"],
    "StudyInstanceUID": ["1.1", "1.2\\2.2", "9.9"],
    "ModalitiesInStudy": ["CT", "MR\\SR", "P?", "C*"],
    "Modality": ["CT", "MR", "*R", "CT\\PT"],
    "SeriesNumber": ["1", "2", "1\\2"],
    "SeriesInstanceUID": ["1.1.1", "1.2.2\\2.1.3"],
    # Instances are f"{series}.{k}", k in (0, 1) (see _check); each long list
    # names one of the two instances of every series, so most records have a match.
    "SOPInstanceUID": [
        "1.1.1.0",
        "2.2.3.1\\1.1.2.2",
        "1.1.2.1",
        *(
            "\\".join(
                f"{study}.{series}.{(study + series + k).count('2') % 2}"
                for study in ("1.1", "1.2", "1.3", "2.1", "2.2")
                for series in "123"
            )
            for k in ("", "2")
        ),
    ],
    "SOPClassUID": [CT, MR],
}
LEVEL_KEYS = {
    Level.PATIENT: ["PatientID", "PatientName"],
    Level.STUDY: [
        "PatientID",
        "PatientName",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyInstanceUID",
        "ModalitiesInStudy",
    ],
    Level.SERIES: [
        "StudyInstanceUID",
        "StudyDate",
        "Modality",
        "SeriesNumber",
        "SeriesInstanceUID",
        "PatientName",
        "StudyTime",
        "RequestAttributesSequence",
    ],
    Level.IMAGE: [
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "Modality",
        "StudyTime",
        "ConceptNameCodeSequence",
        "RequestAttributesSequence",
    ],
}


@st.composite
def _queries(draw: st.DrawFn) -> Query:
    model = draw(st.sampled_from(list(QueryModel)))
    levels = list(Level) if model is QueryModel.PATIENT_ROOT else list(Level)[1:]
    level = draw(st.sampled_from(levels))
    keywords = draw(st.lists(st.sampled_from(LEVEL_KEYS[level]), unique=True, max_size=3))
    elements = [Element(0x00080052, "CS", level.value.encode())]
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        assert tag is not None
        if keyword in SEQUENCE_VALUES:
            elements.append(Element(tag, "SQ", draw(st.sampled_from(SEQUENCE_VALUES[keyword]))))
            continue
        value = draw(st.sampled_from(KEY_VALUES[keyword]))
        elements.append(Element(tag, KEYS[tag].vr, value.encode("utf-8")))
    elements.append(Element(0x00080005, "CS", b"ISO_IR 192"))
    fold = draw(st.booleans())
    combined = draw(st.booleans())  # combined date-time matching negotiated
    return parse_identifier(elements, model, fold_person_names=fold, combined_date_time=combined)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(records=_records(), queries=st.lists(_queries(), min_size=1, max_size=6))
def test_find_agrees_with_matches(records: list[Any], queries: list[Query]) -> None:
    asyncio.run(asyncio.wait_for(_check(records, queries), 30))


async def _check(records: list[Any], queries: list[Query]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        async with await Index.open(Path(folder) / "index.sqlite", durability="fast") as index:
            seen: set[str] = set()
            n = 0
            for (pid, name), (study, date, time, acc), series_values in records:
                suffix, modality, number, request, concepts = series_values
                series = study + suffix
                n += 1
                if series in seen:
                    continue  # one series, one study: the writer keeps links first
                seen.add(series)
                for k in range(2):
                    item = make_instance(
                        n * 10 + k,
                        study=study,
                        series=series,
                        patient_id=pid,
                        patient_name=name,
                        study_date=date,
                        study_time=time,
                        accession_number=acc,
                        modality=modality,
                        sop_class={"MR": MR, "SR": SR}.get(modality, CT),
                        series_number=number,
                        request_attributes_sequence=request,
                        concept_name_code_sequence=concepts[k],
                        # Reachable by the SOPInstanceUID values of KEY_VALUES
                        # (the default, series + instance number, never is).
                        sop_instance_uid=f"{series}.{k}",
                    )
                    await index.add(item)
            for query in queries:
                unique = KEYS[UNIQUE_KEYS[query.level]].keyword
                everything = parse_identifier(
                    [Element(0x00080052, "CS", query.level.value.encode())],
                    QueryModel.PATIENT_ROOT,
                )
                universe = [r async for r in index.find(everything)]
                expected = sorted(r[unique] for r in universe if matches(query, r))
                found = sorted([r[unique] async for r in index.find(query)])
                assert found == expected, (query, universe)
