"""The SQL of one batch of index writes (``batch.py`` applies it).

The TEMP staging tables, the statements that move staged rows into the four level
tables and keep the aggregates, and the TEMP views whose INSTEAD OF triggers run a
whole sequence of them as one statement (:func:`_trigger`); a replacement's moves
are ``move_sql.py``'s. ``batch.py``'s docstring says how a batch uses them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from archive.dicom.attributes import HEADER_VERSION, InstanceAttributes
from archive.index.move_sql import MOVE_TO_REPLACEMENT, MOVED_TABLES
from archive.index.records import InstanceRow

# -- TEMP working tables (per connection, in memory with temp_store=MEMORY) -------

#: The staged row: its place in the segment, the patient row it files under, the
#: casefolded name (matching, see query.py), every InstanceAttributes field by its
#: own name, then the StoredInstance fields. Built from the records, so a new field
#: is staged without listing it again (the UPSERTs below name what they keep).
STORED_COLUMNS = ("transfer_syntax_uid", "path", "size", "digest", "source_ae", "received_at")
_STAGED_COLUMNS = (
    "seq",
    "patient_key",
    "patient_name_folded",
    *InstanceAttributes.__struct_fields__,
    *STORED_COLUMNS,
)

_TEMP_TABLES = (
    # Untyped columns store values as bound; seq (position in the segment) is the rowid.
    "CREATE TEMP TABLE IF NOT EXISTS staged (seq INTEGER PRIMARY KEY, "
    + ", ".join(_STAGED_COLUMNS[1:])
    + ", series_pk INTEGER, study_pk INTEGER, patient_pk INTEGER)",
    "CREATE INDEX IF NOT EXISTS temp.staged_by_sop ON staged (sop_instance_uid)",
    "CREATE INDEX IF NOT EXISTS temp.staged_by_series ON staged (series_instance_uid, seq)",
    "CREATE TEMP TABLE IF NOT EXISTS doomed (sop_instance_uid TEXT PRIMARY KEY)",
    "CREATE TEMP TABLE IF NOT EXISTS gone ("
    "pk INTEGER PRIMARY KEY, series_pk INTEGER, study_pk INTEGER, patient_pk INTEGER,"
    " sop_class_uid TEXT, size INTEGER)",
    "CREATE TEMP TABLE IF NOT EXISTS refused (seq INTEGER PRIMARY KEY, sop_instance_uid TEXT)",
    "CREATE TEMP TABLE IF NOT EXISTS touched_study (pk INTEGER PRIMARY KEY)",
    "CREATE TEMP TABLE IF NOT EXISTS touched_patient (pk INTEGER PRIMARY KEY)",
    *MOVED_TABLES,
    # The UIDs a batch's adds and replaces may have written (for the journal).
    "CREATE TEMP TABLE IF NOT EXISTS written (sop_instance_uid TEXT PRIMARY KEY)",
)

BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"

CLEAR_STAGED = "DELETE FROM temp.staged"
CLEAR_REFUSED = "DELETE FROM temp.refused"
CLEAR_DOOMED = "DELETE FROM temp.doomed"
CLEAR_GONE = "DELETE FROM temp.gone"
CLEAR_TOUCHED_STUDY = "DELETE FROM temp.touched_study"
CLEAR_TOUCHED_PATIENT = "DELETE FROM temp.touched_patient"

# A segment's rows are bound as they are, column by column, into the TEMP view
# ``add_rows`` (see _add_rows_triggers): one multi-row INSERT stages a chunk of rows
# and, in its last row, runs the segment. Binding keeps every value's SQL type and
# any text whole (a NUL included). Staging through one JSON parameter and
# ``json_extract`` per column cost ~55 us per row, four times the SQL of the row.
#: The most rows one statement stages: the statement texts stay few (the sqlite3
#: statement cache) and far below SQLite's limit on bound parameters.
STAGE_CHUNK = 16
_RUN_COLUMNS = ("run", "journal")
_ADD_ROWS_COLUMNS = (*_STAGED_COLUMNS, *_RUN_COLUMNS)
#: Called by the segment's trigger for each add it refused, inside the statement:
#: the outcome is known before the (single-statement) transaction commits.
NOTE_REFUSED_FUNCTION = "archive_note_refused"
NOTE_REFUSED = (
    f"SELECT {NOTE_REFUSED_FUNCTION}(seq, sop_instance_uid) FROM temp.refused ORDER BY seq"
)

# An add whose SOP Instance UID is indexed already, or repeats an earlier add of the
# same segment, is refused alone (DuplicateInstanceError); the rest goes on.
COLLECT_REFUSED = """
INSERT INTO temp.refused (seq, sop_instance_uid)
SELECT s.seq, s.sop_instance_uid FROM temp.staged AS s
WHERE EXISTS (SELECT 1 FROM instance AS i WHERE i.sop_instance_uid = s.sop_instance_uid)
   OR EXISTS (SELECT 1 FROM temp.staged AS e
              WHERE e.sop_instance_uid = s.sop_instance_uid AND e.seq < s.seq)
"""
DROP_REFUSED = "DELETE FROM temp.staged WHERE seq IN (SELECT seq FROM temp.refused)"


def _changed(table: str, texts: Sequence[str], others: Sequence[str] = ()) -> str:
    """The WHERE of an upsert's DO UPDATE: only when one of its values would change.

    An instance mostly repeats its patient's, study's and series' values. Left
    unconditional, every batch rewrote those rows and every index on a column
    its SET names: 20 pages per single-instance commit instead of 12, and ~20 %
    of its time. An empty text (or NULL number) never changes a value (coalesce).
    """
    tests = [f"(excluded.{c} <> '' AND excluded.{c} IS NOT {table}.{c})" for c in texts]
    tests += [f"(excluded.{c} IS NOT NULL AND excluded.{c} IS NOT {table}.{c})" for c in others]
    return "WHERE " + "\n   OR ".join(tests) + "\n"


def _paired_time(table: str, date: str, time: str) -> str:
    """The SET of a time column that goes with a date column (Study Date and Time,
    Series Date and Time): one moment, so both come from one instance. An instance
    with another date brings its own time, even an empty one; with the same date,
    a non-empty time updates it; with no date, it changes the time only of a row
    that has no date either. Otherwise a row paired one instance's date with
    another's time, which combined date-time matching (PS3.4 C.2.2.2.5) would
    then match as a moment no instance has."""
    new_date, old_date = f"nullif(excluded.{date}, '')", f"nullif({table}.{date}, '')"
    latest = f"coalesce(nullif(excluded.{time}, ''), {table}.{time})"
    return (
        f"CASE WHEN {new_date} IS NULL THEN"
        f" CASE WHEN {old_date} IS NULL THEN {latest} ELSE {table}.{time} END"
        f" WHEN {new_date} IS NOT {old_date} THEN excluded.{time}"
        f" ELSE {latest} END"
    )


# "WHERE true" keeps the parser from reading ON CONFLICT as a join constraint.
# ORDER BY seq makes the latest instance's values win (see the module docstring).
UPSERT_PATIENTS = """
INSERT INTO patient (patient_key, patient_id, issuer_of_patient_id, patient_name,
                     patient_name_folded, patient_birth_date, patient_sex, specific_character_set,
                     other_patient_ids_sequence)
SELECT patient_key, patient_id, issuer_of_patient_id, patient_name, patient_name_folded,
       patient_birth_date, patient_sex, specific_character_set, other_patient_ids_sequence
FROM temp.staged WHERE true ORDER BY seq
ON CONFLICT (patient_key) DO UPDATE SET
    patient_name = coalesce(nullif(excluded.patient_name, ''), patient.patient_name),
    patient_name_folded =
        coalesce(nullif(excluded.patient_name_folded, ''), patient.patient_name_folded),
    patient_birth_date =
        coalesce(nullif(excluded.patient_birth_date, ''), patient.patient_birth_date),
    patient_sex = coalesce(nullif(excluded.patient_sex, ''), patient.patient_sex),
    specific_character_set =
        coalesce(nullif(excluded.specific_character_set, ''), patient.specific_character_set),
    other_patient_ids_sequence = coalesce(
        nullif(excluded.other_patient_ids_sequence, ''), patient.other_patient_ids_sequence)
""" + _changed(
    "patient",
    ("patient_name", "patient_name_folded", "patient_birth_date", "patient_sex",
     "specific_character_set", "other_patient_ids_sequence"),
)  # fmt: skip

# A new study takes the patient of an instance that will be filed in it: one whose
# series is not filed yet, and is the first of the segment to name that series
# (the others join the study of the series, and their patients must not become
# this study's). UPSERT_STUDIES then takes every
# row's values, and makes the studies no instance may end up in (pruned).
CREATE_FILED_STUDIES = """
INSERT INTO study (study_instance_uid, patient_pk)
SELECT s.study_instance_uid, p.pk
FROM temp.staged AS s
JOIN patient AS p ON p.patient_key = s.patient_key
WHERE NOT EXISTS (SELECT 1 FROM series AS se WHERE se.series_instance_uid = s.series_instance_uid)
  AND s.study_instance_uid = (SELECT e.study_instance_uid FROM temp.staged AS e
      WHERE e.series_instance_uid = s.series_instance_uid ORDER BY e.seq LIMIT 1)
ORDER BY s.seq
ON CONFLICT (study_instance_uid) DO NOTHING
"""

# A study first filed without a Patient ID (a patient of its own: batch.patient_key)
# goes to the patient of a later instance filed in it (after RESOLVE_STAGED) that
# names one and names this study: that patient's values are the study's from then
# on. Such a row's resolved patient_pk is the anonymous patient, whose key holds the
# study's UID (and which holds that study alone); TOUCH_STAGED_PATIENTS touches it,
# so FINISH_BATCH prunes it.
ADOPT_STUDIES = r"""
UPDATE study SET patient_pk = (
    SELECT p.pk FROM temp.staged AS s JOIN patient AS p ON p.patient_key = s.patient_key
    WHERE s.study_pk = study.pk AND s.study_instance_uid = study.study_instance_uid
      AND s.patient_id <> ''
    ORDER BY s.seq LIMIT 1)
WHERE pk IN (
    SELECT s.study_pk FROM temp.staged AS s JOIN patient AS p ON p.pk = s.patient_pk
    WHERE s.patient_id <> '' AND p.patient_key = '\study\' || s.study_instance_uid)
"""

UPSERT_STUDIES = """
INSERT INTO study (study_instance_uid, patient_pk, study_date, study_time, accession_number,
                   study_id, study_description, referring_physician_name,
                   specific_character_set, procedure_code_sequence)
SELECT s.study_instance_uid, p.pk, s.study_date, s.study_time, s.accession_number,
       s.study_id, s.study_description, s.referring_physician_name, s.specific_character_set,
       s.procedure_code_sequence
FROM temp.staged AS s
JOIN patient AS p
  ON p.patient_key = s.patient_key
WHERE true ORDER BY s.seq
ON CONFLICT (study_instance_uid) DO UPDATE SET
    study_date = coalesce(nullif(excluded.study_date, ''), study.study_date),
    study_time = """ + _paired_time("study", "study_date", "study_time") + """,
    accession_number = coalesce(nullif(excluded.accession_number, ''), study.accession_number),
    study_id = coalesce(nullif(excluded.study_id, ''), study.study_id),
    study_description =
        coalesce(nullif(excluded.study_description, ''), study.study_description),
    referring_physician_name =
        coalesce(nullif(excluded.referring_physician_name, ''), study.referring_physician_name),
    specific_character_set =
        coalesce(nullif(excluded.specific_character_set, ''), study.specific_character_set),
    procedure_code_sequence =
        coalesce(nullif(excluded.procedure_code_sequence, ''), study.procedure_code_sequence)
""" + _changed(
    "study",
    ("study_date", "study_time", "accession_number", "study_id", "study_description",
     "referring_physician_name", "specific_character_set", "procedure_code_sequence"),
)  # fmt: skip

UPSERT_SERIES = """
INSERT INTO series (series_instance_uid, study_pk, modality, series_number, series_description,
                    body_part_examined, series_date, series_time, specific_character_set,
                    request_attributes_sequence)
SELECT s.series_instance_uid, st.pk, s.modality, s.series_number, s.series_description,
       s.body_part_examined, s.series_date, s.series_time, s.specific_character_set,
       s.request_attributes_sequence
FROM temp.staged AS s
JOIN study AS st ON st.study_instance_uid = s.study_instance_uid
WHERE true ORDER BY s.seq
ON CONFLICT (series_instance_uid) DO UPDATE SET
    modality = coalesce(nullif(excluded.modality, ''), series.modality),
    series_number = coalesce(excluded.series_number, series.series_number),
    series_description =
        coalesce(nullif(excluded.series_description, ''), series.series_description),
    body_part_examined =
        coalesce(nullif(excluded.body_part_examined, ''), series.body_part_examined),
    series_date = coalesce(nullif(excluded.series_date, ''), series.series_date),
    series_time = """ + _paired_time("series", "series_date", "series_time") + """,
    specific_character_set =
        coalesce(nullif(excluded.specific_character_set, ''), series.specific_character_set),
    request_attributes_sequence = coalesce(
        nullif(excluded.request_attributes_sequence, ''), series.request_attributes_sequence)
""" + _changed(
    "series",
    ("modality", "series_description", "body_part_examined", "series_date", "series_time",
     "specific_character_set", "request_attributes_sequence"),
    ("series_number",),
)  # fmt: skip

# The instance goes where its series is, whatever study the series was filed under.
RESOLVE_STAGED = """
UPDATE temp.staged SET series_pk = se.pk, study_pk = se.study_pk, patient_pk = st.patient_pk
FROM series AS se JOIN study AS st ON st.pk = se.study_pk
WHERE se.series_instance_uid = staged.series_instance_uid
"""

# Touched also covers rows an upsert created but that got no child (a study whose
# series was already filed elsewhere): refresh prunes those.
TOUCH_STAGED_STUDIES = """
INSERT OR IGNORE INTO temp.touched_study (pk)
SELECT study_pk FROM temp.staged
UNION SELECT st.pk FROM study AS st JOIN temp.staged AS s
      ON st.study_instance_uid = s.study_instance_uid
"""
TOUCH_STAGED_PATIENTS = """
INSERT OR IGNORE INTO temp.touched_patient (pk)
SELECT patient_pk FROM temp.staged
UNION SELECT p.pk FROM patient AS p JOIN temp.staged AS s
      ON p.patient_key = s.patient_key
"""

INSERT_INSTANCES = f"""
INSERT INTO instance (sop_instance_uid, series_pk, study_pk, sop_class_uid, instance_number,
                      content_date, content_time, rows, columns, number_of_frames,
                      specific_character_set, transfer_syntax_uid, path, size, digest,
                      source_ae, received_at, concept_name_code_sequence,
                      content_template_sequence, header_version)
SELECT sop_instance_uid, series_pk, study_pk, sop_class_uid, instance_number,
       content_date, content_time, rows, columns, number_of_frames,
       specific_character_set, transfer_syntax_uid, path, size, digest,
       source_ae, received_at, concept_name_code_sequence, content_template_sequence,
       {HEADER_VERSION:d}
FROM temp.staged ORDER BY seq
"""

COUNT_STAGED_IN_SERIES = """
UPDATE series SET number_of_instances = number_of_instances
    + (SELECT count(*) FROM temp.staged AS s WHERE s.series_pk = series.pk)
WHERE pk IN (SELECT series_pk FROM temp.staged)
"""

COUNT_STAGED_SOP_CLASSES = """
INSERT INTO study_sop_class (study_pk, sop_class_uid, instances)
SELECT study_pk, sop_class_uid, count(*) FROM temp.staged WHERE true
GROUP BY study_pk, sop_class_uid
ON CONFLICT (study_pk, sop_class_uid) DO UPDATE SET
    instances = study_sop_class.instances + excluded.instances
"""

COUNT_STAGED_TOTALS = """
UPDATE totals SET instances = instances + (SELECT count(*) FROM temp.staged),
                  bytes = bytes + (SELECT coalesce(sum(size), 0) FROM temp.staged)
WHERE id = 1
"""

# -- removal ------------------------------------------------------------------------

INSERT_DOOMED = "INSERT OR IGNORE INTO temp.doomed (sop_instance_uid) VALUES (?)"

COLLECT_GONE = """
INSERT INTO temp.gone (pk, series_pk, study_pk, patient_pk, sop_class_uid, size)
SELECT i.pk, i.series_pk, i.study_pk, st.patient_pk, i.sop_class_uid, i.size
FROM temp.doomed AS d
JOIN instance AS i ON i.sop_instance_uid = d.sop_instance_uid
JOIN study AS st ON st.pk = i.study_pk
"""
DELETE_GONE_INSTANCES = "DELETE FROM instance WHERE pk IN (SELECT pk FROM temp.gone)"
UNCOUNT_GONE_IN_SERIES = """
UPDATE series SET number_of_instances = number_of_instances
    - (SELECT count(*) FROM temp.gone AS g WHERE g.series_pk = series.pk)
WHERE pk IN (SELECT series_pk FROM temp.gone)
"""
UNCOUNT_GONE_SOP_CLASSES = """
UPDATE study_sop_class SET instances = instances
    - (SELECT count(*) FROM temp.gone AS g
       WHERE g.study_pk = study_sop_class.study_pk
         AND g.sop_class_uid = study_sop_class.sop_class_uid)
WHERE study_pk IN (SELECT study_pk FROM temp.gone)
"""
DELETE_EMPTY_SOP_CLASSES = """
DELETE FROM study_sop_class
WHERE instances <= 0 AND study_pk IN (SELECT study_pk FROM temp.gone)
"""
DELETE_EMPTY_SERIES = """
DELETE FROM series
WHERE number_of_instances <= 0 AND pk IN (SELECT series_pk FROM temp.gone)
"""
TOUCH_GONE_STUDIES = "INSERT OR IGNORE INTO temp.touched_study (pk) SELECT study_pk FROM temp.gone"
TOUCH_GONE_PATIENTS = (
    "INSERT OR IGNORE INTO temp.touched_patient (pk) SELECT patient_pk FROM temp.gone"
)
UNCOUNT_GONE_TOTALS = """
UPDATE totals SET instances = instances - (SELECT count(*) FROM temp.gone),
                  bytes = bytes - (SELECT coalesce(sum(size), 0) FROM temp.gone)
WHERE id = 1
"""

# -- once per batch, before COMMIT ----------------------------------------------------


def _prune(studies: str, patients: str) -> tuple[str, str]:
    """Delete the studies (``studies``: a condition on the study row) left without a
    series, then the patients (likewise) left without a study."""
    return (
        f"DELETE FROM study WHERE ({studies})"
        " AND NOT EXISTS (SELECT 1 FROM series WHERE series.study_pk = study.pk)",
        f"DELETE FROM patient WHERE ({patients})"
        " AND NOT EXISTS (SELECT 1 FROM study WHERE study.patient_pk = patient.pk)",
    )


DELETE_EMPTY_STUDIES, DELETE_EMPTY_PATIENTS = _prune(
    "pk IN (SELECT pk FROM temp.touched_study)", "pk IN (SELECT pk FROM temp.touched_patient)"
)
# Multi-valued aggregates are DICOM multi-values: sorted, backslash-separated.
REFRESH_STUDIES = r"""
UPDATE study SET
    number_of_series = (SELECT count(*) FROM series WHERE series.study_pk = study.pk),
    number_of_instances = (SELECT coalesce(sum(number_of_instances), 0) FROM series
                           WHERE series.study_pk = study.pk),
    modalities_in_study = coalesce((SELECT group_concat(modality, '\') FROM (
        SELECT DISTINCT modality FROM series
        WHERE series.study_pk = study.pk AND modality <> '' ORDER BY modality)), ''),
    sop_classes_in_study = coalesce((SELECT group_concat(sop_class_uid, '\') FROM (
        SELECT sop_class_uid FROM study_sop_class
        WHERE study_sop_class.study_pk = study.pk ORDER BY sop_class_uid)), '')
WHERE pk IN (SELECT pk FROM temp.touched_study)
"""
REFRESH_PATIENTS = """
UPDATE patient SET
    number_of_studies = (SELECT count(*) FROM study WHERE study.patient_pk = patient.pk),
    number_of_series = (SELECT coalesce(sum(number_of_series), 0) FROM study
                        WHERE study.patient_pk = patient.pk),
    number_of_instances = (SELECT coalesce(sum(number_of_instances), 0) FROM study
                           WHERE study.patient_pk = patient.pk)
WHERE pk IN (SELECT pk FROM temp.touched_patient)
"""

# -- statement sequences ---------------------------------------------------------------

# The journal of the last batch (migrations/0002_unflushed.sql): every batch empties
# it (the one before was flushed) and, when the flush follows the commit, names the
# instances it added or replaced.
CLEAR_UNFLUSHED = "DELETE FROM unflushed"
SELECT_UNFLUSHED = "SELECT sop_instance_uid FROM unflushed ORDER BY sop_instance_uid"
NOTE_WRITTEN = (
    "INSERT OR IGNORE INTO temp.written (sop_instance_uid) SELECT sop_instance_uid FROM temp.staged"
)
# A Refresh rewrites the row of a file already durable: not journaled.
UNNOTE_WRITTEN = "DELETE FROM temp.written WHERE sop_instance_uid = ?"
JOURNAL_WRITTEN = """
INSERT OR IGNORE INTO unflushed (sop_instance_uid)
SELECT sop_instance_uid FROM temp.written WHERE NEW.journal = 'record'
"""
# Moves the adds staged for one segment into the level tables.
INSERT_SEGMENT = (
    CLEAR_REFUSED,
    NOTE_WRITTEN,
    COLLECT_REFUSED,
    DROP_REFUSED,
    UPSERT_PATIENTS,
    CREATE_FILED_STUDIES,
    UPSERT_STUDIES,
    UPSERT_SERIES,
    RESOLVE_STAGED,
    ADOPT_STUDIES,
    TOUCH_STAGED_STUDIES,
    TOUCH_STAGED_PATIENTS,
    INSERT_INSTANCES,
    COUNT_STAGED_IN_SERIES,
    COUNT_STAGED_SOP_CLASSES,
    COUNT_STAGED_TOTALS,
    NOTE_REFUSED,
    CLEAR_STAGED,
)
REMOVE_SEGMENT = (
    UNCOUNT_GONE_IN_SERIES,
    UNCOUNT_GONE_SOP_CLASSES,
    DELETE_EMPTY_SOP_CLASSES,
    DELETE_EMPTY_SERIES,
    TOUCH_GONE_STUDIES,
    TOUCH_GONE_PATIENTS,
    UNCOUNT_GONE_TOTALS,
)
# A segment followed by others in its batch prunes what it left empty (a study an
# instance named but whose series is filed elsewhere) at once: a later segment
# must not file a new series in it, under a patient with no instance there. Only
# the levels its rows named: the touched tables grow with the batch.
PRUNE_STAGED = _prune(
    "study_instance_uid IN (SELECT study_instance_uid FROM temp.staged)",
    "patient_key IN (SELECT patient_key FROM temp.staged)"
    " OR pk IN (SELECT patient_pk FROM temp.staged)",
)
# A remove or replace prunes what it emptied at once, for the same reason.
PRUNE_GONE = _prune(
    "pk IN (SELECT study_pk FROM temp.gone)", "pk IN (SELECT patient_pk FROM temp.gone)"
)
# A replacement prunes the places its moves (move_sql.py) left empty at once, for
# the same reason.
PRUNE_MOVED = _prune(
    "pk IN (SELECT from_study_pk FROM temp.moved_series)",
    "pk IN (SELECT from_patient_pk FROM temp.moved_series)"
    " OR pk IN (SELECT from_patient_pk FROM temp.moved_study)",
)
# The end of every batch: prune and refresh what it touched, rewrite the journal
# (NEW.journal: see Journal), and leave the TEMP tables empty for the next one.
FINISH_BATCH = (
    DELETE_EMPTY_STUDIES,
    DELETE_EMPTY_PATIENTS,
    REFRESH_STUDIES,
    REFRESH_PATIENTS,
    CLEAR_UNFLUSHED + " WHERE NEW.journal <> 'keep'",
    JOURNAL_WRITTEN,
    "DELETE FROM temp.written",
    CLEAR_TOUCHED_STUDY,
    CLEAR_TOUCHED_PATIENT,
)


def _body(statements: Sequence[str]) -> str:
    """Statements for a trigger: they name their tables unqualified (SQLite's rule);
    TEMP ones come first."""
    return ";\n".join(statement.strip().replace("temp.", "") for statement in statements)


def _trigger(view: str, columns: str, statements: Sequence[str]) -> tuple[str, str]:
    """A TEMP view whose INSERT runs ``statements`` in order, inside SQLite.

    Why: each statement run from Python hands the GIL back and has to win it
    again, and under ingest the event loop holds it for ~0.05-0.3 ms at a time;
    thirty such round trips made the writer's batch four times slower than its
    SQL. One ``INSERT INTO view`` runs the whole sequence in one step, its
    columns (``NEW.journal``) the parameters.
    """
    return (
        f"CREATE TEMP VIEW IF NOT EXISTS {view} ({columns}) AS SELECT NULL",
        f"CREATE TEMP TRIGGER IF NOT EXISTS {view}_run INSTEAD OF INSERT ON {view}\n"
        f"BEGIN\n{_body(statements)};\nEND",
    )


#: A segment that others may follow: pruned before its staged rows are cleared.
PRUNED_SEGMENT = (*INSERT_SEGMENT[:-1], *PRUNE_STAGED, INSERT_SEGMENT[-1])
assert INSERT_SEGMENT[-1] == CLEAR_STAGED
_UPSERTED = INSERT_SEGMENT.index(UPSERT_STUDIES) + 1
#: A replacement's segment (one row): its series and study moved where it says
#: they belong before it is filed, then pruned like a segment, and where they were.
REPLACE_SEGMENT = (
    *INSERT_SEGMENT[:_UPSERTED],
    *MOVE_TO_REPLACEMENT,
    *PRUNED_SEGMENT[_UPSERTED:-1],
    *PRUNE_MOVED,
    PRUNED_SEGMENT[-1],
)


def _add_rows_triggers() -> tuple[str, ...]:
    """The view ``add_rows``: each row inserted into it either stages an add
    (``run`` NULL) or, as the statement's last row, runs the segment staged so far
    (``run`` = 'segment'; 'replace': a replacement's, see REPLACE_SEGMENT) or the
    whole batch (``run`` = 'batch', with ``journal``).
    A multi-row INSERT fires the trigger once per row, in order."""
    values = ", ".join(f"NEW.{column}" for column in _STAGED_COLUMNS)
    stage = f"INSERT INTO staged ({', '.join(_STAGED_COLUMNS)}) VALUES ({values})"
    runs = {"stage": ("NEW.run IS NULL", [stage]),
            "segment": ("NEW.run = 'segment'", PRUNED_SEGMENT),
            "replace": ("NEW.run = 'replace'", REPLACE_SEGMENT),
            "batch": ("NEW.run = 'batch'", INSERT_SEGMENT + FINISH_BATCH)}  # fmt: skip
    nulls = ", ".join("NULL" for _ in _ADD_ROWS_COLUMNS)
    return (
        f"CREATE TEMP VIEW IF NOT EXISTS add_rows ({', '.join(_ADD_ROWS_COLUMNS)})"
        f" AS SELECT {nulls}",
        *(
            f"CREATE TEMP TRIGGER IF NOT EXISTS add_rows_{name} INSTEAD OF INSERT ON add_rows"
            f" WHEN {when}\nBEGIN\n{_body(statements)};\nEND"
            for name, (when, statements) in runs.items()
        ),
    )


CREATE_TEMP_TABLES = (
    *_TEMP_TABLES,
    *_add_rows_triggers(),
    *_trigger("finish_batch", "journal", FINISH_BATCH),
)

_ROW = "(" + ", ".join("?" * len(_STAGED_COLUMNS)) + ", NULL, NULL)"
_RUN_ROW = "(" + ", ".join("NULL" for _ in _STAGED_COLUMNS) + ", ?, ?)"
_ADD_ROWS = f"INSERT INTO temp.add_rows ({', '.join(_ADD_ROWS_COLUMNS)}) VALUES "


@functools.cache
def add_rows(count: int, *, run: bool) -> str:
    """The statement staging ``count`` rows (their columns bound in order) and, if
    ``run``, then running the segment or the batch (two more parameters: ``run``,
    ``journal``). A batch of adds only, whole, is one such statement: in
    autocommit mode, its own transaction."""
    return _ADD_ROWS + ", ".join([_ROW] * count + [_RUN_ROW] * run)


RUN_FINISH_BATCH = "INSERT INTO temp.finish_batch (journal) VALUES (?)"

# -- reading an InstanceRow (here for Replace; database.py and query.py share it) ---

_INSTANCE_ROW_TABLE = {"study_instance_uid": "st", "series_instance_uid": "se"}
#: The columns of an :class:`InstanceRow`, in its field order (``InstanceRow(*row)``):
#: the study and series UIDs from their levels' rows, the rest from the instance's.
INSTANCE_ROW_COLUMNS = ", ".join(
    f"{_INSTANCE_ROW_TABLE.get(name, 'i')}.{name}" for name in InstanceRow.__struct_fields__
)
#: The tables :data:`INSTANCE_ROW_COLUMNS` come from.
INSTANCE_ROW_TABLES = (
    "instance AS i JOIN series AS se ON se.pk = i.series_pk JOIN study AS st ON st.pk = i.study_pk"
)
SELECT_INSTANCE_ROW = (
    f"SELECT {INSTANCE_ROW_COLUMNS} FROM {INSTANCE_ROW_TABLES} WHERE i.sop_instance_uid = ?"
)
