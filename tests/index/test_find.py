"""Index.find / retrieve over a small filled index, and query plans."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import aclosing, closing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from archive.dicom.dataset import Element
from archive.dicom.dictionary import tag_for_keyword
from archive.dicom.query import Query, QueryModel, parse_identifier
from archive.dicom.query_keys import KEYS
from archive.dicom.query_match import matches
from archive.index import Index, IndexReadError, StoredInstance, database
from archive.index.query import find_statements, retrieve_statements
from tests.index import CT, MR, SR, make_instance, run

PR, STR = QueryModel.PATIENT_ROOT, QueryModel.STUDY_ROOT


def q(level: str, *keys: tuple[str, Any], model: QueryModel = STR, **options: Any) -> Query:
    """A parsed query; a value is text, or for a sequence key its items (Elements)."""
    elements = [Element(0x00080052, "CS", level.encode())]
    for keyword, value in keys:
        tag = tag_for_keyword(keyword)
        assert tag is not None
        data = value if isinstance(value, tuple) else value.encode("utf-8")
        elements.append(Element(tag, KEYS[tag].vr, data))
    if any(isinstance(value, str) and not value.isascii() for _, value in keys):
        elements.append(Element(0x00080005, "CS", b"ISO_IR 192"))
    return parse_identifier(elements, model, **options)


def instances() -> list[StoredInstance]:
    """Two patients; P1 with a CT+SR study and an MR study, P2 with one CT study."""
    common = {"patient_name": "Smith^John", "patient_birth_date": "19700101"}
    a = {"study": "1.1", "patient_id": "P1", "accession_number": "A1", **common}
    a |= {"study_date": "20240101", "study_time": "101500", "study_description": "HEAD"}
    b = {"study": "1.2", "patient_id": "P1", "accession_number": "A2", **common}
    b |= {"study_date": "20240315", "study_time": "080000", "modality": "MR", "sop_class": MR}
    a |= {"referring_physician_name": "Strauß^Ärztin"}
    c = {"study": "2.1", "patient_id": "P2", "accession_number": "A3", "patient_name": "Müller^Jö"}
    c |= {"study_date": "20231231", "study_time": "235959"}
    return [
        make_instance(1, **a, series_number=1, rows=512),
        make_instance(2, **a, series_number=1, rows=512),
        make_instance(3, **a, series="1.1.9", modality="SR", sop_class=SR, series_number=9),
        make_instance(1, **b, series_number=2),
        make_instance(2, **b, series_number=2),
        make_instance(1, **c, series_number=5),
    ]


async def _filled(tmp_path: Path) -> Index:
    index = await Index.open(tmp_path / "index.sqlite", durability="fast")
    for item in instances():
        await index.add(item)
    return index


async def _all(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


async def _find(tmp_path: Path, queries: list[Query], key: str, **kw: Any) -> list[list[Any]]:
    async with await _filled(tmp_path) as index:
        return [[r[key] for r in await _all(index.find(query, **kw))] for query in queries]


CASES = [
    # (query, unique key of the level, expected values in result order)
    (q("STUDY", ("PatientID", "P1")), "StudyInstanceUID", ["1.1", "1.2"]),
    (q("STUDY", ("PatientName", "Smith*")), "StudyInstanceUID", ["1.1", "1.2"]),
    (q("STUDY", ("PatientName", "smith*")), "StudyInstanceUID", []),
    (
        q("STUDY", ("PatientName", "SMITH*"), fold_person_names=True),
        "StudyInstanceUID",
        ["1.1", "1.2"],
    ),
    (q("STUDY", ("PatientName", "MÜLLER*"), fold_person_names=True), "StudyInstanceUID", ["2.1"]),
    (q("STUDY", ("PatientName", "*ll*")), "StudyInstanceUID", ["2.1"]),
    # Every PN key folds with the option, not only Patient Name; casefold, not lower().
    (q("STUDY", ("ReferringPhysicianName", "STRAUSS*")), "StudyInstanceUID", []),
    (
        q("STUDY", ("ReferringPhysicianName", "STRAUSS^ÄRZTIN"), fold_person_names=True),
        "StudyInstanceUID",
        ["1.1"],
    ),
    (
        q("STUDY", ("ReferringPhysicianName", "strauß*"), fold_person_names=True),
        "StudyInstanceUID",
        ["1.1"],
    ),
    (q("STUDY", ("StudyDate", "20240101-")), "StudyInstanceUID", ["1.1", "1.2"]),
    (q("STUDY", ("StudyDate", "-20240101")), "StudyInstanceUID", ["2.1", "1.1"]),
    (q("STUDY", ("StudyTime", "0800-1015")), "StudyInstanceUID", ["1.2", "1.1"]),
    (q("STUDY", ("AccessionNumber", "A2")), "StudyInstanceUID", ["1.2"]),
    (q("STUDY", ("StudyInstanceUID", "1.2\\2.1")), "StudyInstanceUID", ["1.2", "2.1"]),
    (q("STUDY", ("ModalitiesInStudy", "SR")), "StudyInstanceUID", ["1.1"]),
    (q("STUDY", ("ModalitiesInStudy", "MR\\SR")), "StudyInstanceUID", ["1.1", "1.2"]),
    (q("STUDY", ("SOPClassesInStudy", MR)), "StudyInstanceUID", ["1.2"]),
    (q("STUDY", ("StudyDescription", "HEAD")), "StudyInstanceUID", ["1.1"]),
    (q("STUDY", ("StudyDescription", "*")), "StudyInstanceUID", ["1.1", "1.2", "2.1"]),
    (q("STUDY", ("StudyDescription", "?*")), "StudyInstanceUID", ["1.1"]),
    (q("PATIENT", ("PatientName", "*"), model=PR), "PatientID", ["P1", "P2"]),
    (q("PATIENT", ("PatientBirthDate", "19700101"), model=PR), "PatientID", ["P1"]),
    (q("STUDY", ("PatientID", "P2"), model=PR), "StudyInstanceUID", ["2.1"]),
    (q("SERIES", ("StudyInstanceUID", "1.1")), "SeriesInstanceUID", ["1.1.1", "1.1.9"]),
    (q("SERIES", ("Modality", "CT")), "SeriesInstanceUID", ["1.1.1", "2.1.1"]),
    (q("SERIES", ("SeriesNumber", "2")), "SeriesInstanceUID", ["1.2.1"]),
    (
        q("SERIES", ("PatientID", "P1"), ("Modality", "MR"), model=PR),
        "SeriesInstanceUID",
        ["1.2.1"],
    ),
    (q("IMAGE", ("SeriesInstanceUID", "1.1.1")), "SOPInstanceUID", ["1.1.1.1", "1.1.1.2"]),
    (q("IMAGE", ("Rows", "512")), "SOPInstanceUID", ["1.1.1.1", "1.1.1.2"]),
    (q("IMAGE", ("SOPClassUID", SR)), "SOPInstanceUID", ["1.1.9.3"]),
    (q("IMAGE", ("InstanceNumber", "2"), ("StudyDate", "20240315")), "SOPInstanceUID", ["1.2.1.2"]),
    (q("IMAGE", ("InstanceNumber", "3"), ("StudyDate", "20240315")), "SOPInstanceUID", []),
]


@pytest.mark.parametrize(("query", "key", "expected"), CASES)
def test_find(tmp_path: Path, query: Query, key: str, expected: list[str]) -> None:
    (found,) = run(_find(tmp_path, [query], key))
    assert sorted(found) == sorted(expected)


def test_study_record(tmp_path: Path) -> None:
    async def scenario() -> list[dict[str, object]]:
        async with await _filled(tmp_path) as index:
            return await _all(index.find(q("STUDY", ("StudyInstanceUID", "1.1"))))

    (record,) = run(scenario())
    assert record == {
        "PatientID": "P1",
        "IssuerOfPatientID": "",
        "PatientName": "Smith^John",
        "PatientBirthDate": "19700101",
        "PatientSex": "",
        "NumberOfPatientRelatedStudies": 2,
        "NumberOfPatientRelatedSeries": 3,
        "NumberOfPatientRelatedInstances": 5,
        "OtherPatientIDsSequence": "",
        "StudyInstanceUID": "1.1",
        "StudyDate": "20240101",
        "StudyTime": "101500",
        "AccessionNumber": "A1",
        "StudyID": "",
        "StudyDescription": "HEAD",
        "ReferringPhysicianName": "Strauß^Ärztin",
        "ModalitiesInStudy": "CT\\SR",
        "SOPClassesInStudy": f"{CT}\\{SR}",
        "NumberOfStudyRelatedSeries": 2,
        "NumberOfStudyRelatedInstances": 3,
        "ProcedureCodeSequence": "",
    }


def test_image_record_carries_levels_above(tmp_path: Path) -> None:
    async def scenario() -> list[dict[str, object]]:
        async with await _filled(tmp_path) as index:
            return await _all(index.find(q("IMAGE", ("SOPInstanceUID", "1.1.9.3"))))

    (record,) = run(scenario())
    assert record["PatientID"] == "P1"
    assert record["StudyInstanceUID"] == "1.1"
    assert record["SeriesInstanceUID"] == "1.1.9"
    assert record["NumberOfSeriesRelatedInstances"] == 1
    assert record["Modality"] == "SR"
    assert record["SOPClassUID"] == SR
    assert record["InstanceNumber"] == 3
    assert record["Rows"] is None


def test_limit_and_paging(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        async with await Index.open(tmp_path / "index.sqlite", durability="fast") as index:
            for n in range(300):  # more than the first page and one full page
                await index.add(make_instance(n, study=f"9.{n}", patient_id=f"P{n}"))
            every = [r["StudyInstanceUID"] async for r in index.find(q("STUDY"))]
            some = [r["StudyInstanceUID"] async for r in index.find(q("STUDY"), limit=20)]
            return every, some

    every, some = run(scenario())
    assert sorted(every) == sorted(f"9.{n}" for n in range(300))
    assert len(set(every)) == 300
    assert len(some) == 20
    assert set(some) <= set(every)


def test_an_answer_limited_within_one_read_reads_no_pks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A limit within the first read (``max_matches`` of 255 or less): the rest
    of the matches' pks were read, then none used."""
    pks: list[object] = []
    real = Index._pks

    async def counting(self: Index, *args: Any, **kwargs: Any) -> Any:
        pks.append(args)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(Index, "_pks", counting)

    async def scenario() -> int:
        async with await Index.open(tmp_path / "index.sqlite", durability="fast") as index:
            for n in range(40):
                await index.add(make_instance(n, study=f"9.{n}", patient_id=f"P{n}"))
            return len([r async for r in index.find(q("STUDY"), limit=21)])

    assert run(scenario()) == 21
    assert pks == []


def test_a_small_answer_is_one_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A query of no match or few is answered from one read of its records (one
    snapshot of the index): no pks read apart, no page read after."""
    reads: list[str] = []
    real_page, real_pks = Index._page, Index._pks

    async def page(self: Index, *args: Any) -> Any:
        reads.append("page")
        return await real_page(self, *args)

    async def pks(self: Index, *args: Any, **kwargs: Any) -> Any:
        reads.append("pks")
        return await real_pks(self, *args, **kwargs)

    monkeypatch.setattr(Index, "_page", page)
    monkeypatch.setattr(Index, "_pks", pks)

    async def scenario() -> tuple[list[Any], list[Any]]:
        async with await _filled(tmp_path) as index:
            none = await _all(index.find_rows(q("STUDY", ("StudyInstanceUID", "7.7"))))
            one = await _all(index.find_rows(q("STUDY", ("StudyInstanceUID", "1.1"))))
            return none, one

    none, one = run(scenario())
    assert none == []
    assert [len(rows) for rows in one] == [1]
    assert reads == []


def test_retrieve_and_count(tmp_path: Path) -> None:
    async def scenario() -> list[list[str]]:
        async with await _filled(tmp_path) as index:
            out = []
            for query in (
                q("STUDY", ("StudyInstanceUID", "1.1\\2.1"), purpose="retrieve"),
                q("PATIENT", ("PatientID", "P1"), model=PR, purpose="retrieve"),
                q("SERIES", ("SeriesInstanceUID", "1.2.1"), purpose="retrieve"),
                q("IMAGE", ("SOPInstanceUID", "1.1.1.2\\1.1.9.3\\9.9"), purpose="retrieve"),
                q("STUDY", ("StudyInstanceUID", "7.7"), purpose="retrieve"),
                # Patient Root, STUDY level: the Patient ID above selects too.
                q(
                    "STUDY",
                    ("PatientID", "P1"),
                    ("StudyInstanceUID", "1.1\\2.1"),
                    model=PR,
                    purpose="retrieve",
                ),
            ):
                rows = [row.sop_instance_uid for row in await index.retrieve(query)]
                out.append(rows)
        return out

    assert run(scenario()) == [
        ["1.1.1.1", "1.1.1.2", "1.1.9.3", "2.1.1.1"],
        ["1.1.1.1", "1.1.1.2", "1.1.9.3", "1.2.1.1", "1.2.1.2"],
        ["1.2.1.1", "1.2.1.2"],
        ["1.1.1.2", "1.1.9.3"],
        [],
        ["1.1.1.1", "1.1.1.2", "1.1.9.3"],
    ]


def test_a_list_of_more_uids_than_sqlite_takes_variables(tmp_path: Path) -> None:
    """A C-MOVE or C-FIND listing 260,000 SOP Instance UIDs (a client sending a
    study's every UID, twice over): each value was a bound variable, SQLite takes
    250,000 at most, and the node aborted the association (review). Such a list
    goes in as one JSON array now; duplicates count once."""
    many = "\\".join(["1.1.1.2", "1.1.9.3", "1.1.1.2"] + [f"9.9.{n}" for n in range(260_000)])

    async def scenario() -> tuple[list[str], list[str]]:
        async with await _filled(tmp_path) as index:
            moved = await index.retrieve(q("IMAGE", ("SOPInstanceUID", many), purpose="retrieve"))
            query = q("IMAGE", ("StudyInstanceUID", "1.1"), ("SeriesInstanceUID", ""),
                      ("SOPInstanceUID", many))  # fmt: skip
            found = [r["SOPInstanceUID"] for r in await _all(index.find(query))]
            return [row.sop_instance_uid for row in moved], found

    moved, found = run(scenario())
    assert moved == ["1.1.1.2", "1.1.9.3"]
    assert sorted(found) == ["1.1.1.2", "1.1.9.3"]


def test_a_read_that_sqlite_fails_is_an_index_read_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite failing in a reader comes out as IndexReadError, which the services
    answer with a status (they aborted the association on sqlite3.Error), and the
    reader goes back to the pool: the next read works."""
    broken = ("SELECT no_such_column FROM instance", ())
    real = database.retrieve_statements

    async def scenario() -> list[str]:
        async with await _filled(tmp_path) as index:
            query = q("IMAGE", ("SOPInstanceUID", "1.1.1.2"), purpose="retrieve")
            for _ in range(3):  # more than the pool's readers
                monkeypatch.setattr(database, "retrieve_statements", lambda query: broken)
                with pytest.raises(IndexReadError, match="no such column") as info:
                    await index.retrieve(query)
                assert isinstance(info.value.__cause__, sqlite3.OperationalError)
            monkeypatch.setattr(database, "retrieve_statements", real)
            return [row.sop_instance_uid for row in await index.retrieve(query)]

    assert run(scenario()) == ["1.1.1.2"]


def test_retrieve_row_fields(tmp_path: Path) -> None:
    async def scenario() -> list[Any]:
        async with await _filled(tmp_path) as index:
            query = q("IMAGE", ("SOPInstanceUID", "2.1.1.1"), purpose="retrieve")
            return await index.retrieve(query)

    (row,) = run(scenario())
    assert (row.study_instance_uid, row.series_instance_uid, row.sop_class_uid) == (
        "2.1",
        "2.1.1",
        CT,
    )
    assert row.path == "data/2.1.1/1.dcm"


# -- person names held trimmed: SQL and the in-memory matcher agree ---------------------

#: Names as the index holds them (trimmed of trailing empty components), and
#: patterns whose wild card components may stand for absent ones.
HELD_NAMES = ["", "DOE", "DOE^JOHN", "DOEX^JOHN", "YAMADA=\u5c71\u7530",
              "YAMADA=\u5c71\u7530^\u592a\u90ce", "POE=JOHN", "=X", "A^B^C"]  # fmt: skip
NAME_PATTERNS = ["DOE^*", "DOE^*^*", "*^*", "*=*", "*^*^*", "YAMADA^*=\u5c71\u7530^*",
                 "YAMADA^*=\u5c71\u7530*", "POE^*=JO*", "DOE?", "*^JOHN", "A^*^C",
                 "DOE^*=*", "?*"]  # fmt: skip
NAME_EXPECTED = {
    "DOE^*": {"DOE", "DOE^JOHN"},
    "*^*": set(HELD_NAMES) - {""},
    "YAMADA^*=\u5c71\u7530^*": {"YAMADA=\u5c71\u7530", "YAMADA=\u5c71\u7530^\u592a\u90ce"},
    "POE^*=JO*": {"POE=JOHN"},
}


@pytest.mark.parametrize("unknown", [True, False])
@pytest.mark.parametrize("keyword", ["PatientName", "ReferringPhysicianName"])
def test_person_name_patterns_agree_in_sql_and_in_memory(
    tmp_path: Path, keyword: str, unknown: bool
) -> None:
    """Every pattern finds, through the index, exactly the held names the Python
    matcher (query_match) says it matches, for a Required key and an optional
    one; and those are the names that PS3.5 6.2.1.1 padding lets it match."""
    column = "patient_name" if keyword == "PatientName" else "referring_physician_name"
    items = [
        make_instance(n, study=f"9.{n}", patient_id=f"N{n}", **{column: name})
        for n, name in enumerate(HELD_NAMES)
    ]

    async def found() -> dict[str, set[str]]:
        async with await Index.open(tmp_path / "names.db") as index:
            for item in items:
                await index.add(item)
            out = {}
            for pattern in NAME_PATTERNS:
                query = q("STUDY", (keyword, pattern), match_unknown=unknown)
                records = await _all(index.find(query))
                out[pattern] = {str(r[keyword]) for r in records}
            return out

    by_sql = run(found())
    for pattern in NAME_PATTERNS:
        query = q("STUDY", (keyword, pattern), match_unknown=unknown)
        in_memory = {name for name in HELD_NAMES if matches(query, {keyword: name})}
        assert by_sql[pattern] == in_memory, pattern
        if pattern in NAME_EXPECTED:
            want = NAME_EXPECTED[pattern] | ({""} if "" in in_memory else set())
            assert in_memory == want, pattern


# -- query plans: the study-level queries of the issue use indexes ----------------------

PLANNED = [
    q("STUDY", ("PatientID", "P1"), ("StudyInstanceUID", "")),
    q("STUDY", ("PatientName", "SMITH*")),
    q("STUDY", ("PatientName", "SMITH*"), fold_person_names=True),
    # A wild card component after the last caret: the shorter form is one more search.
    q("STUDY", ("PatientName", "SMITH^*"), fold_person_names=True),
    q("STUDY", ("StudyDate", "20240101-20240131")),
    q("STUDY", ("StudyDate", "20240101")),
    # Combined date-time matching: the date's own bounds still search its index.
    *(
        q("STUDY", ("StudyDate", d), ("StudyTime", t), combined_date_time=True, match_unknown=u)
        for d, t in (("20240101-20240131", "1200-0900"), ("20240101-", "1200-"))
        for u in (True, False)
    ),
    q("STUDY", ("AccessionNumber", "A1")),
    q("STUDY", ("StudyInstanceUID", "1.1")),
    q("STUDY", ("StudyInstanceUID", "1.1\\1.2")),
    q("STUDY", ("ModalitiesInStudy", "CT")),
    q("SERIES", ("StudyInstanceUID", "1.1")),
    q("IMAGE", ("StudyInstanceUID", "1.1"), ("SeriesInstanceUID", "1.1.1")),
]


def _plan(db: Path, sql: str, parameters: list[object]) -> list[str]:
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, parameters).fetchall()
    return [row[-1] for row in rows]


@pytest.mark.parametrize("query", PLANNED)
def test_query_plan_uses_indexes(tmp_path: Path, query: Query) -> None:
    run(_find(tmp_path, [], "StudyInstanceUID"))  # creates the schema
    db = tmp_path / "index.sqlite"
    select, parameters, page = find_statements(query)
    for sql, params in (
        (select, parameters),
        (page.by_pk, ["[1,2]", *page.parameters]),
        (page.by_key, ['["1.2.3","1.2.4"]', *page.parameters]),
        (page.first, [*page.parameters, 257]),
    ):
        plan = _plan(db, sql, list(params))
        # The page's own values (json_each, named page) are the one scan allowed:
        # each is then a lookup by pk or unique key.
        scans = [
            step
            for step in plan
            if step.startswith("SCAN") and "json_each" not in step and "SCAN page " not in step
        ]
        assert scans == [], plan


def test_leading_wildcard_scans_patients_only(tmp_path: Path) -> None:
    run(_find(tmp_path, [], "StudyInstanceUID"))
    select, parameters, page = find_statements(q("STUDY", ("PatientName", "*MITH*")))
    for sql, params in ((select, parameters), (page.first, [*page.parameters, 257])):
        plan = _plan(tmp_path / "index.sqlite", sql, params)
        # One scan, of the patient table (or its name index): never of study or instance.
        scans = [step.split(" USING")[0] for step in plan if step.startswith("SCAN")]
        assert scans == ["SCAN p"], plan


def test_retrieve_plan_uses_indexes(tmp_path: Path) -> None:
    run(_find(tmp_path, [], "StudyInstanceUID"))
    for query, patient_joined in (
        (q("STUDY", ("StudyInstanceUID", "1.1"), purpose="retrieve"), False),
        (q("PATIENT", ("PatientID", "P1"), model=PR, purpose="retrieve"), True),
        (
            q(
                "STUDY",
                ("PatientID", "P1"),
                ("StudyInstanceUID", "1.1"),
                model=PR,
                purpose="retrieve",
            ),
            False,  # the Patient ID goes to a subquery on patient: no join
        ),
    ):
        select, parameters = retrieve_statements(query)
        plan = _plan(tmp_path / "index.sqlite", select, parameters)
        assert [s for s in plan if s.startswith("SCAN")] == [], plan
        assert ("JOIN patient" in select) is patient_joined, select


def test_unknown_required_keys_match(tmp_path: Path) -> None:
    """PS3.4 C.2.2.1.2: an entity with a zero-length Required Key matches any value for
    it; a zero-length Optional Key matches only universal matching."""

    async def scenario() -> list[list[Any]]:
        async with await Index.open(tmp_path / "index.sqlite", durability="fast") as index:
            dated = {"study": "3.1", "patient_id": "P3", "study_date": "20240101"}
            dated |= {"accession_number": "A9", "study_description": "HEAD"}
            undated = {"study": "3.2", "patient_id": "P3", "study_date": ""}
            undated |= {"accession_number": "", "study_description": ""}
            await index.add(make_instance(1, **dated))
            await index.add(make_instance(1, **undated))
            queries = [
                q("STUDY", ("StudyDate", "20240101-20240131")),
                q("STUDY", ("AccessionNumber", "A9")),
                q("STUDY", ("StudyDescription", "HEAD")),
                q("STUDY", ("StudyDate", "20250101"), ("StudyDescription", "*")),
                q("STUDY", ("StudyDate", "20240101-20240131"), match_unknown=False),
            ]
            return [
                sorted(r["StudyInstanceUID"] for r in await _all(index.find(query)))
                for query in queries
            ]

    assert run(scenario()) == [["3.1", "3.2"], ["3.1", "3.2"], ["3.1"], ["3.2"], ["3.1"]]


# Combined date-time matching over a grid: every stored date x time (unknown ones
# too) against keys with closed, open and one-day ends; the SQL must agree with
# the reference matcher on each.
_GRID_DATES = ["20240104", "20240105", "20240210", "20240320", "20240321", ""]
_GRID_TIMES = ["", "09", "0859", "120000", "1159.5", "23:59:59"]
_COMBINED_KEYS = [
    # Ranges of the same form: combined.
    ("20240105-20240320", "1200-0900"),
    ("20240105-", "1200-"),
    ("-20240320", "-0900"),
    ("20240210-20240210", "0900-1200"),
    # Other pairs: key by key.
    ("20240105-20240320", "1200-"),
    ("20240105-20240320", "-0900"),
    ("20240210", "0900-1200"),
    ("20240105-20240320", "12"),
]


@pytest.mark.parametrize("match_unknown", [True, False])
def test_combined_date_time_sql_agrees_with_the_reference(
    tmp_path: Path, match_unknown: bool
) -> None:
    records: dict[str, dict[str, str]] = {}
    items = []
    for d, date in enumerate(_GRID_DATES):
        for t, time in enumerate(_GRID_TIMES):
            study = f"9.{d}.{t}"
            records[study] = {"StudyDate": date, "StudyTime": time}
            items.append(make_instance(1, study=study, study_date=date, study_time=time))

    async def main() -> None:
        async with await Index.open(tmp_path / "index.sqlite", durability="fast") as index:
            for item in items:
                await index.add(item)
            for date_key, time_key in _COMBINED_KEYS:
                query = q(
                    "STUDY",
                    ("StudyDate", date_key),
                    ("StudyTime", time_key),
                    combined_date_time=True,
                    match_unknown=match_unknown,
                )
                combined = [c.time_keyword for c in query.conditions] == ["StudyTime"]
                assert combined is (_COMBINED_KEYS.index((date_key, time_key)) < 4)
                found = sorted(str(r["StudyInstanceUID"]) for r in await _all(index.find(query)))
                expected = sorted(s for s, record in records.items() if matches(query, record))
                assert found == expected, (date_key, time_key)
                assert expected, "each key pair matches something"

    run(main())


def test_sequences_follow_the_latest_non_empty_value(tmp_path: Path) -> None:
    """An instance without a study's, series' or patient's sequence keeps the one
    stored; a later different one replaces it (as the other columns, batch.py)."""
    first = '[{"CodeValue":"A"}]'
    second = '[{"CodeValue":"B"}]'
    ids = '[{"PatientID":"X-1"}]'
    later_ids = '[{"PatientID":"X-2"}]'

    async def scenario() -> list[tuple[object, ...]]:
        async with await Index.open(tmp_path / "index.sqlite", durability="fast") as index:
            found = []
            steps = [
                {"procedure_code_sequence": first, "other_patient_ids_sequence": ids},
                {},  # nothing: nothing erased
                {"procedure_code_sequence": second, "other_patient_ids_sequence": later_ids},
            ]
            for n, attrs in enumerate(steps, 1):
                await index.add(
                    make_instance(
                        n,
                        request_attributes_sequence=attrs.get("procedure_code_sequence", ""),
                        **attrs,
                    )
                )
                (record,) = await _all(index.find(q("SERIES", ("SeriesInstanceUID", "1.2.3.1"))))
                (patient,) = await _all(index.find(q("PATIENT", model=PR)))
                found.append(
                    (
                        record["ProcedureCodeSequence"],
                        record["RequestAttributesSequence"],
                        patient["OtherPatientIDsSequence"],
                    )
                )
            return found

    assert run(scenario()) == [
        (first, first, ids),
        (first, first, ids),
        (second, second, later_ids),
    ]


def test_a_string_where_nested_items_belong_fails_no_query(tmp_path: Path) -> None:
    """Only header.py writes these columns, and never a string for a nested
    sequence; the SQL holds even if one is there: no match, no error."""
    bad = '[{"RequestedProcedureCodeSequence":"X1","RequestedProcedureID":"RP1"}]'
    good = '[{"RequestedProcedureCodeSequence":[{"CodeValue":"X1"}]}]'
    nested = Element(0x00321064, "SQ", ((Element(0x00080100, "SH", b"X1"),),))
    query = q("SERIES", ("RequestAttributesSequence", ((nested,),)))

    async def scenario() -> list[object]:
        async with await Index.open(tmp_path / "index.sqlite", durability="fast") as index:
            await index.add(make_instance(1, series="1.2.3.1", request_attributes_sequence=bad))
            await index.add(make_instance(2, series="1.2.3.2", request_attributes_sequence=good))
            every = await _all(index.find(q("SERIES")))
            assert [r for r in every if matches(query, r)] == [
                r for r in every if r["SeriesInstanceUID"] == "1.2.3.2"
            ]
            return [r["SeriesInstanceUID"] for r in await _all(index.find(query))]

    assert run(scenario()) == ["1.2.3.2"]


def test_an_entity_whose_pk_went_to_another_between_reads_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pks are read first, the records page by page after. Meanwhile a
    replacement moves ALICE's only instance into a new series of BOB's: her series
    goes, and SQLite hands its pk (the highest) to the new series. Read by pk
    alone, the page returned BOB's series to a query for ALICE."""
    replaced = make_instance(1, study="2.2", series="2.2.5", patient_id="BOB")
    moved = msgspec.structs.replace(
        replaced,
        attrs=msgspec.structs.replace(replaced.attrs, sop_instance_uid="1.1.1.1"),
    )
    seen: list[str] = []

    async def main() -> None:
        async with await Index.open(tmp_path / "index.sqlite") as index:
            await index.add(make_instance(1, study="2.2", series="2.2.1", patient_id="BOB"))
            await index.add(make_instance(1, study="1.1", series="1.1.1", patient_id="ALICE"))
            real = Index._pks

            async def pks_then_replace(self: Index, *args: Any, **kwargs: Any) -> Any:
                read = await real(self, *args, **kwargs)
                await index.replace(moved)  # between the pks and the page
                return read

            monkeypatch.setattr(Index, "_pks", pks_then_replace)
            monkeypatch.setattr(database, "_SNAPSHOT", 0)  # the two-step read
            query = q("SERIES", ("PatientID", "ALICE"), ("SeriesInstanceUID", ""))
            async for record in index.find(query):
                seen.append(str(record["SeriesInstanceUID"]))
            monkeypatch.undo()
            # The new series took the pk ALICE's had (else the test shows nothing).
            async for record in index.find(q("SERIES", ("SeriesInstanceUID", "2.2.5"))):
                seen.append(f"new: {record['SeriesInstanceUID']}")

    run(main())
    assert seen == ["new: 2.2.5"]
    with closing(sqlite3.connect(tmp_path / "index.sqlite")) as conn:
        rows = conn.execute("SELECT pk, series_instance_uid FROM series ORDER BY pk").fetchall()
    assert rows == [(1, "2.2.1"), (2, "2.2.5")]  # pk 2: ALICE's series', then the new one


# ---- pages read while ingest goes on ----------------------------------------------------


#: A series of 20 instances, and a query of its instances.
SERIES_OF_20 = [make_instance(n, study="1.2.3", series="1.2.3.1") for n in range(1, 21)]
SERIES_QUERY = q("IMAGE", ("StudyInstanceUID", "1.2.3"), ("SeriesInstanceUID", "1.2.3.1"),
                 ("SOPInstanceUID", ""))  # fmt: skip


def _listed_while_changed(tmp_path: Path, change: str) -> list[tuple[str, str]]:
    """(SOP Instance UID, Study Instance UID) of each record of SERIES_QUERY, the
    14th instance ``change``d ("replaced": other content, a new pk; "moved": a
    correction to study 1.2.3.99, its series following) once 4 were read."""

    async def scenario() -> list[tuple[str, str]]:
        async with await Index.open(tmp_path / "index.sqlite") as index:
            for item in SERIES_OF_20:
                await index.add(item)
            seen: list[tuple[str, str]] = []
            async with aclosing(index.find(SERIES_QUERY)) as records:
                async for record in records:
                    seen.append((str(record["SOPInstanceUID"]), str(record["StudyInstanceUID"])))
                    if len(seen) == 4:
                        # Not the last added: SQLite would give its pk back to it.
                        last = SERIES_OF_20[13]
                        if change == "replaced":
                            new = msgspec.structs.replace(last, size=2000, digest="f" * 64)
                        else:
                            attrs = msgspec.structs.replace(
                                last.attrs, study_instance_uid="1.2.3.99"
                            )
                            new = msgspec.structs.replace(last, attrs=attrs)
                        await index.replace(new)
            if change == "moved":
                assert [r async for r in index.find(SERIES_QUERY)] == []  # it has moved
            return seen

    return run(scenario())


@pytest.mark.parametrize("change", ["replaced", "moved"])
def test_pages_read_under_replacements_answer_what_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """A query's pks are read first, its pages later while ingest goes on. A
    replacement gives its instance a new pk: the page missed it, though it was
    held all along. A correction moves its series to another study: the page
    answered those instances under that study, matching no key of the query
    (PS3.4 C.2.2.1). Both seen by a review under real load; here the change comes
    between two pages (the answer is larger than one read, _SNAPSHOT)."""
    monkeypatch.setattr(database, "_SNAPSHOT", 4)
    monkeypatch.setattr(database, "_FIRST_PAGE", 4)
    monkeypatch.setattr(database, "_PAGE", 4)
    seen = _listed_while_changed(tmp_path, change)
    assert all(study == "1.2.3" for _, study in seen), seen  # only what matches
    uids = [uid for uid, _ in seen]
    assert len(uids) == len(set(uids))
    every = [item.attrs.sop_instance_uid for item in SERIES_OF_20]
    if change == "replaced":
        # None missed (its new pk may read it later than its place in the series).
        assert sorted(uids) == sorted(every)
    else:  # moved away: the snapshot's 4, and the rest read after the move: none
        assert uids == every[:4], uids


def test_an_answer_that_fits_in_one_read_is_a_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A correction moves a series to another study while a query of that series'
    instances is answered: an answer of up to _SNAPSHOT records lists it whole
    as it was (it listed the instances of the pages read before the move only)."""
    monkeypatch.setattr(database, "_FIRST_PAGE", 4)
    monkeypatch.setattr(database, "_PAGE", 4)
    seen = _listed_while_changed(tmp_path, "moved")
    assert seen == [(item.attrs.sop_instance_uid, "1.2.3") for item in SERIES_OF_20]


#: Stored times, and which of them each key matches (by meaning, PS3.4 C.2.2.2.1.3).
_FRACTION_TIMES = {"a": "235959", "b": "235959.000", "c": "101530.250", "d": "235959.5"}
_FRACTION_KEYS = [
    ("235959.0", ["a", "b"]),
    ("235959.000000", ["a", "b"]),
    ("235959", ["a", "b", "d"]),  # a key without a fraction is the whole second
    ("235959.0-235959.5", ["a", "b", "d"]),
    ("235959.1-", ["d"]),
    ("-235959.0", ["a", "b", "c"]),
    ("101530.25", ["c"]),
    ("101530.2500", ["c"]),
]


@pytest.mark.parametrize(("key", "expected"), _FRACTION_KEYS)
def test_a_time_with_a_fraction_matches_by_meaning(
    tmp_path: Path, key: str, expected: list[str]
) -> None:
    """A review: times were compared as strings, and "235959" < "235959.0", so a
    key with a zero fraction missed a stored time without one. The index and the
    reference matcher agree on each key."""

    async def main() -> list[str]:
        async with await Index.open(tmp_path / "index.sqlite", durability="fast") as index:
            for n, (name, time) in enumerate(_FRACTION_TIMES.items(), 1):
                await index.add(make_instance(n, study=f"7.{name}", study_time=time))
            query = q("STUDY", ("StudyTime", key))
            return sorted(str(r["StudyInstanceUID"])[2:] for r in await _all(index.find(query)))

    assert run(main()) == expected
    query = q("STUDY", ("StudyTime", key))
    reference = [n for n, t in _FRACTION_TIMES.items() if matches(query, {"StudyTime": t})]
    assert reference == expected
