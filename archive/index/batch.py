"""One batch of index writes, applied synchronously on the writer's connection.

This is the SQL side of the group-commit writer (``writer.py`` is the asyncio side).
:func:`apply_batch` runs in the writer thread: ``BEGIN IMMEDIATE``, every operation
in queue order, the aggregates, ``COMMIT``; on any error ``ROLLBACK`` and re-raise.

Each batch is applied set-wise, not row by row: consecutive adds are staged into a
TEMP table (their columns bound as they are, by one multi-row INSERT per
``STAGE_CHUNK`` rows) and moved into the four level tables by a fixed list of
``INSERT ... SELECT ... ON CONFLICT`` statements that the last of those INSERTs runs
through a trigger, so the number of statements per batch barely depends on its
size, and each is prepared once per connection (the sqlite3 statement cache).
Replaces and removes split the batch into segments so the result is that of
applying the operations one by one.

Study, series and patient values: a later instance that carries a *different
non-empty* value (description, accession number, patient name...) updates the
stored one; an empty value never erases one. Corrections made at the modality or
RIS after the first images were sent arrive with the later instances, and
objects appended to a study by other systems (SR, presentation states, CAD)
often leave type 2 attributes empty. A date and its time (Study, Series) are one
moment and come from one instance: a later instance with another date brings its
own time, even an empty one (``batch_sql._paired_time``). Links are kept first:
an added instance whose study is already filed under another patient (or series
under another study) joins the existing tree rather than splitting it; but a
study first filed without a Patient ID (a patient of its own) goes to the
patient of the first later instance of it that names one. A refresh keeps links
too (its row is written again, not corrected). A replacement of an indexed row,
though, is a correction, and the tree follows it
(``move_sql.MOVE_TO_REPLACEMENT``): its series moves, with the instances
filed in it, to the study it names (created under the replacement's patient if
need be), and that study to the patient it names, unless its Patient ID is
empty (it names nobody). Otherwise a series re-sent instance by instance with
a corrected Patient ID or Study Instance UID never moved: each replacement
found the series still held under the old study and patient by the others
(the corrected ones included), and joined it. A new study is filed under the
patient of an instance that lands in it, and what a remove, a replace (or its
moves) or a segment leaves empty is pruned at once, so that where an instance
is filed does not depend on what else its batch holds
(tests/index/test_filing.py).

Aggregates are maintained in the same transaction: per-series instance counts by
addition and subtraction; per-study SOP classes as counted rows in
``study_sop_class`` (a moved series carries its instances' counts from study to
study); study counts and modalities are rebuilt from the study's series rows (a
few rows, via an index), never from its instances, so the cost per batch does
not grow with study size (a replacement that moves a series re-links that
series' instance rows: a correction's cost, not ingest's). Series, studies and
patients left without children are deleted.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import threading
from collections.abc import Sequence
from typing import Literal, cast

import msgspec

from archive.index.batch_sql import (
    BEGIN_IMMEDIATE,
    CLEAR_DOOMED,
    CLEAR_GONE,
    CLEAR_STAGED,
    COLLECT_GONE,
    COMMIT,
    CREATE_TEMP_TABLES,
    DELETE_GONE_INSTANCES,
    INSERT_DOOMED,
    NOTE_REFUSED_FUNCTION,
    PRUNE_GONE,
    REMOVE_SEGMENT,
    ROLLBACK,
    RUN_FINISH_BATCH,
    SELECT_INSTANCE_ROW,
    STAGE_CHUNK,
    UNNOTE_WRITTEN,
    add_rows,
)
from archive.index.errors import DuplicateInstanceError
from archive.index.records import InstanceRow, StoredInstance

__all__ = [
    "Journal",
    "Operation",
    "Outcome",
    "Refresh",
    "Remove",
    "Replace",
    "apply_batch",
    "prepare_writer",
]


def prepare_writer(conn: sqlite3.Connection) -> None:
    """Make ``conn`` able to run :func:`apply_batch`: TEMP objects, the function."""
    conn.create_function(NOTE_REFUSED_FUNCTION, 2, _note_refused)
    for statement in CREATE_TEMP_TABLES:
        conn.execute(statement)


# The adds refused by the statement running on this thread (one writer connection
# per thread): filled by the trigger through _note_refused, emptied by _segment.
_refusals = threading.local()


def _note_refused(seq: int, sop_instance_uid: str) -> None:
    _refusals.seen.append((seq, sop_instance_uid))


def patient_key(patient_id: str, issuer: str, study_instance_uid: str) -> str:
    """The patient row an instance belongs to.

    Patient ID plus Issuer of Patient ID (PS3.4 C.6.1.1.2: Patient ID is the
    level's unique key; LO values cannot hold a backslash, so it separates them
    unambiguously). Patient ID is Type 2: an empty one identifies nobody, so such
    an instance gets a patient of its own study rather than being merged with
    every other instance that lacks an ID.
    """
    if patient_id:
        return f"{patient_id}\\{issuer}"
    return f"\\study\\{study_instance_uid}"


def _staged_row(seq: int, item: StoredInstance) -> tuple[object, ...]:
    """The columns of one staged add (``_STAGED_COLUMNS`` in batch_sql.py)."""
    a = item.attrs
    return (
        seq,
        patient_key(a.patient_id, a.issuer_of_patient_id, a.study_instance_uid),
        a.patient_name.casefold(),
        *msgspec.structs.astuple(a),
        # in the order of STORED_COLUMNS
        item.transfer_syntax_uid,
        item.path,
        item.size,
        item.digest,
        item.source_ae,
        item.received_at,
    )


# -- operations ---------------------------------------------------------------------


class Replace(msgspec.Struct, frozen=True):
    """Index ``item`` in place of the row with its SOP Instance UID; outcome: old row."""

    item: StoredInstance


class Refresh(msgspec.Struct, frozen=True):
    """Write the row of an instance already indexed again, from ``item`` (its file
    unchanged: ``archive reindex``); outcome: the old row, or None (then nothing
    is written). Unlike :class:`Replace` it is not journaled: no file was written,
    so whichever of the two rows a cut flush leaves is a valid one."""

    item: StoredInstance


class Remove(msgspec.Struct, frozen=True):
    """Remove these SOP Instance UIDs; outcome: how many were indexed."""

    uids: tuple[str, ...]


#: A bare StoredInstance is an add; its outcome is None or a DuplicateInstanceError.
Operation = StoredInstance | Replace | Refresh | Remove
Outcome = InstanceRow | int | DuplicateInstanceError | None


#: What a batch does with the ``unflushed`` journal: empty it ("clear": a fast
#: writer, nothing is durable anyway), name its own adds and replaces there
#: ("record": a strict writer, for recovery to read back should the flush after
#: the commit, or the commit's own sync, not complete), or leave it as it is
#: ("keep": a batch undoing one whose flush failed).
Journal = Literal["clear", "record", "keep"]


def apply_batch(
    conn: sqlite3.Connection, operations: Sequence[Operation], *, journal: Journal = "clear"
) -> list[Outcome]:
    """Apply ``operations`` in one transaction; return one outcome per operation.

    ``conn`` is in autocommit mode and prepared (:func:`prepare_writer`). On any
    error the transaction is rolled back (nothing of the batch remains) and the
    error raised. A batch of adds only, the common one, is a single statement
    (``add_rows``; up to ``STAGE_CHUNK`` adds, more are staged first), its own
    transaction; the data folder's lock keeps other
    writers away, so it needs no ``BEGIN IMMEDIATE`` to be sure of the write lock.
    """
    if all(type(op) is StoredInstance for op in operations):
        items = cast(Sequence[StoredInstance], operations)
        return _outcomes(len(items), _segment(conn, items, "batch", journal))
    conn.execute(BEGIN_IMMEDIATE)
    try:
        outcomes = _apply(conn, operations)
        conn.execute(RUN_FINISH_BATCH, (journal,))
        conn.execute(COMMIT)
    except BaseException:
        # After some errors (disk full, I/O) SQLite has rolled back already.
        if conn.in_transaction:
            conn.execute(ROLLBACK)
        raise
    return outcomes


def _apply(conn: sqlite3.Connection, operations: Sequence[Operation]) -> list[Outcome]:
    outcomes: list[Outcome] = [None] * len(operations)
    start = 0
    while start < len(operations):
        op = operations[start]
        if isinstance(op, StoredInstance):
            items: list[StoredInstance] = []
            for following in operations[start:]:
                if not isinstance(following, StoredInstance):
                    break
                items.append(following)
            for seq, error in _segment(conn, items, "segment"):
                outcomes[start + seq] = error
            start += len(items)
            continue
        if isinstance(op, Replace | Refresh):
            uid = op.item.attrs.sop_instance_uid
            old = _instance_row(conn, uid)
            if old is not None:
                # A refresh rewrites a row in place: its links are kept, so the
                # levels it empties for a moment are not pruned.
                _delete(conn, (uid,), prune=isinstance(op, Replace))
            if old is not None and isinstance(op, Replace):
                # A correction: its series and study follow it (module docstring).
                _segment(conn, [op.item], "replace")
            elif old is not None or isinstance(op, Replace):
                _segment(conn, [op.item], "segment")
            if isinstance(op, Refresh):
                conn.execute(UNNOTE_WRITTEN, (uid,))
                if old is not None:
                    for statement in PRUNE_GONE:  # what the re-add left empty
                        conn.execute(statement)
            outcomes[start] = old
        else:
            outcomes[start] = _delete(conn, op.uids)
        start += 1
    return outcomes


def _segment(
    conn: sqlite3.Connection,
    items: Sequence[StoredInstance],
    run: Literal["segment", "replace", "batch"],
    journal: Journal = "keep",
) -> list[tuple[int, DuplicateInstanceError]]:
    """Stage and insert one segment of adds (``run`` = 'batch': and finish the
    batch, one transaction; 'replace': a replacement's, batch_sql.REPLACE_SEGMENT);
    (position, error) of those the trigger refused (UID indexed already)."""
    rows = [_staged_row(seq, item) for seq, item in enumerate(items)]
    # Full chunks first, each staged by its own statement; the last chunk's
    # statement also runs the segment.
    last = max(len(rows) - 1, 0) // STAGE_CHUNK * STAGE_CHUNK
    seen: list[tuple[int, str]] = []
    _refusals.seen = seen
    try:
        for start in range(0, last, STAGE_CHUNK):
            conn.execute(add_rows(STAGE_CHUNK, run=False), _flat(rows[start : start + STAGE_CHUNK]))
        conn.execute(add_rows(len(rows) - last, run=True), (*_flat(rows[last:]), run, journal))
    except BaseException:
        # In autocommit mode the chunks staged before stay staged: not for the next.
        with contextlib.suppress(sqlite3.Error):
            conn.execute(CLEAR_STAGED)
        raise
    finally:
        _refusals.seen = []
    return [(int(seq), DuplicateInstanceError(str(uid))) for seq, uid in seen]


def _flat(rows: Sequence[tuple[object, ...]]) -> tuple[object, ...]:
    return tuple(itertools.chain.from_iterable(rows))


def _outcomes(count: int, refused: list[tuple[int, DuplicateInstanceError]]) -> list[Outcome]:
    outcomes: list[Outcome] = [None] * count
    for seq, error in refused:
        outcomes[seq] = error
    return outcomes


def _delete(conn: sqlite3.Connection, uids: Sequence[str], *, prune: bool = True) -> int:
    """Remove instances by SOP Instance UID; return how many were indexed.

    ``prune``: the studies and patients left empty go now, not at the end of the
    batch, so that an add after it in the same batch files its instance as it
    would in a batch of its own (a new study under its own patient, not under
    the patient of the study it emptied)."""
    conn.execute(CLEAR_DOOMED)
    conn.execute(CLEAR_GONE)
    conn.executemany(INSERT_DOOMED, [(uid,) for uid in uids])
    conn.execute(COLLECT_GONE)
    removed = conn.execute(DELETE_GONE_INSTANCES).rowcount
    if removed <= 0:
        return 0
    for statement in REMOVE_SEGMENT:
        conn.execute(statement)
    if prune:
        for statement in PRUNE_GONE:
            conn.execute(statement)
    return removed


def _instance_row(conn: sqlite3.Connection, sop_instance_uid: str) -> InstanceRow | None:
    row = conn.execute(SELECT_INSTANCE_ROW, (sop_instance_uid,)).fetchone()
    return None if row is None else InstanceRow(*row)
