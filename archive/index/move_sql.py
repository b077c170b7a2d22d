"""The SQL that moves a replacement's series and study where it says they belong.

A replacement is a correction: it names where its instance belongs, and its
series and study follow it there, with the instances already filed in them
(``batch.py``'s docstring says why). ``batch_sql.REPLACE_SEGMENT`` runs
:data:`MOVE_TO_REPLACEMENT` in a replacement's segment once UPSERT_STUDIES has
made (or updated) the study and patient it names, and before the series upsert
and RESOLVE_STAGED: the new instance is then filed like any add, in its series'
study. The segment holds that one staged row (or none: refused). What the moves
leave is refreshed at the batch's end (the touched tables) and pruned at once
(``batch_sql.PRUNE_MOVED``), the mechanisms the other operations use.
"""

from __future__ import annotations

#: What a replacement moved, and from where (and, for a series, to where).
MOVED_TABLES = (
    "CREATE TEMP TABLE IF NOT EXISTS moved_series (series_pk INTEGER PRIMARY KEY,"
    " from_study_pk INTEGER, from_patient_pk INTEGER, to_study_pk INTEGER)",
    "CREATE TEMP TABLE IF NOT EXISTS moved_study (study_pk INTEGER PRIMARY KEY,"
    " from_patient_pk INTEGER)",
)

CLEAR_MOVED_SERIES = "DELETE FROM temp.moved_series"
CLEAR_MOVED_STUDIES = "DELETE FROM temp.moved_study"
# (a) Its series, filed under another study than the one it names.
COLLECT_MOVED_SERIES = """
INSERT INTO temp.moved_series (series_pk, from_study_pk, from_patient_pk, to_study_pk)
SELECT se.pk, se.study_pk, old.patient_pk, new.pk
FROM temp.staged AS s
JOIN series AS se ON se.series_instance_uid = s.series_instance_uid
JOIN study AS old ON old.pk = se.study_pk
JOIN study AS new ON new.study_instance_uid = s.study_instance_uid
WHERE new.pk <> old.pk
"""
MOVE_SERIES = """
UPDATE series SET study_pk =
    (SELECT m.to_study_pk FROM temp.moved_series AS m WHERE m.series_pk = series.pk)
WHERE pk IN (SELECT series_pk FROM temp.moved_series)
"""
# Instance rows hold their study too (0001_initial.sql), and their SOP classes
# are counted per study: both follow the series. Its instances are found through
# instance_by_series (IN, CROSS JOIN: the planner, without statistics, would scan
# the instance table instead, whatever its size). Counts and modalities are
# rebuilt from the series rows at the batch's end (REFRESH_STUDIES), the places
# left being touched.
MOVE_SERIES_INSTANCES = """
UPDATE instance SET study_pk =
    (SELECT m.to_study_pk FROM temp.moved_series AS m WHERE m.series_pk = instance.series_pk)
WHERE series_pk IN (SELECT series_pk FROM temp.moved_series)
"""


def _moved_sop_classes(study: str) -> str:
    """The moved instances counted by SOP class and the study (``study``: the
    column of moved_series) they leave or join."""
    return f"""
SELECT m.{study} AS study_pk, i.sop_class_uid, count(*) AS instances
FROM temp.moved_series AS m CROSS JOIN instance AS i ON i.series_pk = m.series_pk
WHERE true GROUP BY m.{study}, i.sop_class_uid
"""


UNCOUNT_MOVED_SOP_CLASSES = f"""
UPDATE study_sop_class SET instances = study_sop_class.instances - c.instances
FROM ({_moved_sop_classes("from_study_pk")}) AS c
WHERE study_sop_class.study_pk = c.study_pk AND study_sop_class.sop_class_uid = c.sop_class_uid
"""
DELETE_MOVED_SOP_CLASSES = """
DELETE FROM study_sop_class
WHERE instances <= 0 AND study_pk IN (SELECT from_study_pk FROM temp.moved_series)
"""
COUNT_MOVED_SOP_CLASSES = f"""
INSERT INTO study_sop_class (study_pk, sop_class_uid, instances)
{_moved_sop_classes("to_study_pk")}
ON CONFLICT (study_pk, sop_class_uid) DO UPDATE SET
    instances = study_sop_class.instances + excluded.instances
"""
# (b) The study it names, filed under another patient than the one it names. An
# empty Patient ID names nobody (batch.patient_key): such a replacement moves no
# study, as an object appended by another system often leaves it empty.
COLLECT_MOVED_STUDIES = """
INSERT INTO temp.moved_study (study_pk, from_patient_pk)
SELECT st.pk, st.patient_pk
FROM temp.staged AS s
JOIN study AS st ON st.study_instance_uid = s.study_instance_uid
JOIN patient AS p ON p.patient_key = s.patient_key
WHERE s.patient_id <> '' AND st.patient_pk <> p.pk
"""
MOVE_STUDIES = """
UPDATE study SET patient_pk = p.pk
FROM temp.staged AS s JOIN patient AS p ON p.patient_key = s.patient_key
WHERE study.study_instance_uid = s.study_instance_uid
  AND study.pk IN (SELECT study_pk FROM temp.moved_study)
"""
# The places a move left: refreshed at the batch's end (the places it went to are
# the staged row's, touched with it), and pruned at once if empty (PRUNE_MOVED).
TOUCH_MOVED_STUDIES = (
    "INSERT OR IGNORE INTO temp.touched_study (pk) SELECT from_study_pk FROM temp.moved_series"
)
TOUCH_MOVED_PATIENTS = """
INSERT OR IGNORE INTO temp.touched_patient (pk)
SELECT from_patient_pk FROM temp.moved_series
UNION SELECT from_patient_pk FROM temp.moved_study
"""
#: In this order: the series first, so that the study moved is the one the series
#: is in by then, and the counts before the instance rows are filed anew.
MOVE_TO_REPLACEMENT = (
    CLEAR_MOVED_SERIES,
    CLEAR_MOVED_STUDIES,
    COLLECT_MOVED_SERIES,
    MOVE_SERIES,
    MOVE_SERIES_INSTANCES,
    UNCOUNT_MOVED_SOP_CLASSES,
    DELETE_MOVED_SOP_CLASSES,
    COUNT_MOVED_SOP_CLASSES,
    COLLECT_MOVED_STUDIES,
    MOVE_STUDIES,
    TOUCH_MOVED_STUDIES,
    TOUCH_MOVED_PATIENTS,
)
