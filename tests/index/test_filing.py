"""Which patient a study is filed under, whatever the batching.

A batch applies its operations as if one by one (batch.py), so where an instance
is filed must not depend on what else its group commit holds: a study emptied by a
remove or replace earlier in the batch, an instance of the same new study whose
series is filed elsewhere, or a study first received without a Patient ID.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from archive.index import StoredInstance, batch
from archive.index.batch import Operation, Remove, Replace
from archive.index.connection import connect_writer
from tests.index import make_instance, query

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
