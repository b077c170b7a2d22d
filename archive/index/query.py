"""Translation of a :class:`~archive.dicom.query.Query` into SQL over the index.

What this is: the SQL text and parameters that select the entities of a query's
level (:func:`find_statements`), the instances a retrieve selects
(:func:`retrieve_statements`), and the
conversion of a result row into a record (keyword -> value). What it is not: the
execution (``database.py`` pages the results on the reader pool) nor the matching
rules (``archive.dicom.query``; :func:`~archive.dicom.query_match.matches` is the
reference these statements are tested against).

Every value is a bound parameter; only column names from the tables below are
formatted into the text. The shapes are chosen for the indexes of
``migrations/0001_initial.sql``:

* single values and UID lists become ``col = ?`` / ``col IN (?, ...)``;
* a wild card becomes ``col GLOB ?`` (case-sensitive, ``[`` escaped as ``[[]``),
  preceded by ``col >= prefix AND col < prefix || U+10FFFF`` when the pattern starts
  with literal characters, so ``SMITH*`` is an index range. A pattern that starts
  with a wild card (``*MITH*``) cannot use an index: it scans the level's table;
* DA/TM keys are inclusive comparisons of text (dates are fixed-width digit
  strings, so text order is date order; a stored time is first completed to at
  least HHMMSS, see ``_normalized_time_sql``), with ``col <> ''`` to keep unknown
  values out of open ranges;
* Modalities in Study and SOP Classes in Study match against the series rows and
  the per-study SOP class counts (``st.pk IN (SELECT study_pk ...)``), which is
  "any of the values matches" (PS3.4 C.2.2.3) and uses ``series_by_modality``;
* a held sequence (JSON text, ``migrations/0004_sequences.sql``) matches through
  ``EXISTS (SELECT 1 FROM json_each(column) ... WHERE <item keys>)``, each item key
  read with ``json_extract`` (an absent one as ''), nested sequences the same way
  one level down. At the IMAGE level a partial index of the rows that hold the
  sequence serves a query that names nothing else (0005_sequence_indexes.sql);
  above it, such a query scans its level's table (~8 ms for 50k series).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

from archive.dicom.query import DATE_TIME_VRS, Condition, MatchKind, Query, Term
from archive.dicom.query_keys import Level
from archive.index.batch_sql import INSTANCE_ROW_COLUMNS, INSTANCE_ROW_TABLES

__all__ = [
    "INSTANCE_TABLES",
    "QUALIFIED_COLUMNS",
    "RECORD_KEYWORDS",
    "PageStatements",
    "find_statements",
    "record_from_row",
    "retrieve_statements",
]

#: Record keyword -> column, for the attributes each level holds (0001_initial.sql).
_COLUMNS: Mapping[Level, Mapping[str, str]] = MappingProxyType(
    {
        Level.PATIENT: {
            "PatientID": "p.patient_id",
            "IssuerOfPatientID": "p.issuer_of_patient_id",
            "PatientName": "p.patient_name",
            "PatientBirthDate": "p.patient_birth_date",
            "PatientSex": "p.patient_sex",
            "NumberOfPatientRelatedStudies": "p.number_of_studies",
            "NumberOfPatientRelatedSeries": "p.number_of_series",
            "NumberOfPatientRelatedInstances": "p.number_of_instances",
            "OtherPatientIDsSequence": "p.other_patient_ids_sequence",
        },
        Level.STUDY: {
            "StudyInstanceUID": "st.study_instance_uid",
            "StudyDate": "st.study_date",
            "StudyTime": "st.study_time",
            "AccessionNumber": "st.accession_number",
            "StudyID": "st.study_id",
            "StudyDescription": "st.study_description",
            "ReferringPhysicianName": "st.referring_physician_name",
            "ModalitiesInStudy": "st.modalities_in_study",
            "SOPClassesInStudy": "st.sop_classes_in_study",
            "NumberOfStudyRelatedSeries": "st.number_of_series",
            "NumberOfStudyRelatedInstances": "st.number_of_instances",
            "ProcedureCodeSequence": "st.procedure_code_sequence",
        },
        Level.SERIES: {
            "SeriesInstanceUID": "se.series_instance_uid",
            "Modality": "se.modality",
            "SeriesNumber": "se.series_number",
            "SeriesDescription": "se.series_description",
            "BodyPartExamined": "se.body_part_examined",
            "SeriesDate": "se.series_date",
            "SeriesTime": "se.series_time",
            "NumberOfSeriesRelatedInstances": "se.number_of_instances",
            "RequestAttributesSequence": "se.request_attributes_sequence",
        },
        Level.IMAGE: {
            "SOPInstanceUID": "i.sop_instance_uid",
            "SOPClassUID": "i.sop_class_uid",
            "InstanceNumber": "i.instance_number",
            "ContentDate": "i.content_date",
            "ContentTime": "i.content_time",
            "Rows": "i.rows",
            "Columns": "i.columns",
            "NumberOfFrames": "i.number_of_frames",
            "ConceptNameCodeSequence": "i.concept_name_code_sequence",
            "ContentTemplateSequence": "i.content_template_sequence",
        },
    }
)

#: PN keys with a column of their str.casefold() values (case-insensitive matching).
_FOLDED = MappingProxyType({"PatientName": "p.patient_name_folded"})

#: Multi-valued study aggregates matched against the rows they are built from.
_MULTI_VALUED = MappingProxyType(
    {
        "ModalitiesInStudy": ("series", "modality"),
        "SOPClassesInStudy": ("study_sop_class", "sop_class_uid"),
    }
)

_INTEGER_VRS = frozenset({"IS", "US"})
#: Longer lists of values (List of UID Matching, C.2.2.2.2) go in as one JSON array.
_BOUND_LIST = 100
#: Sorts after every character a value can hold: the end of a prefix range.
_MAX_CHAR = "\U0010ffff"

# Each level joined to its ancestors; the entity's own alias is first.
_FROM: Mapping[Level, tuple[str, str]] = MappingProxyType(
    {
        Level.PATIENT: ("p.pk", "patient AS p"),
        Level.STUDY: ("st.pk", "study AS st JOIN patient AS p ON p.pk = st.patient_pk"),
        Level.SERIES: (
            "se.pk",
            "series AS se JOIN study AS st ON st.pk = se.study_pk"
            " JOIN patient AS p ON p.pk = st.patient_pk",
        ),
        Level.IMAGE: (
            "i.pk",
            "instance AS i JOIN series AS se ON se.pk = i.series_pk"
            " JOIN study AS st ON st.pk = i.study_pk JOIN patient AS p ON p.pk = st.patient_pk",
        ),
    }
)
_ORDER = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)


def _held(level: Level) -> dict[str, str]:
    columns: dict[str, str] = {}
    for above in _ORDER[: _ORDER.index(level) + 1]:
        columns.update(_COLUMNS[above])
    return columns


_ALL_COLUMNS = _held(Level.IMAGE)
#: Column name -> the column with its table's alias, for every column above. The
#: names are those of the InstanceAttributes fields the columns hold.
QUALIFIED_COLUMNS: Mapping[str, str] = MappingProxyType(
    {column.partition(".")[2]: column for column in _ALL_COLUMNS.values()}
)
#: Each instance joined to its series, study and patient.
INSTANCE_TABLES = _FROM[Level.IMAGE][1]

#: Keywords of the record of each level, in the order of the selected columns.
RECORD_KEYWORDS: Mapping[Level, tuple[str, ...]] = MappingProxyType(
    {level: tuple(_held(level)) for level in _ORDER}
)
_SELECT_COLUMNS = MappingProxyType({level: ", ".join(_held(level).values()) for level in _ORDER})

#: The unique key of each level's entity, read with its pk (see find_statements).
_KEY: Mapping[Level, str] = MappingProxyType(
    {
        Level.PATIENT: "p.patient_key",
        Level.STUDY: "st.study_instance_uid",
        Level.SERIES: "se.series_instance_uid",
        Level.IMAGE: "i.sop_instance_uid",
    }
)

# The page of records: pks of one page as a JSON array (or, for the entities whose
# pk changed since it was read, their unique keys), and the query's conditions
# again, so that an entity changed meanwhile is not answered unless it still
# matches. CROSS JOIN keeps the page's values the outer loop: each is one lookup
# by pk (or unique key), whatever indexes the conditions could use.
_PAGE = (
    "SELECT {pk}, {key}, {columns} FROM json_each(?) AS page CROSS JOIN {tables}"
    " WHERE {by} = page.value AND ({where})"
)


class PageStatements(NamedTuple):
    """SQL of a page of records by pk, and by unique key; their parameters after
    the page's values (a JSON array), which come first. And ``first``: the first
    records straight from the query, one read (its parameters: ``parameters``,
    then how many at most)."""

    by_pk: str
    by_key: str
    parameters: tuple[object, ...]
    first: str


def _glob(pattern: str) -> str:
    """A DICOM wild card pattern as a GLOB pattern: only ``[`` needs escaping."""
    return pattern.replace("[", "[[]")


def _prefix(pattern: str) -> str:
    for position, char in enumerate(pattern):
        if char in "*?":
            return pattern[:position]
    return pattern


def _term_sql(column: str, vr: str, term: Term, parameters: list[object]) -> str:
    if vr in DATE_TIME_VRS:
        parts = [f"{column} <> ''"]
        # A stored TM may be partial (HH, HHMM) or in ACR-NEMA form (HH:MM:SS):
        # compared as its earliest reading, as query_match.normalized_time does.
        value = _normalized_time_sql(column) if vr == "TM" else column
        parts += _bounds_sql(value, term.low, term.high, parameters)
        return "(" + " AND ".join(parts) + ")"
    if term.kind is MatchKind.WILDCARD:
        prefix = _prefix(term.value)
        if prefix:
            parameters.extend((prefix, prefix + _MAX_CHAR, _glob(term.value)))
            return f"({column} >= ? AND {column} < ? AND {column} GLOB ?)"
        parameters.append(_glob(term.value))
        return f"{column} GLOB ?"
    parameters.append(int(term.value) if vr in _INTEGER_VRS else term.value)
    return f"{column} = ?"


def _bounds_sql(value: str, low: str, high: str, parameters: list[object]) -> list[str]:
    """``value`` within inclusive bounds, as SQL terms (an empty bound is open)."""
    parts = []
    for bound, operator in ((low, ">="), (high, "<=")):
        if bound:
            parts.append(f"{value} {operator} ?")
            parameters.append(bound)
    return parts


def _normalized_time_sql(column: str) -> str:
    """SQL for :func:`archive.dicom.query_match.normalized_time` of a TM column."""
    bare = f"replace({column}, ':', '')"
    time = f"substr({bare} || '0000', 1, max(6, length({bare})))"
    return f"(CASE WHEN instr({bare}, '.') THEN rtrim(rtrim({time}, '0'), '.') ELSE {time} END)"


def _terms_sql(column: str, condition: Condition, parameters: list[object]) -> str:
    terms = condition.terms
    if condition.vr not in DATE_TIME_VRS and all(t.kind is MatchKind.SINGLE for t in terms):
        if len(terms) == 1:
            return _term_sql(column, condition.vr, terms[0], parameters)
        values: list[object] = list(
            dict.fromkeys(int(t.value) if condition.vr in _INTEGER_VRS else t.value for t in terms)
        )
        if len(values) > _BOUND_LIST:
            # One parameter, however long the list: SQLite takes at most 250,000
            # variables in a statement (a C-MOVE of every SOP Instance UID of a
            # big study can list more) and each costs a bind.
            parameters.append(json.dumps(values))
            return f"{column} IN (SELECT value FROM json_each(?))"
        parameters.extend(values)
        return f"{column} IN ({', '.join('?' * len(values))})"
    return "(" + " OR ".join(_term_sql(column, condition.vr, t, parameters) for t in terms) + ")"


def _date_time_sql(condition: Condition, parameters: list[object]) -> str:
    """A combined date-time condition (``query._combine_date_time``) as SQL.

    The same reading as ``query_match._date_time_matches``. The date's own bounds come
    first, so that a date range still searches the date's index; the
    concatenated value only refines within it.
    """
    date = _ALL_COLUMNS[condition.keyword]
    time = _ALL_COLUMNS[condition.time_keyword]
    term = condition.terms[0]
    hour = _normalized_time_sql(time)

    def bounded(value: str, low: str, high: str) -> list[str]:
        return _bounds_sql(value, low, high, parameters)

    unknown_date = ""
    if condition.unknown_matches:
        # An unknown date: the time alone decides, as when matching key by key.
        # (First: its parameters come first in the text.)
        alone = " AND ".join([f"{time} <> ''", *bounded(hour, term.low[8:], term.high[8:])])
        if condition.time_unknown_matches:
            alone = f"({alone}) OR {time} = ''"
        unknown_date = f"({date} = '' AND ({alone})) OR "
    known = [f"{date} <> ''", *bounded(date, term.low[:8], term.high[:8])]
    both = " AND ".join([f"{time} <> ''", *bounded(f"{date} || {hour}", term.low, term.high)])
    when_known = f"({both})" if not condition.time_unknown_matches else f"(({both}) OR {time} = '')"
    return "(" + unknown_date + "(" + " AND ".join([*known, when_known]) + "))"


def _sequence_sql(source: str, condition: Condition, parameters: list[object], depth: int) -> str:
    """An item of the JSON array ``source`` meets every item condition (C.2.2.2.6)."""
    alias = f"item{depth}"
    clauses = []
    for inner in condition.items:
        path = f"'$.{inner.keyword}'"
        value = f"json_extract({alias}.value, {path})"
        if inner.kind is MatchKind.SEQUENCE:
            # Only an array is items (header.py writes nothing else there; a
            # string would make json_each fail the whole query).
            items = f"CASE json_type({alias}.value, {path}) WHEN 'array' THEN {value} END"
            clauses.append(_sequence_sql(items, inner, parameters, depth + 1))
            continue
        value = f"coalesce({value}, '')"
        if inner.fold:
            value = f"casefold({value})"
        clauses.append(_terms_sql(value, inner, parameters))
    where = " AND ".join(clauses) or "1"
    return f"EXISTS (SELECT 1 FROM json_each(nullif({source}, '')) AS {alias} WHERE {where})"


def _condition_sql(condition: Condition, parameters: list[object]) -> str:
    if condition.time_keyword:
        return _date_time_sql(condition, parameters)
    if condition.kind is MatchKind.SEQUENCE:
        # "<> ''" lets the partial indexes of 0005_sequence_indexes.sql serve it.
        column = _ALL_COLUMNS[condition.keyword]
        return f"({column} <> '' AND {_sequence_sql(column, condition, parameters, 0)})"
    multi = _MULTI_VALUED.get(condition.keyword)
    if multi is not None:
        table, column = multi
        inner = _terms_sql(column, condition, parameters)
        return f"st.pk IN (SELECT study_pk FROM {table} WHERE {inner})"
    column = _ALL_COLUMNS[condition.keyword]
    if condition.fold:
        # A casefolded column where the index keeps one (indexed); otherwise the
        # readers' casefold() function (database.py), which no index serves: PN
        # keys other than Patient Name are seldom the only key of a query.
        column = _FOLDED.get(condition.keyword) or f"casefold({column})"
    sql = _terms_sql(column, condition, parameters)
    if condition.unknown_matches:
        # PS3.4 C.2.2.1.2: a Required Key of zero length is unknown and matches.
        # Strings are '' when empty and numbers NULL (0001_initial.sql); both
        # sides of the OR use the same index.
        unknown = f"{column} IS NULL" if condition.vr in _INTEGER_VRS else f"{column} = ''"
        sql = f"({unknown} OR {sql})"
    return sql


def _where(query: Query) -> tuple[str, list[object]]:
    parameters: list[object] = []
    clauses: list[str] = []
    on_patient = [c for c in query.conditions if _ALL_COLUMNS[c.keyword].startswith("p.")]
    if on_patient and query.level is not Level.PATIENT:
        # Patient keys select patients first: with a leading wild card the scan is of
        # the patient table (the smallest), then studies by study_by_patient.
        inner = " AND ".join(_condition_sql(c, parameters) for c in on_patient)
        clauses.append(f"st.patient_pk IN (SELECT p.pk FROM patient AS p WHERE {inner})")
    for condition in query.conditions:
        if condition not in on_patient or query.level is Level.PATIENT:
            clauses.append(_condition_sql(condition, parameters))
    return (" AND ".join(clauses) if clauses else "1"), parameters


def find_statements(
    query: Query, limit: int | None = None
) -> tuple[str, list[object], PageStatements]:
    """(SQL selecting the matching pks, its parameters, the statements of a page).

    The first records are read straight from the query (``PageStatements.first``),
    in one read: an answer that fits there is one snapshot of the index. Only a
    larger one is read in two steps, as follows.

    Every statement selects the pk, then the entity's unique key (patient key,
    Study, Series or SOP Instance UID); a page statement's other columns are the
    record's. The pages are read after the pks, in later reads, while ingest goes
    on: an entity may go meanwhile and its pk be handed to another (SQLite reuses
    the highest pk once its row is deleted), which the key tells apart; a
    replacement gives its instance (and a series or study it emptied) a new pk,
    found again by its key; and one moved elsewhere by a correction, or changed,
    no longer matches the conditions the page applies again.
    """
    pk, tables = _FROM[query.level]
    key = _KEY[query.level]
    where, parameters = _where(query)
    conditions = tuple(parameters)
    select = f"SELECT {pk}, {key} FROM {tables} WHERE {where}"
    if limit is not None:
        select += " LIMIT ?"
        parameters.append(limit)
    columns = _SELECT_COLUMNS[query.level]
    by_pk, by_key = (
        _PAGE.format(pk=pk, key=key, columns=columns, tables=tables, by=by, where=where)
        for by in (pk, key)
    )
    first = f"SELECT {pk}, {key}, {columns} FROM {tables} WHERE {where} LIMIT ?"
    return select, parameters, PageStatements(by_pk, by_key, conditions, first)


def record_from_row(level: Level, row: Sequence[object]) -> dict[str, object]:
    """The record of one page row (its first column, the pk, left out)."""
    return dict(zip(RECORD_KEYWORDS[level], row[1:], strict=True))


def _retrieve_tables(query: Query) -> str:
    if query.level is Level.PATIENT and any(
        _ALL_COLUMNS[c.keyword].startswith("p.") for c in query.conditions
    ):
        # Patient keys of a PATIENT level retrieve are matched on p itself; at the
        # other levels _where puts them in a subquery on the patient table.
        return INSTANCE_TABLES
    # Nothing to match on the patient: one join less for every instance.
    return INSTANCE_ROW_TABLES


def retrieve_statements(query: Query) -> tuple[str, list[object]]:
    """(SQL of the InstanceRow columns of the instances selected, in sending
    order; its parameters)."""
    where, parameters = _where(query)
    select = (
        f"SELECT {INSTANCE_ROW_COLUMNS} FROM {_retrieve_tables(query)} WHERE {where}"
        " ORDER BY i.study_pk, i.series_pk, i.instance_number, i.pk"
    )
    return select, parameters
