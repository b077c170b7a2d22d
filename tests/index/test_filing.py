"""Which patient a study is filed under, and which study a series, whatever the batching.

A batch applies its operations as if one by one (batch.py), so where an instance
is filed must not depend on what else its group commit holds: a study emptied by a
remove or replace earlier in the batch, an instance of the same new study whose
series is filed elsewhere, a study first received without a Patient ID, or a
replacement that corrects its patient or study.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from archive.index import StoredInstance, batch
from archive.index.batch import Operation, Remove, Replace
from archive.index.connection import connect_writer
from tests.index import (
    CT,
    SR,
    aggregates,
    counted_aggregates,
    execute,
    make_instance,
    query,
)

FILED = """
SELECT st.study_instance_uid, p.patient_id, p.patient_name
FROM study AS st JOIN patient AS p ON p.pk = st.patient_pk ORDER BY 1
"""


def _apply(db: Path, batches: Sequence[Sequence[Operation]]) -> list[tuple[str, str, str]]:
    conn = connect_writer(str(db), "fast")
    try:
        for operations in batches:
            batch.apply_batch(conn, operations)
    finally:
        conn.close()
    return query(db, FILED)


#: The studies the instances of a series (by UID) are filed in, by their own link.
FILED_IN = """
SELECT DISTINCT st.study_instance_uid FROM instance AS i
JOIN series AS se ON se.pk = i.series_pk JOIN study AS st ON st.pk = i.study_pk
WHERE se.series_instance_uid = ?
"""


def _patients(db: Path) -> list[tuple[str, str, int]]:
    return query(db, "SELECT patient_key, patient_id, number_of_studies FROM patient ORDER BY 1")


WRONG = make_instance(1, study="5.5", patient_id="WRONG", patient_name="Wrong^Patient")
RIGHT = make_instance(2, study="5.5", patient_id="RIGHT", patient_name="Right^Patient")


@pytest.mark.parametrize("together", [False, True], ids=["own-batches", "one-batch"])
def test_a_study_emptied_earlier_in_the_batch_is_filed_anew(tmp_path: Path, together: bool) -> None:
    """Its only instance removed, then another of the same study added: the study
    goes to the new instance's patient, in one batch as in several."""
    remove = Remove((WRONG.attrs.sop_instance_uid,))
    batches = [[WRONG], [remove, RIGHT]] if together else [[WRONG], [remove], [RIGHT]]
    db = tmp_path / "index.sqlite"
    assert _apply(db, batches) == [("5.5", "RIGHT", "Right^Patient")]
    assert _patients(db) == [("RIGHT\\", "RIGHT", 1)]


def test_a_replacement_with_a_corrected_patient_id_moves_its_study(tmp_path: Path) -> None:
    """The study's only instance sent again with the right Patient ID: the study
    follows it, as a remove then an add would (the old patient goes)."""
    fixed = make_instance(1, study="5.5", patient_id="RIGHT", patient_name="Right^Patient")
    db = tmp_path / "index.sqlite"
    assert _apply(db, [[WRONG], [Replace(fixed)]]) == [("5.5", "RIGHT", "Right^Patient")]
    assert _patients(db) == [("RIGHT\\", "RIGHT", 1)]


@pytest.mark.parametrize("together", [0, 1, 2], ids=["own-batches", "two-in-one", "all-in-one"])
def test_a_new_study_takes_the_patient_of_an_instance_filed_in_it(
    tmp_path: Path, together: int
) -> None:
    """Series X is filed in study 1.1 (ANNA). BERT's instance names study 2.2 but
    series X, so it joins 1.1 (links are kept first); CARL's names 2.2 and a new
    series. Study 2.2 is CARL's, whether or not BERT's instance came in the same
    group commit (it used to make 2.2 BERT's, who has no instance in it)."""
    anna = make_instance(1, study="1.1", series="9.1", patient_id="ANNA")
    bert = make_instance(2, study="2.2", series="9.1", patient_id="BERT")
    carl = make_instance(3, study="2.2", series="9.2", patient_id="CARL")
    # All in one: series 9.1 is new to the index, but ANNA's row files it first.
    batches: list[list[Operation]] = [
        [[anna], [bert], [carl]],
        [[anna], [bert, carl]],
        [[anna, bert, carl]],
    ][together]
    db = tmp_path / "index.sqlite"
    assert [row[:2] for row in _apply(db, batches)] == [("1.1", "ANNA"), ("2.2", "CARL")]
    assert [row[1] for row in _patients(db)] == ["ANNA", "CARL"]


@pytest.mark.parametrize("together", [False, True], ids=["own-batches", "one-batch"])
def test_a_study_first_sent_without_a_patient_id_takes_a_later_one(
    tmp_path: Path, together: bool
) -> None:
    """An empty Patient ID identifies nobody, so the study's first instance gets
    a patient of its own; a later instance of the study that names one files the
    study under that patient, with its values (C-FIND by Patient ID finds it)."""
    anonymous = make_instance(1, study="5.5", patient_id="", patient_name="")
    named = make_instance(2, study="5.5", patient_id="PID7", patient_name="Roe^Jane")
    later = make_instance(3, study="5.5", patient_id="", patient_name="")
    batches: list[list[StoredInstance]] = (
        [[anonymous, named], [later]] if together else [[anonymous], [named], [later]]
    )
    db = tmp_path / "index.sqlite"
    assert _apply(db, batches) == [("5.5", "PID7", "Roe^Jane")]
    assert _patients(db) == [("PID7\\", "PID7", 1)]
    counts = query(db, "SELECT number_of_instances FROM patient")
    assert counts == [(3,)]


@pytest.mark.parametrize("together", [False, True], ids=["own-batches", "one-batch"])
def test_an_anonymous_study_is_not_adopted_by_an_instance_filed_elsewhere(
    tmp_path: Path, together: bool
) -> None:
    """BERT's instance names study 2.2 but series 9.1, filed in 1.1: it lands in
    1.1, so it does not give 2.2 (anonymous) its patient."""
    anna = make_instance(1, study="1.1", series="9.1", patient_id="ANNA")
    anonymous = make_instance(2, study="2.2", series="9.2", patient_id="")
    bert = make_instance(3, study="2.2", series="9.1", patient_id="BERT")
    batches: list[list[Operation]] = (
        [[anna], [anonymous, bert]] if together else [[anna], [anonymous], [bert]]
    )
    db = tmp_path / "index.sqlite"
    assert [row[:2] for row in _apply(db, batches)] == [("1.1", "ANNA"), ("2.2", "")]
    assert [row[0] for row in _patients(db)] == ["ANNA\\", "\\study\\2.2"]


def test_an_adopted_studys_old_patient_goes_before_the_next_segment(tmp_path: Path) -> None:
    """A study adopted by X, then emptied and sent again without a Patient ID, in
    one batch: its anonymous patient was left (empty) until the batch's end, and
    the new anonymous instance took it with the removed one's values."""
    old = make_instance(1, study="5.5", patient_id="", patient_name="Old^Anon",
                        patient_birth_date="19000101")  # fmt: skip
    named = make_instance(2, study="5.5", patient_id="X", patient_name="X^X")
    again = make_instance(5, study="5.5", patient_id="", patient_name="", patient_birth_date="")
    gone = Remove((old.attrs.sop_instance_uid, named.attrs.sop_instance_uid))
    for together in (False, True):
        db = tmp_path / f"{together}.sqlite"
        batches = [[old], [named, gone, again]] if together else [[old], [named], [gone], [again]]
        assert _apply(db, batches) == [("5.5", "", "")], together
        assert query(db, "SELECT patient_birth_date FROM patient") == [("",)]


def test_a_refresh_that_moves_its_row_leaves_no_study_behind_for_the_next_add(
    tmp_path: Path,
) -> None:
    """archive reindex finds an instance's file names another study: its row moves,
    and the study it left is pruned at once, so an add of that study later in the
    batch files it under its own patient, as in a batch of its own."""
    first = make_instance(1, study="1.1", series="1.1.1", patient_id="P")
    moved = make_instance(1, study="2.2", series="1.1.1", patient_id="P")
    other = make_instance(2, study="1.1", series="1.1.9", patient_id="Q")
    for together in (False, True):
        db = tmp_path / f"{together}.sqlite"
        refresh = batch.Refresh(moved)
        batches: list[list[Operation]] = (
            [[first], [refresh, other]] if together else [[first], [refresh], [other]]
        )
        filed = _apply(db, batches)
        assert ("1.1", "Q") in [row[:2] for row in filed], (together, filed)


# -- replacements that correct where their instance belongs --------------------------

#: How three operations are grouped into batches (after a batch of their own
#: before them): the index must end up the same, and be consistent after each.
PLANS = {"own-batches": (1, 1, 1), "two-in-one": (2, 1), "all-in-one": (3,)}


def _in_batches(operations: Sequence[Operation], plan: Sequence[int]) -> list[list[Operation]]:
    batches, start = [], 0
    for size in plan:
        batches.append(list(operations[start : start + size]))
        start += size
    return batches


def _apply_checked(db: Path, batches: Sequence[Sequence[Operation]]) -> None:
    """Apply ``batches`` one by one; after each the aggregates are exact."""
    for operations in batches:
        _apply(db, [operations])
        assert aggregates(db) == counted_aggregates(db), operations


def _corrected(
    db: Path,
    sent: Sequence[StoredInstance],
    fixed: Sequence[Operation],
    plan: Sequence[int],
    later: StoredInstance,
) -> Iterator[None]:
    """``sent`` in a batch, then the ``fixed`` replacements batched by ``plan``,
    ``later`` at the end of the last batch; yields after each batch, the
    aggregates checked."""
    _apply_checked(db, [sent])
    batches = _in_batches(fixed, plan)
    batches[-1].append(later)
    for operations in batches:
        _apply_checked(db, [operations])
        yield


def _series(**values: str) -> list[StoredInstance]:
    """Instances 1-3 of series 5.5.1 (the third an SR document), as first sent."""
    return [
        make_instance(n, study="5.5", series="5.5.1", sop_class=SR if n == 3 else CT, **values)
        for n in (1, 2, 3)
    ]


@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_replacements_with_a_corrected_patient_id_move_their_study(
    tmp_path: Path, plan: Sequence[int]
) -> None:
    """Every instance of a series sent again with the right Patient ID and name,
    one by one: the first replacement moves the study (with the series it still
    shares with the instances not yet replaced) to the right patient, whose
    values it takes; the wrong patient, left empty, goes at once (a later add
    naming it in the same batch makes a new one, without its old birth date)."""
    wrong = {"patient_id": "WRONG", "patient_name": "Wrong^Patient"}
    sent = _series(**wrong, patient_birth_date="19000101")
    fixed = [Replace(item) for item in _series(patient_id="RIGHT", patient_name="Right^Patient")]
    later = make_instance(1, study="6.6", **wrong)
    db = tmp_path / "index.sqlite"
    for _ in _corrected(db, sent, fixed, plan, later):
        assert _apply(db, [])[0] == ("5.5", "RIGHT", "Right^Patient")
    assert _apply(db, []) == [("5.5", "RIGHT", "Right^Patient"), ("6.6", "WRONG", "Wrong^Patient")]
    assert query(db, "SELECT patient_id, patient_birth_date FROM patient ORDER BY 1") == [
        ("RIGHT", ""),
        ("WRONG", ""),
    ]
    assert aggregates(db)["patient"] == [("RIGHT\\", 1, 1, 3), ("WRONG\\", 1, 1, 1)]


@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_replacements_with_a_corrected_study_uid_move_their_series(
    tmp_path: Path, plan: Sequence[int]
) -> None:
    """Every instance of a series sent again with the right Study Instance UID, one
    by one: the first replacement moves the whole series, all its instances and
    their SOP classes, to the study it names, created with its values; the old
    study, left empty, goes at once (an add naming it in the same batch files it
    anew, under that add's patient)."""
    sent = _series(study_description="Old")
    fixed = [
        Replace(make_instance(item.attrs.instance_number or 0, study="6.6", series="5.5.1",
                              sop_class=item.attrs.sop_class_uid, study_description="New"))
        for item in sent
    ]  # fmt: skip
    later = make_instance(9, study="5.5", series="5.5.9", patient_id="OTHER")
    db = tmp_path / "index.sqlite"
    for _ in _corrected(db, sent, fixed, plan, later):
        assert query(db, FILED_IN, ("5.5.1",)) == [("6.6",)]
    assert [row[:2] for row in _apply(db, [])] == [("5.5", "OTHER"), ("6.6", "P1")]
    assert query(db, "SELECT study_instance_uid, study_description FROM study ORDER BY 1") == [
        ("5.5", ""),
        ("6.6", "New"),
    ]
    assert aggregates(db)["study"] == [
        ("5.5", 1, 1, "CT", CT),
        ("6.6", 1, 3, "CT", f"{CT}\\{SR}"),
    ]


def test_a_series_moved_into_a_study_of_another_patient_brings_it_along(tmp_path: Path) -> None:
    """The series goes to the study the replacement names, and that study to the
    patient it names: here both exist already, and the places they leave keep
    what else they hold (study 5.5 its MR series, patient P its study 5.5)."""
    sent = [
        *_series(patient_id="P"),
        make_instance(4, study="5.5", series="5.5.2", patient_id="P", modality="MR"),
        make_instance(5, study="7.7", series="7.7.1", patient_id="Q", modality="SR", sop_class=SR),
    ]
    db = tmp_path / "index.sqlite"
    _apply_checked(db, [sent])
    into_q = make_instance(1, study="7.7", series="5.5.1", patient_id="Q", study_description="7")
    _apply_checked(db, [[Replace(into_q)]])
    assert [row[:2] for row in _apply(db, [])] == [("5.5", "P"), ("7.7", "Q")]
    assert aggregates(db)["study"] == [
        ("5.5", 1, 1, "MR", CT),
        ("7.7", 2, 4, "CT\\SR", f"{CT}\\{SR}"),
    ]
    into_r = make_instance(2, study="7.7", series="5.5.1", patient_id="R")
    _apply_checked(db, [[Replace(into_r)]])
    assert [row[:2] for row in _apply(db, [])] == [("5.5", "P"), ("7.7", "R")]
    assert [row[1] for row in _patients(db)] == ["P", "R"]  # Q, left empty, went
    assert query(db, "SELECT study_description FROM study WHERE study_instance_uid = '7.7'") == [
        ("7",)
    ]


@pytest.mark.parametrize("together", [False, True], ids=["own-batches", "one-batch"])
def test_a_replacement_naming_where_it_is_filed_moves_nothing(
    tmp_path: Path, together: bool
) -> None:
    """A replacement that names its series' study and that study's patient (or
    no Patient ID at all: it identifies nobody, as an SR appended by another
    system often does) leaves the filing as it was; its values still count."""
    sent = [*_series(patient_id="P"), make_instance(4, study="5.5", series="5.5.2")]
    same = Replace(make_instance(1, study="5.5", series="5.5.1", patient_id="P",
                                 study_description="Corrected"))  # fmt: skip
    anonymous = Replace(make_instance(2, study="5.5", series="5.5.1", patient_id=""))
    db = tmp_path / "index.sqlite"
    _apply_checked(db, [sent])
    before = _apply(db, [])
    _apply_checked(db, [[same, anonymous]] if together else [[same], [anonymous]])
    assert _apply(db, []) == before
    assert [row[1] for row in _patients(db)] == ["P"]
    assert query(db, "SELECT study_description FROM study") == [("Corrected",)]


def test_a_failed_batch_takes_back_its_moves(tmp_path: Path) -> None:
    """A batch that fails after a replacement moved a series is rolled back whole:
    the series, its instances, its SOP classes and both studies are as before;
    the same replacement in the next batch moves them."""
    db = tmp_path / "index.sqlite"
    _apply_checked(db, [_series(study_description="Old")])
    before = (_apply(db, []), aggregates(db), query(db, FILED_IN, ("5.5.1",)))
    execute(db, "CREATE TRIGGER poison BEFORE INSERT ON instance WHEN NEW.sop_instance_uid ="
                " 'poison.1' BEGIN SELECT RAISE(ABORT, 'injected failure'); END")  # fmt: skip
    moved = Replace(make_instance(1, study="6.6", series="5.5.1"))
    with pytest.raises(sqlite3.IntegrityError, match="injected failure"):
        _apply(db, [[moved, make_instance(1, study="poison", series="poison")]])
    assert (_apply(db, []), aggregates(db), query(db, FILED_IN, ("5.5.1",))) == before
    _apply_checked(db, [[moved]])
    assert query(db, FILED_IN, ("5.5.1",)) == [("6.6",)]


def test_a_replacement_naming_another_series_moves_that_series(tmp_path: Path) -> None:
    """The series and study that follow a replacement are the ones it names, not
    those of the row it replaces: here they are filed elsewhere, so the places
    they leave are not the replaced row's, and are brought up to date too."""
    sent = [
        *(make_instance(n, study="1.1", series="1.1.1", patient_id="P") for n in (1, 2)),
        *(make_instance(n, study="2.2", series="2.2.1", patient_id="Q") for n in (1, 2)),
        make_instance(1, study="3.3", series="3.3.1", patient_id="Q"),
        make_instance(1, study="3.3", series="3.3.2", patient_id="Q", modality="MR"),
    ]
    db = tmp_path / "index.sqlite"
    _apply_checked(db, [sent])
    # Study 2.2 goes to R; Q keeps 3.3.
    first = make_instance(1, study="2.2", series="2.2.1", patient_id="R",
                          sop_instance_uid="1.1.1.1")  # fmt: skip
    _apply_checked(db, [[Replace(first)]])
    assert [row[:2] for row in _apply(db, [])] == [("1.1", "P"), ("2.2", "R"), ("3.3", "Q")]
    # Series 3.3.1 goes to a new study of R's; 3.3 keeps its MR series, and P,
    # whose study the replaced row emptied, goes.
    second = make_instance(2, study="4.4", series="3.3.1", patient_id="R",
                           sop_instance_uid="1.1.1.2")  # fmt: skip
    _apply_checked(db, [[Replace(second)]])
    assert [row[:2] for row in _apply(db, [])] == [("2.2", "R"), ("3.3", "Q"), ("4.4", "R")]
    assert aggregates(db)["patient"] == [("Q\\", 1, 1, 1), ("R\\", 2, 2, 5)]
