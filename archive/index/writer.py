"""The group-commit writer: one task, one connection, one transaction per batch.

Theory of operation. Every change to the index (add, replace, remove) is an
operation put on a queue together with a future. One task owns the only write
connection; it waits for the first operation, takes whatever else is queued (up to
``max_batch``), runs them all in one ``BEGIN IMMEDIATE`` ... ``COMMIT`` and then
resolves every future. A C-STORE answers Success only after its future resolves, so
nothing acknowledged is ever lost, yet one fsync covers the whole batch: under load
the batches grow by themselves and the commit rate stays near the disk's fsync rate
while the record rate climbs. The queue is unbounded on purpose: every submitter
waits for its own commit, so at most one operation per concurrent store is queued.

Each batch is applied set-wise, not row by row: consecutive adds are bulk-inserted
into a TEMP staging table with one ``executemany`` and moved into the four level
tables by a fixed number of ``INSERT ... SELECT ... ON CONFLICT`` statements. The
number of round trips to the connection's thread is therefore constant per batch,
whatever its size. Replaces and removes split the batch into segments so the result
is the same as applying the operations one by one in queue order.

Study, series and patient values: a later instance that carries a *different
non-empty* value (description, accession number, patient name...) updates the
stored one; an empty value never erases one. Corrections made at the modality or
RIS after the first images were sent arrive with the later instances, and objects
appended to a study by other systems (SR, presentation states, CAD) often leave
type 2 attributes empty. Links are kept first: an instance whose study is already
filed under another patient (or series under another study) joins the existing
tree rather than splitting it.

Aggregates are maintained in the same transaction: per-series instance counts by
addition and subtraction; per-study SOP classes as counted rows in
``study_sop_class``; study counts and modalities are rebuilt from the study's
series rows (a few rows, via an index), never from its instances, so the cost per
batch does not grow with study size. Studies and patients left without children by a
removal are deleted.

This module is not the read side (see ``database.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from archive.index.errors import DuplicateInstanceError, IndexClosedError, IndexWriteError
from archive.index.records import InstanceRow, StoredInstance, WriterStats

__all__ = ["SELECT_INSTANCE_ROW", "GroupCommitWriter"]

LOG = logging.getLogger(__name__)

# -- TEMP working tables (per connection, in memory with temp_store=MEMORY) -------

_STAGED_COLUMNS = (
    "seq",
    "patient_id",
    "issuer_of_patient_id",
    "patient_name",
    "patient_name_folded",
    "patient_birth_date",
    "patient_sex",
    "specific_character_set",
    "study_instance_uid",
    "study_date",
    "study_time",
    "accession_number",
    "study_id",
    "study_description",
    "referring_physician_name",
    "series_instance_uid",
    "modality",
    "series_number",
    "series_description",
    "body_part_examined",
    "series_date",
    "series_time",
    "sop_instance_uid",
    "sop_class_uid",
    "instance_number",
    "content_date",
    "content_time",
    "rows",
    "columns",
    "number_of_frames",
    "transfer_syntax_uid",
    "path",
    "size",
    "digest",
    "source_ae",
    "received_at",
)

CREATE_TEMP_TABLES = (
    "CREATE TEMP TABLE IF NOT EXISTS staged ("
    + ", ".join(_STAGED_COLUMNS)
    + ", series_pk INTEGER, study_pk INTEGER, patient_pk INTEGER)",
    "CREATE INDEX IF NOT EXISTS temp.staged_by_sop ON staged (sop_instance_uid)",
    "CREATE TEMP TABLE IF NOT EXISTS doomed (sop_instance_uid TEXT PRIMARY KEY)",
    "CREATE TEMP TABLE IF NOT EXISTS gone ("
    "pk INTEGER PRIMARY KEY, series_pk INTEGER, study_pk INTEGER, patient_pk INTEGER,"
    " sop_class_uid TEXT, size INTEGER)",
    "CREATE TEMP TABLE IF NOT EXISTS refused (seq INTEGER PRIMARY KEY, sop_instance_uid TEXT)",
    "CREATE TEMP TABLE IF NOT EXISTS touched_study (pk INTEGER PRIMARY KEY)",
    "CREATE TEMP TABLE IF NOT EXISTS touched_patient (pk INTEGER PRIMARY KEY)",
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

INSERT_STAGED = (
    "INSERT INTO temp.staged ("
    + ", ".join(_STAGED_COLUMNS)
    + ") VALUES ("
    + ", ".join("?" * len(_STAGED_COLUMNS))
    + ")"
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
SELECT_REFUSED = "SELECT seq, sop_instance_uid FROM temp.refused ORDER BY seq"

# "WHERE true" keeps the parser from reading ON CONFLICT as a join constraint.
# ORDER BY seq makes the latest instance's values win (see the module docstring).
UPSERT_PATIENTS = """
INSERT INTO patient (patient_id, issuer_of_patient_id, patient_name, patient_name_folded,
                     patient_birth_date, patient_sex, specific_character_set)
SELECT patient_id, issuer_of_patient_id, patient_name, patient_name_folded,
       patient_birth_date, patient_sex, specific_character_set
FROM temp.staged WHERE true ORDER BY seq
ON CONFLICT (patient_id, issuer_of_patient_id) DO UPDATE SET
    patient_name = coalesce(nullif(excluded.patient_name, ''), patient.patient_name),
    patient_name_folded =
        coalesce(nullif(excluded.patient_name_folded, ''), patient.patient_name_folded),
    patient_birth_date =
        coalesce(nullif(excluded.patient_birth_date, ''), patient.patient_birth_date),
    patient_sex = coalesce(nullif(excluded.patient_sex, ''), patient.patient_sex),
    specific_character_set =
        coalesce(nullif(excluded.specific_character_set, ''), patient.specific_character_set)
"""

UPSERT_STUDIES = """
INSERT INTO study (study_instance_uid, patient_pk, study_date, study_time, accession_number,
                   study_id, study_description, referring_physician_name,
                   specific_character_set)
SELECT s.study_instance_uid, p.pk, s.study_date, s.study_time, s.accession_number,
       s.study_id, s.study_description, s.referring_physician_name, s.specific_character_set
FROM temp.staged AS s
JOIN patient AS p
  ON p.patient_id = s.patient_id AND p.issuer_of_patient_id = s.issuer_of_patient_id
WHERE true ORDER BY s.seq
ON CONFLICT (study_instance_uid) DO UPDATE SET
    study_date = coalesce(nullif(excluded.study_date, ''), study.study_date),
    study_time = coalesce(nullif(excluded.study_time, ''), study.study_time),
    accession_number = coalesce(nullif(excluded.accession_number, ''), study.accession_number),
    study_id = coalesce(nullif(excluded.study_id, ''), study.study_id),
    study_description =
        coalesce(nullif(excluded.study_description, ''), study.study_description),
    referring_physician_name =
        coalesce(nullif(excluded.referring_physician_name, ''), study.referring_physician_name),
    specific_character_set =
        coalesce(nullif(excluded.specific_character_set, ''), study.specific_character_set)
"""

UPSERT_SERIES = """
INSERT INTO series (series_instance_uid, study_pk, modality, series_number, series_description,
                    body_part_examined, series_date, series_time, specific_character_set)
SELECT s.series_instance_uid, st.pk, s.modality, s.series_number, s.series_description,
       s.body_part_examined, s.series_date, s.series_time, s.specific_character_set
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
    series_time = coalesce(nullif(excluded.series_time, ''), series.series_time),
    specific_character_set =
        coalesce(nullif(excluded.specific_character_set, ''), series.specific_character_set)
"""

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
      ON p.patient_id = s.patient_id AND p.issuer_of_patient_id = s.issuer_of_patient_id
"""

INSERT_INSTANCES = """
INSERT INTO instance (sop_instance_uid, series_pk, study_pk, sop_class_uid, instance_number,
                      content_date, content_time, rows, columns, number_of_frames,
                      specific_character_set, transfer_syntax_uid, path, size, digest,
                      source_ae, received_at)
SELECT sop_instance_uid, series_pk, study_pk, sop_class_uid, instance_number,
       content_date, content_time, rows, columns, number_of_frames,
       specific_character_set, transfer_syntax_uid, path, size, digest,
       source_ae, received_at
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

DELETE_EMPTY_STUDIES = """
DELETE FROM study WHERE pk IN (SELECT pk FROM temp.touched_study)
AND NOT EXISTS (SELECT 1 FROM series WHERE series.study_pk = study.pk)
"""
DELETE_EMPTY_PATIENTS = """
DELETE FROM patient WHERE pk IN (SELECT pk FROM temp.touched_patient)
AND NOT EXISTS (SELECT 1 FROM study WHERE study.patient_pk = patient.pk)
"""
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

BATCH_START = (CLEAR_TOUCHED_STUDY, CLEAR_TOUCHED_PATIENT)
# Moves the staged adds of one segment into the level tables.
INSERT_SEGMENT = (
    CLEAR_REFUSED,
    COLLECT_REFUSED,
    DROP_REFUSED,
    UPSERT_PATIENTS,
    UPSERT_STUDIES,
    UPSERT_SERIES,
    RESOLVE_STAGED,
    TOUCH_STAGED_STUDIES,
    TOUCH_STAGED_PATIENTS,
    INSERT_INSTANCES,
    COUNT_STAGED_IN_SERIES,
    COUNT_STAGED_SOP_CLASSES,
    COUNT_STAGED_TOTALS,
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
# The staging table is empty between batches (both paths clear it before COMMIT, the
# failure path after ROLLBACK).
BATCH_END = (DELETE_EMPTY_STUDIES, DELETE_EMPTY_PATIENTS, REFRESH_STUDIES, REFRESH_PATIENTS)
# The common batch, adds only, as one script: the rows are staged first (outside the
# transaction, in the connection's private TEMP table) and the whole transaction is
# then a single call into the connection's thread instead of twenty.
ADD_BATCH_SCRIPT = (
    ";\n".join((BEGIN_IMMEDIATE, *BATCH_START, *INSERT_SEGMENT, *BATCH_END, CLEAR_STAGED, COMMIT))
    + ";"
)

SELECT_INSTANCE_ROW = """
SELECT i.sop_instance_uid, st.study_instance_uid, se.series_instance_uid, i.sop_class_uid,
       i.path, i.size, i.digest, i.transfer_syntax_uid
FROM instance AS i
JOIN series AS se ON se.pk = i.series_pk
JOIN study AS st ON st.pk = i.study_pk
WHERE i.sop_instance_uid = ?
"""


def _staged_rows(items: list[StoredInstance]) -> list[tuple[object, ...]]:
    return [_staged_row(seq, item) for seq, item in enumerate(items)]


def _staged_row(seq: int, item: StoredInstance) -> tuple[object, ...]:
    a = item.attrs
    return (
        seq,
        a.patient_id,
        a.issuer_of_patient_id,
        a.patient_name,
        a.patient_name.casefold(),
        a.patient_birth_date,
        a.patient_sex,
        a.specific_character_set,
        a.study_instance_uid,
        a.study_date,
        a.study_time,
        a.accession_number,
        a.study_id,
        a.study_description,
        a.referring_physician_name,
        a.series_instance_uid,
        a.modality,
        a.series_number,
        a.series_description,
        a.body_part_examined,
        a.series_date,
        a.series_time,
        a.sop_instance_uid,
        a.sop_class_uid,
        a.instance_number,
        a.content_date,
        a.content_time,
        a.rows,
        a.columns,
        a.number_of_frames,
        item.transfer_syntax_uid,
        item.path,
        item.size,
        item.digest,
        item.source_ae,
        item.received_at,
    )


# -- operations ---------------------------------------------------------------------


@dataclass(slots=True)
class _Add:
    item: StoredInstance
    future: asyncio.Future[Any] = field(repr=False)


@dataclass(slots=True)
class _Replace:
    item: StoredInstance
    future: asyncio.Future[Any] = field(repr=False)


@dataclass(slots=True)
class _Remove:
    uids: tuple[str, ...]
    future: asyncio.Future[Any] = field(repr=False)


_Op = _Add | _Replace | _Remove


class GroupCommitWriter:
    """Owns the write connection and commits queued operations in batches.

    ``conn`` must be in autocommit mode (``isolation_level=None``) with the schema in
    place; :meth:`start` creates the TEMP tables and the task. :meth:`close` commits
    everything queued before it, then stops the task; the connection stays open
    (its owner closes it).
    """

    def __init__(self, conn: aiosqlite.Connection, *, max_batch: int = 500) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self._conn = conn
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Op | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._inflight: list[_Op] = []
        self._commits = 0
        self._operations = 0
        self._failed_batches = 0
        self._largest_batch = 0

    @property
    def stats(self) -> WriterStats:
        return WriterStats(
            commits=self._commits,
            operations=self._operations,
            failed_batches=self._failed_batches,
            largest_batch=self._largest_batch,
        )

    async def start(self) -> None:
        for statement in CREATE_TEMP_TABLES:
            await self._conn.execute(statement)
        self._task = asyncio.create_task(self._run(), name="index-group-commit")

    async def add(self, item: StoredInstance) -> None:
        await self._submit(_Add(item, self._new_future()))

    async def replace(self, item: StoredInstance) -> InstanceRow | None:
        result = await self._submit(_Replace(item, self._new_future()))
        assert result is None or isinstance(result, InstanceRow)
        return result

    async def remove(self, sop_instance_uids: Sequence[str]) -> int:
        result = await self._submit(_Remove(tuple(sop_instance_uids), self._new_future()))
        assert isinstance(result, int)
        return result

    async def close(self) -> None:
        """Commit what is queued, then stop the task. Idempotent."""
        self._closing = True
        task = self._task
        if task is None:
            return
        if not task.done():
            self._queue.put_nowait(None)
        await task

    # -- internals ----------------------------------------------------------------

    @staticmethod
    def _new_future() -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, op: _Op) -> object:
        if self._closing or self._task is None or self._task.done():
            raise IndexClosedError("the index is closed")
        self._queue.put_nowait(op)
        # Cancelling the caller does not withdraw the operation: it may still be
        # committed. The store treats a cancelled add as "state unknown".
        return await op.future

    async def _run(self) -> None:
        try:
            while True:
                first = await self._queue.get()
                if first is None:
                    return
                batch: list[_Op] = [first]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        op = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if op is None:
                        stop = True
                        break
                    batch.append(op)
                self._inflight = batch
                await self._commit(batch)
                self._inflight = []
                if stop:
                    return
        finally:
            # Reached on close, on cancellation and on a bug in this loop: whatever
            # is still waiting learns that it was not committed.
            self._closing = True
            message = "the index writer stopped before this was committed"
            for op in self._inflight:
                _fail(op.future, IndexClosedError(message))
            while not self._queue.empty():
                queued = self._queue.get_nowait()
                if queued is not None:
                    _fail(queued.future, IndexClosedError(message))

    async def _commit(self, batch: list[_Op]) -> None:
        try:
            if all(isinstance(op, _Add) for op in batch):
                outcomes = await self._commit_adds(batch)
            else:
                outcomes = await self._commit_mixed(batch)
        except Exception as exc:
            await self._rollback()
            self._failed_batches += 1
            message = f"index transaction of {len(batch)} operation(s) failed: {exc}"
            for op in batch:
                # One exception object per waiter: each raise adds its own traceback.
                error = IndexWriteError(message)
                error.__cause__ = exc
                _fail(op.future, error)
            return
        self._commits += 1
        self._operations += len(batch)
        self._largest_batch = max(self._largest_batch, len(batch))
        for op, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                _fail(op.future, outcome)
            elif not op.future.done():
                op.future.set_result(outcome)

    async def _commit_adds(self, batch: list[_Op]) -> list[object]:
        """The fast path: stage, then one script from BEGIN to COMMIT."""
        items = [op.item for op in batch if isinstance(op, _Add)]
        await self._conn.executemany(INSERT_STAGED, _staged_rows(items))
        await self._conn.executescript(ADD_BATCH_SCRIPT)
        outcomes: list[object] = [None] * len(batch)
        for seq, error in await self._refused():
            outcomes[seq] = error
        return outcomes

    async def _commit_mixed(self, batch: list[_Op]) -> list[object]:
        """Batches with replaces or removes: statement by statement, in queue order."""
        conn = self._conn
        await conn.execute(BEGIN_IMMEDIATE)
        for statement in BATCH_START:
            await conn.execute(statement)
        outcomes = await self._apply(batch)
        for statement in (*BATCH_END, CLEAR_STAGED):
            await conn.execute(statement)
        await conn.execute(COMMIT)
        return outcomes

    async def _rollback(self) -> None:
        try:
            if self._conn.in_transaction:
                await self._conn.execute(ROLLBACK)
            # Rows staged outside the transaction (fast path) are not rolled back.
            await self._conn.execute(CLEAR_STAGED)
        except Exception:
            # SQLite rolls back by itself after some errors (disk full, I/O); a
            # connection that cannot roll back will fail the next BEGIN, loudly.
            LOG.exception("index: ROLLBACK failed")

    async def _apply(self, batch: list[_Op]) -> list[object]:
        """Apply the batch in queue order; per operation, its result or refusal."""
        outcomes: list[object] = [None] * len(batch)
        start = 0
        while start < len(batch):
            op = batch[start]
            if isinstance(op, _Add):
                end = start
                while end < len(batch) and isinstance(batch[end], _Add):
                    end += 1
                items = [add.item for add in batch[start:end] if isinstance(add, _Add)]
                for seq, error in await self._insert(items):
                    outcomes[start + seq] = error
                start = end
                continue
            if isinstance(op, _Replace):
                uid = op.item.attrs.sop_instance_uid
                old = await self._instance_row(uid)
                if old is not None:
                    await self._delete((uid,))
                await self._insert([op.item])
                outcomes[start] = old
            else:
                outcomes[start] = await self._delete(op.uids)
            start += 1
        return outcomes

    async def _insert(self, items: list[StoredInstance]) -> list[tuple[int, BaseException]]:
        """Insert one segment of adds; return (position, error) of refused ones."""
        conn = self._conn
        await conn.execute(CLEAR_STAGED)
        await conn.executemany(INSERT_STAGED, _staged_rows(items))
        for statement in INSERT_SEGMENT:
            await conn.execute(statement)
        return await self._refused()

    async def _refused(self) -> list[tuple[int, BaseException]]:
        rows = await self._conn.execute_fetchall(SELECT_REFUSED)
        return [(int(seq), DuplicateInstanceError(str(uid))) for seq, uid in rows]

    async def _delete(self, uids: Sequence[str]) -> int:
        """Remove instances by SOP Instance UID; return how many were indexed."""
        conn = self._conn
        await conn.execute(CLEAR_DOOMED)
        await conn.execute(CLEAR_GONE)
        await conn.executemany(INSERT_DOOMED, [(uid,) for uid in uids])
        await conn.execute(COLLECT_GONE)
        async with conn.execute(DELETE_GONE_INSTANCES) as cursor:
            removed = cursor.rowcount
        if removed <= 0:
            return 0
        for statement in REMOVE_SEGMENT:
            await conn.execute(statement)
        return removed

    async def _instance_row(self, sop_instance_uid: str) -> InstanceRow | None:
        async with self._conn.execute(SELECT_INSTANCE_ROW, (sop_instance_uid,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else InstanceRow(*row)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    # A waiter cancelled by its caller leaves a cancelled future: nothing to tell.
    if not future.done():
        future.set_exception(error)
