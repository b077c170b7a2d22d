"""Round trips, the update rule, aggregates after add/replace/remove, stats, paths."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.dicom.attributes import InstanceAttributes
from archive.index import (
    DuplicateInstanceError,
    Index,
    IndexWriteError,
    InstanceRow,
    InvalidRecordError,
    Stats,
    StoredInstance,
)
from tests.index import CT, MR, SR, make_instance, query, run

STUDY_AGGREGATES = """
SELECT study_instance_uid, number_of_series, number_of_instances, modalities_in_study,
       sop_classes_in_study
FROM study ORDER BY study_instance_uid
"""
SERIES_COUNTS = "SELECT series_instance_uid, number_of_instances FROM series ORDER BY 1"
PATIENT_AGGREGATES = """
SELECT patient_id, issuer_of_patient_id, number_of_studies, number_of_series,
       number_of_instances
FROM patient ORDER BY patient_id, issuer_of_patient_id
"""
SOP_CLASS_COUNTS = """
SELECT st.study_instance_uid, c.sop_class_uid, c.instances
FROM study_sop_class AS c JOIN study AS st ON st.pk = c.study_pk ORDER BY 1, 2
"""

# Every field set, none to its default, text beyond ASCII: a true round trip.
FULL = StoredInstance(
    attrs=InstanceAttributes(
        specific_character_set="ISO_IR 192",
        patient_id="PID-42",
        patient_name="Müller^Jürgen=ミュラー",
        patient_birth_date="19700102",
        patient_sex="M",
        issuer_of_patient_id="HOSPITAL-A",
        study_instance_uid="1.2.826.0.1.1",
        study_date="20240229",
        study_time="235959.123456",
        accession_number="ACC-9",
        study_id="S7",
        study_description="CT THORAX",
        referring_physician_name="Who^Doctor",
        series_instance_uid="1.2.826.0.1.1.2",
        modality="CT",
        series_number=3,
        series_description="AXIAL 1mm",
        body_part_examined="CHEST",
        series_date="20240301",
        series_time="000102",
        sop_class_uid=CT,
        sop_instance_uid="1.2.826.0.1.1.2.3",
        content_date="20240302",
        content_time="010203",
        instance_number=17,
        number_of_frames=2,
        rows=512,
        columns=256,
        other_patient_ids_sequence='[{"PatientID":"X-7","IssuerOfPatientID":"CLINIC"}]',
        procedure_code_sequence='[{"CodeValue":"CTTHX","CodeMeaning":"CT thorax é"}]',
        request_attributes_sequence='[{"RequestedProcedureID":"RP1"},{"AccessionNumber":"A2"}]',
        concept_name_code_sequence='[{"CodeValue":"113000","CodingSchemeDesignator":"DCM"}]',
        content_template_sequence='[{"MappingResource":"DCMR","TemplateIdentifier":"2010"}]',
    ),
    path="ab/cd/1.2.826.0.1.1.2.3.dcm",
    size=524_288 + 1234,
    digest="e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    transfer_syntax_uid="1.2.840.10008.1.2.4.90",
    source_ae="CT_SCANNER_01",
    received_at=1_717_171_717.125,
)


def test_every_field_round_trips(tmp_path: Path) -> None:
    for name in msgspec.structs.fields(InstanceAttributes):
        assert getattr(FULL.attrs, name.name) != name.default, name.name

    async def main() -> None:
        async with await Index.open(tmp_path / "index.db") as index:
            await index.add(FULL)
            uid = FULL.attrs.sop_instance_uid
            assert await index.record(uid) == FULL
            assert await index.instance(uid) == InstanceRow(
                sop_instance_uid=uid,
                study_instance_uid="1.2.826.0.1.1",
                series_instance_uid="1.2.826.0.1.1.2",
                sop_class_uid=CT,
                path="ab/cd/1.2.826.0.1.1.2.3.dcm",
                size=525_522,
                digest=FULL.digest,
                transfer_syntax_uid="1.2.840.10008.1.2.4.90",
            )
            assert await index.instance("1.2.3.4.404") is None
            assert await index.record("1.2.3.4.404") is None

    run(main())
    # Case-insensitive matching beyond ASCII works on the folded column.
    assert query(tmp_path / "index.db", "SELECT patient_name_folded FROM patient") == [
        ("müller^jürgen=ミュラー",)
    ]


def test_staged_values_keep_their_exact_value_and_type(tmp_path: Path) -> None:
    # A batch's rows reach SQLite as one JSON array (batch.py): floats must come
    # back bit for bit, text whatever it holds, None as NULL, ints as integers.
    tricky = [
        msgspec.structs.replace(
            FULL,
            attrs=msgspec.structs.replace(
                FULL.attrs,
                # Each its own patient, study and series: later values would update.
                patient_id=f"PID-{n}",
                study_instance_uid=f"1.2.826.0.1.{n}",
                series_instance_uid=f"1.2.826.0.1.{n}.2",
                sop_instance_uid=f"1.2.826.0.1.{n}.2.3",
                patient_name=name,
                study_description='quote " backslash \\ tab \t nul-free \U0001f600',
                series_number=None,
                instance_number=2**31 - 1,
                rows=None,
            ),
            received_at=received_at,
            size=2**40 + n,
        )
        for n, (name, received_at) in enumerate(
            [
                ("Doe^John", 1_764_338_400.123_456_7),
                ("", 0.1 + 0.2),
                ("\u00e9\u00e8=\u5c71\u7530", 5e-324),
                ("x" * 64, 1.7976931348623157e308),
            ],
            start=10,
        )
    ]

    async def main() -> None:
        async with await Index.open(tmp_path / "index.db") as index:
            await asyncio.gather(*(index.add(item) for item in tricky))
            for item in tricky:
                got = await index.record(item.attrs.sop_instance_uid)
                assert got is not None
                assert got.received_at.hex() == item.received_at.hex()
                assert got == item

    run(main())
    types = query(
        tmp_path / "index.db",
        "SELECT DISTINCT typeof(received_at), typeof(size), typeof(rows), typeof(instance_number)"
        " FROM instance",
    )
    assert types == [("real", "integer", "null", "integer")]


#: Every patient, study and series value an instance brings, and two values of it.
_LEVEL_VALUES = {
    "patient_name": ("Doe^John", "Roe^Jane"),
    "patient_birth_date": ("19700101", "19800202"),
    "patient_sex": ("F", "M"),
    "study_date": ("20240101", "20240102"),
    "study_time": ("101500", "111500"),
    "accession_number": ("ACC1", "ACC2"),
    "study_id": ("S1", "S2"),
    "study_description": ("HEAD", "CHEST"),
    "referring_physician_name": ("Who^A", "Who^B"),
    "modality": ("CT", "MR"),
    "series_number": (1, 2),
    "series_description": ("AX", "COR"),
    "body_part_examined": ("HEAD", "CHEST"),
    "series_date": ("20240101", "20240103"),
    "series_time": ("101600", "121600"),
    "specific_character_set": ("ISO_IR 100", "ISO_IR 192"),
}


def test_a_case_only_name_correction_and_a_first_series_number_are_taken(tmp_path: Path) -> None:
    """What the upserts' change test must not miss: a name whose folded form is the
    same, and a series number where there was none."""
    first = make_instance(1, patient_name="Doe^John", series_number=None)
    second = make_instance(2, patient_name="DOE^JOHN", series_number=5)

    async def main() -> None:
        async with await Index.open(tmp_path / "index.db") as index:
            await index.add(first)
            await index.add(second)

    run(main())
    db = tmp_path / "index.db"
    assert query(db, "SELECT patient_name FROM patient") == [("DOE^JOHN",)]
    assert query(db, "SELECT series_number FROM series") == [(5,)]


@pytest.mark.parametrize("name", sorted(_LEVEL_VALUES))
def test_a_later_value_alone_updates_its_level(tmp_path: Path, name: str) -> None:
    """The upserts skip rows whose values would not change: each value must count."""
    before, after = _LEVEL_VALUES[name]
    base = {k: v[0] for k, v in _LEVEL_VALUES.items()}
    first = make_instance(1, **base)
    second = make_instance(2, **{**base, name: after})
    third = make_instance(3, **{**base, name: after})

    async def main() -> None:
        async with await Index.open(tmp_path / "index.db") as index:
            await index.add(first)
            record = await index.record(first.attrs.sop_instance_uid)
            assert record is not None
            if name != "specific_character_set":
                assert getattr(record.attrs, name) == before
            await index.add(second)
            await index.add(third)  # nothing changes: the row stays as it is
            record = await index.record(first.attrs.sop_instance_uid)
            assert record is not None
            if name != "specific_character_set":
                assert getattr(record.attrs, name) == after

    run(main())
    if name == "specific_character_set":  # the record gives the instance's own
        for table in ("patient", "study", "series"):
            assert query(tmp_path / "index.db", f"SELECT specific_character_set FROM {table}") == [
                (after,)
            ]


def test_later_non_empty_values_update_empty_ones_do_not_erase(tmp_path: Path) -> None:
    first = make_instance(
        1,
        study_description="FIRST",
        accession_number="ACC1",
        series_number=1,
        series_description="S1",
        patient_sex="F",
    )
    second = make_instance(
        2,
        study_description="",
        accession_number="ACC2",
        patient_name="",
        series_number=None,
        series_description="S1 corrected",
        patient_sex="O",
    )

    async def main() -> None:
        async with await Index.open(tmp_path / "index.db") as index:
            await index.add(first)
            await index.add(second)
            record = await index.record(first.attrs.sop_instance_uid)
            assert record is not None
            got = record.attrs
            assert (got.study_description, got.accession_number) == ("FIRST", "ACC2")
            assert (got.patient_name, got.patient_sex) == ("Doe^John", "O")
            assert (got.series_number, got.series_description) == (1, "S1 corrected")
            # Instance-level values are the instance's own.
            assert got.instance_number == 1
            # In one batch, queue order decides: the last non-empty value wins.
            batch = [
                make_instance(n, study="9.9", study_description=d)
                for n, d in ((1, "a"), (2, ""), (3, "c"), (4, ""))
            ]
            await asyncio.gather(*(index.add(x) for x in batch))
            assert index.writer_stats.largest_batch == 4
            record = await index.record(batch[0].attrs.sop_instance_uid)
            assert record is not None
            assert record.attrs.study_description == "c"

    run(main())


@pytest.mark.parametrize("level", ["study", "series"])
@pytest.mark.parametrize("together", [False, True], ids=["own-batches", "one-batch"])
def test_a_date_and_its_time_come_from_one_instance(
    tmp_path: Path, level: str, together: bool
) -> None:
    """Study (Series) Date and Time are one moment: a later instance with another
    date brings its own time, even an empty one, and one without a date leaves
    the time as it is. Taken each on its own, the row paired the second instance's
    date with the first's time: a moment no instance has, which combined date-time
    matching (PS3.4 C.2.2.2.5) would match."""
    date, time = f"{level}_date", f"{level}_time"
    steps = [
        ({date: "20240101", time: "080000"}, ("20240101", "080000")),
        ({date: "20240102", time: ""}, ("20240102", "")),  # another date: its own time
        ({date: "20240102", time: "093000"}, ("20240102", "093000")),  # same date: filled
        ({date: "", time: "235900"}, ("20240102", "093000")),  # no date: time kept
        ({date: "20240102", time: ""}, ("20240102", "093000")),  # same date, no time
    ]
    db = tmp_path / "index.db"
    table = "study" if level == "study" else "series"

    async def main() -> None:
        async with await Index.open(db) as index:
            if together:
                items = [make_instance(n, **values) for n, (values, _) in enumerate(steps, 1)]
                await asyncio.gather(*(index.add(x) for x in items))
                assert query(db, f"SELECT {date}, {time} FROM {table}") == [steps[-1][1]]
                return
            for n, (values, expected) in enumerate(steps, 1):
                await index.add(make_instance(n, **values))
                assert query(db, f"SELECT {date}, {time} FROM {table}") == [expected], n

    run(main())


def test_links_are_kept_first(tmp_path: Path) -> None:
    db = tmp_path / "index.db"

    async def main() -> None:
        async with await Index.open(db) as index:
            await index.add(make_instance(1, patient_id="P1"))
            # Same study, another patient id: joins the existing tree, no stray patient.
            await index.add(make_instance(2, patient_id="P9"))
            # Same series uid, another study uid: the instance goes to the series' study.
            await index.add(make_instance(3, study="7.7", series="1.2.3.1"))
            record = await index.record("1.2.3.1.2")
            assert record is not None
            assert record.attrs.patient_id == "P1"
            row = await index.instance("1.2.3.1.3")
            assert row is not None
            assert row.study_instance_uid == "1.2.3"
            assert await index.stats() == Stats(
                patients=1, studies=1, series=1, instances=3, bytes=3000
            )

    run(main())
    assert query(db, PATIENT_AGGREGATES) == [("P1", "", 1, 1, 3)]


def test_patient_identity_is_id_and_issuer(tmp_path: Path) -> None:
    db = tmp_path / "index.db"

    async def main() -> None:
        async with await Index.open(db) as index:
            await index.add(make_instance(1, study="1.1", patient_id="P1"))
            await index.add(make_instance(1, study="1.2", patient_id="P1"))  # joins P1
            await index.add(make_instance(1, study="1.3", patient_id="P1", issuer="OTHER"))
            assert (await index.stats()).patients == 2

    run(main())
    assert query(db, PATIENT_AGGREGATES) == [("P1", "", 2, 2, 2), ("P1", "OTHER", 1, 1, 1)]


def _tree() -> list[StoredInstance]:
    a = [make_instance(n, study="A", series="A.1") for n in (1, 2, 3)]
    a += [make_instance(1, study="A", series="A.2", modality="SR", sop_class=SR)]
    a += [make_instance(n, study="A", series="A.3", modality="MR", sop_class=MR) for n in (1, 2)]
    b = [make_instance(n, study="B", series="B.1") for n in (1, 2)]
    c = [
        make_instance(1, study="C", series="C.1", patient_id="P2", modality="MR", sop_class=MR),
        make_instance(1, study="C", series="C.2", patient_id="P2", modality=""),
    ]
    d = [make_instance(1, study="D", series="D.1", issuer="OTHER")]
    return a + b + c + d


def test_aggregates_after_add_replace_remove(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    ct_mr_sr = f"{CT}\\{MR}\\{SR}"

    async def main() -> None:
        async with await Index.open(db) as index:
            tree = _tree()
            # Two concurrent batches and a few single commits.
            await asyncio.gather(*(index.add(x) for x in tree[:5]))
            await asyncio.gather(*(index.add(x) for x in tree[5:9]))
            for item in tree[9:]:
                await index.add(item)
            assert await index.stats() == Stats(
                patients=3, studies=4, series=7, instances=11, bytes=11_000
            )
            assert query(db, STUDY_AGGREGATES) == [
                ("A", 3, 6, "CT\\MR\\SR", ct_mr_sr),
                ("B", 1, 2, "CT", CT),
                ("C", 2, 2, "MR", f"{CT}\\{MR}"),
                ("D", 1, 1, "CT", CT),
            ]
            assert query(db, PATIENT_AGGREGATES) == [
                ("P1", "", 2, 4, 8),
                ("P1", "OTHER", 1, 1, 1),
                ("P2", "", 1, 2, 2),
            ]

            # Replace A.3.1 (MR) by a PT object of class CT in a new series A.4.
            moved = msgspec.structs.replace(
                make_instance(1, study="A", series="A.4", modality="PT", size=5),
                attrs=msgspec.structs.replace(
                    make_instance(1, study="A", series="A.4", modality="PT").attrs,
                    sop_instance_uid="A.3.1",
                ),
            )
            old = await index.replace(moved)
            assert old == InstanceRow(
                "A.3.1",
                "A",
                "A.3",
                MR,
                "data/A.3/1.dcm",
                1000,
                f"{1:064x}",
                tree[4].transfer_syntax_uid,
            )
            assert query(db, STUDY_AGGREGATES)[0] == ("A", 4, 6, "CT\\MR\\PT\\SR", ct_mr_sr)
            assert query(db, SOP_CLASS_COUNTS)[:3] == [("A", CT, 4), ("A", MR, 1), ("A", SR, 1)]
            # Replace the other MR too: series A.3 is now empty and goes away.
            second = msgspec.structs.replace(
                moved, attrs=msgspec.structs.replace(moved.attrs, sop_instance_uid="A.3.2")
            )
            assert (await index.replace(second)) is not None
            assert query(db, STUDY_AGGREGATES)[0] == ("A", 3, 6, "CT\\PT\\SR", f"{CT}\\{SR}")
            # Replacing an unknown UID is an add.
            fresh = make_instance(9, study="A", series="A.4", modality="PT")
            assert await index.replace(fresh) is None
            assert await index.stats() == Stats(
                patients=3, studies=4, series=7, instances=12, bytes=11_000 - 2000 + 10 + 1000
            )

            # Remove: all of study C (patient P2 goes with it), one of B, one unknown.
            removed = await index.remove(["C.1.1", "C.2.1", "B.1.1", "no.such.uid"])
            assert removed == 3
            assert await index.remove(["no.such.uid"]) == 0
            assert await index.remove([]) == 0
            assert await index.stats() == Stats(
                patients=2, studies=3, series=5, instances=9, bytes=11_000 - 2000 + 10 + 1000 - 3000
            )
            assert query(db, STUDY_AGGREGATES) == [
                ("A", 3, 7, "CT\\PT\\SR", f"{CT}\\{SR}"),
                ("B", 1, 1, "CT", CT),
                ("D", 1, 1, "CT", CT),
            ]
            assert query(db, SERIES_COUNTS) == [
                ("A.1", 3),
                ("A.2", 1),
                ("A.4", 3),
                ("B.1", 1),
                ("D.1", 1),
            ]
            assert query(db, PATIENT_AGGREGATES) == [("P1", "", 2, 4, 8), ("P1", "OTHER", 1, 1, 1)]
            assert query(db, SOP_CLASS_COUNTS) == [
                ("A", CT, 6),
                ("A", SR, 1),
                ("B", CT, 1),
                ("D", CT, 1),
            ]
            # Remove everything: nothing is left at any level.
            uids = [uid async for uid, _ in index.instance_paths()]
            assert await index.remove(uids) == 9
            assert await index.stats() == Stats(0, 0, 0, 0, 0)
            with pytest.raises(TypeError):
                await index.remove("A.1.1")

    run(main())
    for table in ("patient", "study", "series", "instance", "study_sop_class"):
        assert query(db, f"SELECT count(*) FROM {table}") == [(0,)], table


def test_duplicate_add_is_refused_alone(tmp_path: Path) -> None:
    x = make_instance(1)
    y = make_instance(2)

    async def main() -> None:
        async with await Index.open(tmp_path / "index.db") as index:
            await index.add(x)
            results = await asyncio.gather(
                index.add(x), index.add(y), index.add(y), return_exceptions=True
            )
            assert index.writer_stats.commits == 2
            assert results[1] is None
            for result in (results[0], results[2]):
                assert isinstance(result, DuplicateInstanceError)
                assert isinstance(result, IndexWriteError)
            assert isinstance(results[0], DuplicateInstanceError)
            assert results[0].sop_instance_uid == x.attrs.sop_instance_uid
            assert isinstance(results[2], DuplicateInstanceError)
            assert results[2].sop_instance_uid == y.attrs.sop_instance_uid
            assert await index.stats() == Stats(1, 1, 1, 2, 2000)
            # A batch made only of duplicates commits nothing and breaks nothing.
            with pytest.raises(DuplicateInstanceError):
                await index.add(y)
            assert await index.stats() == Stats(1, 1, 1, 2, 2000)

    run(main())


def test_records_without_uids_are_refused_before_queueing(tmp_path: Path) -> None:
    async def main() -> None:
        async with await Index.open(tmp_path / "index.db") as index:
            for name in ("sop_instance_uid", "sop_class_uid", "series_instance_uid"):
                item = make_instance(1)
                bad = msgspec.structs.replace(
                    item, attrs=msgspec.structs.replace(item.attrs, **{name: ""})
                )
                with pytest.raises(InvalidRecordError) as caught:
                    await index.add(bad)
                assert caught.value.field == name
                with pytest.raises(InvalidRecordError):
                    await index.replace(bad)
            assert index.writer_stats.operations == 0

    run(main())


def test_instance_paths_pages_through_everything(tmp_path: Path) -> None:
    items = [make_instance(n) for n in range(10)]

    async def main() -> None:
        async with await Index.open(tmp_path / "index.db") as index:
            assert [pair async for pair in index.instance_paths()] == []
            await asyncio.gather(*(index.add(x) for x in items))
            for page in (1, 3, 10, 1000):
                pairs = [pair async for pair in index.instance_paths(page=page)]
                assert pairs == [(x.attrs.sop_instance_uid, x.path) for x in items]

    run(main())


# -- property: aggregates always equal a recount, after any sequence of batches ------

_SERIES_MODALITY = ("CT", "MR", "")  # series j of every study; "" is a missing Modality
_SOP_CLASSES = (CT, MR)


def _model_item(k: int, j: int, n: int, sop: int, size: int) -> StoredInstance:
    study = f"9.{k}"
    return make_instance(
        n,
        study=study,
        series=f"{study}.{j}",
        patient_id=f"P{k % 2}",
        modality=_SERIES_MODALITY[j],
        sop_class=_SOP_CLASSES[sop],
        size=size,
    )


_uid = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 3))
_operation = st.one_of(
    st.tuples(st.just("add"), _uid, st.integers(0, 1), st.integers(0, 9)),
    st.tuples(st.just("replace"), _uid, st.integers(0, 1), st.integers(0, 9)),
    st.tuples(st.just("remove"), st.lists(_uid, min_size=1, max_size=3)),
)


def _expected(model: dict[str, StoredInstance]) -> tuple[object, ...]:
    """Every aggregate, recomputed in Python from the instances alone."""
    series: dict[str, list[StoredInstance]] = {}
    for item in model.values():
        series.setdefault(item.attrs.series_instance_uid, []).append(item)
    studies: dict[str, list[str]] = {}
    for uid, members in series.items():
        studies.setdefault(members[0].attrs.study_instance_uid, []).append(uid)
    study_rows = []
    for study, series_uids in sorted(studies.items()):
        members = [item for uid in series_uids for item in series[uid]]
        modalities = sorted({series[uid][0].attrs.modality for uid in series_uids} - {""})
        classes = sorted({item.attrs.sop_class_uid for item in members})
        study_rows.append(
            (study, len(series_uids), len(members), "\\".join(modalities), "\\".join(classes))
        )
    patients: dict[str, list[int]] = {}
    for study_row in study_rows:
        patient = f"P{int(str(study_row[0]).split('.')[1]) % 2}"
        counts = patients.setdefault(patient, [0, 0, 0])
        counts[0] += 1
        counts[1] += int(study_row[1])
        counts[2] += int(study_row[2])
    return (
        study_rows,
        sorted((uid, len(members)) for uid, members in series.items()),
        sorted((p, "", *counts) for p, counts in patients.items()),
        Stats(
            len(patients),
            len(studies),
            len(series),
            len(model),
            sum(item.size for item in model.values()),
        ),
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(_operation, min_size=1, max_size=6), min_size=1, max_size=5))
def test_aggregates_match_a_recount_after_any_batches(
    batches: list[list[tuple[Any, ...]]],
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "index.db"

        async def main() -> None:
            model: dict[str, StoredInstance] = {}
            async with await Index.open(db) as index:
                for batch in batches:
                    calls: list[Coroutine[Any, Any, object]] = []
                    expected_outcomes: list[object] = []
                    for op in batch:
                        if op[0] == "remove":
                            uids = [f"9.{k}.{j}.{n}" for k, j, n in op[1]]
                            calls.append(index.remove(uids))
                            present = {uid for uid in uids if uid in model}
                            expected_outcomes.append(len(present))
                            for uid in present:
                                del model[uid]
                            continue
                        kind, (k, j, n), sop, size = op
                        item = _model_item(k, j, n, sop, size)
                        uid = item.attrs.sop_instance_uid
                        if kind == "add":
                            calls.append(index.add(item))
                            expected_outcomes.append(
                                DuplicateInstanceError if uid in model else None
                            )
                            model.setdefault(uid, item)
                        else:
                            calls.append(index.replace(item))
                            old = model.get(uid)
                            expected_outcomes.append(None if old is None else old.path)
                            model[uid] = item
                    outcomes = await asyncio.gather(*calls, return_exceptions=True)
                    for outcome, expected in zip(outcomes, expected_outcomes, strict=True):
                        if expected is DuplicateInstanceError:
                            assert isinstance(outcome, DuplicateInstanceError)
                        elif isinstance(outcome, InstanceRow):
                            assert outcome.path == expected
                        else:
                            assert outcome == expected
                    study_rows, series_rows, patient_rows, stats = _expected(model)
                    assert query(db, STUDY_AGGREGATES) == study_rows
                    assert query(db, SERIES_COUNTS) == series_rows
                    assert query(db, PATIENT_AGGREGATES) == patient_rows
                    assert await index.stats() == stats
                    for uid, item in model.items():
                        row = await index.instance(uid)
                        assert row is not None
                        assert (row.size, row.sop_class_uid) == (
                            item.size,
                            item.attrs.sop_class_uid,
                        )

        run(main())
