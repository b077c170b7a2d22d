"""The C-FIND / C-MOVE / C-GET identifier as a query: parsing, matching, responses.

What this is: :func:`parse_identifier` turns the decoded elements of a request
Identifier into a :class:`Query` (the matching keys of PS3.4 C.2.2.2, each with its
kind, and the return keys, each with where its value comes from). The C-FIND-RSP
Identifier of a match is built by :mod:`archive.dicom.query_identifier` (and, fast,
:mod:`archive.dicom.query_response`). The brute-force matcher of one index record,
the reference the SQL translation in :mod:`archive.index.query` is tested against,
is :mod:`archive.dicom.query_match`.
What it is not: I/O of any kind, nor SQL. The key table is in
:mod:`archive.dicom.query_keys`, the types of a parsed query in
:mod:`archive.dicom.query_model` (re-exported here), and the reading of one key's
value (terms, held sequence keys) in :mod:`archive.dicom.query_terms`.

Conformance choices (implementation-defined or lenient on purpose):

* Single Value Matching is case-sensitive; PN keys are compared with
  ``str.casefold`` on both sides when ``fold_person_names`` (PS3.4 C.2.2.2.1.1).
  Leading and trailing spaces are not significant.
* ``\\`` separates alternatives for every VR (List of UID Matching, PS3.4 C.2.2.2.2,
  generalised the way Orthanc and dcm4chee do for CS, e.g. ``CT\\MR``): an entity
  matches when one alternative does. An alternative that is only ``*`` makes the key
  universal (C.2.2.2.4 note 1).
* Dates and times match by meaning (C.2.2.2.1.3): every DA/TM key, single or range,
  is an inclusive comparison of a low and a high bound. A TM bound with missing
  components is the earliest (low) or latest (high) time it can mean: ``10`` as a
  range end is 10:59:59.999999, and a single ``2230`` matches 22:30:00 to
  22:30:59.999999. ACR-NEMA separators (``:`` in TM, ``.`` in DA) are accepted in
  keys. A stored time is compared as its earliest reading
  (:func:`archive.dicom.query_match.normalized_time`): a stored ``1015`` is
  10:15:00, within ``101500-101600``.
* Combined date-time matching (PS3.4 C.2.2.2.5, offered in SOP Class Extended
  Negotiation, C.5.1.1.2): when the SCU asked for it, a date key and its time key
  (Study, Series or Content Date and Time) that are ranges of the same form match
  as one date-time range: ``20240105-20240320`` with ``1200-0900`` is from 5
  January 12:00 to 20 March 09:00, ``_combine_date_time``. An entity whose date
  or time is unknown is matched on the other alone. Other pairs, and all pairs
  without the option, match key by key. No attribute the index holds is a DT, so
  there is no other date-time range to match.
* A zero-length value of a Required Key (``KeyInfo.required``) is unknown and
  matches any value (C.2.2.1.2), unless ``match_unknown`` is off
  (``[query] match_unknown = false``); an empty value of any other key matches
  only Universal Matching (and ``*``). Patient ID is Required in Study Root but the
  PATIENT level's Unique Key in Patient Root, where an empty one never matches a
  value: a query for one patient must not bring anonymous ones along.
* Sequence Matching (C.2.2.2.6) on the sequences the index holds
  (``query_keys.SEQUENCE_KEYS``): the key's single item holds item keys, matched
  by the rules here (nested sequences recursively); an entity matches when one of
  its items matches them all, and its response holds the matching items with the
  requested item keys only. A key without an item, or with an empty item, or whose
  item keys are all universal, matches every entity and returns every item (all
  the item keys held when none was named). A key of more than one item is refused
  (A900: the standard allows one). Item keys the index does not keep are returned
  zero length and, if not universal, not matched (FF01). Any other sequence is a
  return key answered with an empty sequence, its item keys not matched (FF01).
* Hierarchical queries (C.4.1.3.1.1) are lenient: keys of the query level and the
  levels above that the index holds are all matched, unique or not, and a missing
  higher-level unique key does not restrict. A non-universal key of a level *below*
  the query level is refused (A900, C.4.1.1.3.1: the keys allowed are those of the
  level). The node does not agree to relational queries (C.4.1.3.2 has the SCP
  match every key whatever its level, which the index does not do); relational
  retrieval needs nothing here, since a retrieve's keys above its level are
  never required.
* Keys the index does not hold, and the computed counts, are return keys only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from archive.dicom.charset import SPECIFIC_CHARACTER_SET, character_set_terms, python_codecs
from archive.dicom.dataset import Element
from archive.dicom.query_keys import (
    KEYS,
    LEVEL_ORDER,
    QR_SOP_CLASSES,
    UNIQUE_KEYS,
    Level,
    QueryModel,
    effective_level,
)
from archive.dicom.query_model import (
    DATE_TIME_VRS,
    Condition,
    MatchKind,
    Query,
    QueryError,
    ResponseKey,
    ReturnKey,
    Source,
    Term,
)
from archive.dicom.query_terms import decode_key, held_sequence, key_terms, key_vr

__all__ = [
    "DATE_TIME_VRS",
    "Condition",
    "Level",
    "MatchKind",
    "Query",
    "QueryError",
    "QueryModel",
    "ResponseKey",
    "ReturnKey",
    "Source",
    "Term",
    "information_model",
    "parse_identifier",
]

QUERY_RETRIEVE_LEVEL = 0x00080052
QUERY_RETRIEVE_VIEW = 0x00080053
RETRIEVE_AE_TITLE = 0x00080054
INSTANCE_AVAILABILITY = 0x00080056
TIMEZONE_OFFSET_FROM_UTC = 0x00080201


def information_model(
    abstract_syntax: str,
) -> tuple[QueryModel, Literal["find", "move", "get"]] | None:
    """The model and operation of a Q/R SOP Class UID (PS3.4 C.6), or None."""
    return QR_SOP_CLASSES.get(abstract_syntax)


# -- parsing -----------------------------------------------------------------------


def _level_of(elements: Sequence[Element], model: QueryModel) -> Level:
    for element in elements:
        if element.tag == QUERY_RETRIEVE_LEVEL:
            raw = element.value
            text = bytes(raw).decode("latin_1").strip("\x00 ") if isinstance(raw, bytes) else ""
            try:
                level = Level(text)
            except ValueError:
                raise QueryError(
                    f"invalid Query/Retrieve Level {text[:16]!r}", offending=QUERY_RETRIEVE_LEVEL
                ) from None
            if model is QueryModel.STUDY_ROOT and level is Level.PATIENT:
                raise QueryError(
                    "PATIENT level is not in the Study Root model", offending=QUERY_RETRIEVE_LEVEL
                )
            return level
    # C.4.1.1.3.1 / C.4.2.1.4.1: the Identifier shall contain (0008,0052).
    raise QueryError("Query/Retrieve Level (0008,0052) is missing", offending=QUERY_RETRIEVE_LEVEL)


#: The date and time keys matched as one date-time when that was negotiated.
_DATE_TIME_PAIRS = (
    ("StudyDate", "StudyTime"),
    ("SeriesDate", "SeriesTime"),
    ("ContentDate", "ContentTime"),
)


def _combine_date_time(date: Condition, time: Condition) -> Condition | None:
    """The two keys as one combined date-time condition, or None if they do not pair.

    PS3.4 C.2.2.2.5: a DA and a TM key "both of which specify the same form of
    Range Matching" are matched as one DT. So each must be one range (not a
    list, not a single value), both closed, both open at the top or both open at
    the bottom; any other pair is matched key by key. The bounds are the date's
    then the time's (dates are always 8 characters: the time's bounds are what
    follows).
    """
    if len(date.terms) != 1 or len(time.terms) != 1:
        return None
    day, hour = date.terms[0], time.terms[0]
    if day.kind is not MatchKind.RANGE or hour.kind is not MatchKind.RANGE:
        return None
    if (bool(day.low), bool(day.high)) != (bool(hour.low), bool(hour.high)):
        return None
    return Condition(
        date.tag,
        date.keyword,
        "DT",
        date.level,
        MatchKind.RANGE,
        (
            Term(
                MatchKind.RANGE,
                f"{day.value} {hour.value}",
                day.low + hour.low,
                day.high + hour.high,
            ),
        ),
        unknown_matches=date.unknown_matches,
        time_keyword=time.keyword,
        time_unknown_matches=time.unknown_matches,
    )


def _combined(conditions: list[Condition]) -> list[Condition]:
    by_keyword = {c.keyword: c for c in conditions}
    for date_keyword, time_keyword in _DATE_TIME_PAIRS:
        date, time = by_keyword.get(date_keyword), by_keyword.get(time_keyword)
        if date is None or time is None:
            continue
        combined = _combine_date_time(date, time)
        if combined is not None:
            conditions = [combined if c is date else c for c in conditions if c is not time]
    return conditions


def _below(tag: int, level: Level) -> QueryError:
    """A900 for a key of a level below the query's (C.4.1.1.3.1: not allowed)."""
    return QueryError(f"key {tag:08X} is below the {level} level", offending=tag)


def parse_identifier(
    elements: Sequence[Element],
    model: QueryModel,
    *,
    purpose: Literal["find", "retrieve"] = "find",
    fold_person_names: bool = False,
    match_unknown: bool = True,
    combined_date_time: bool = False,
) -> Query:
    """The :class:`Query` an Identifier asks for (see the module docstring).

    ``purpose="retrieve"`` (C-MOVE, C-GET; PS3.4 C.4.2.1.4.1): only the unique keys
    of the level and the levels above select; the level's own must be present.
    Raises :class:`QueryError`.
    """
    level = _level_of(elements, model)
    terms_of_charset = character_set_terms(elements) or ()
    codecs = python_codecs(terms_of_charset)
    depth = LEVEL_ORDER[level]
    conditions: list[Condition] = []
    return_keys: list[ReturnKey] = []
    unsupported: list[int] = []
    seen: set[int] = set()
    for element in elements:
        tag = element.tag
        if tag in seen or tag >> 16 < 0x0008 or (tag >> 16) & 1 or tag & 0xFFFF == 0:
            continue  # duplicates, command/meta groups, private tags, group lengths
        seen.add(tag)
        if tag in (
            SPECIFIC_CHARACTER_SET,
            QUERY_RETRIEVE_LEVEL,
            QUERY_RETRIEVE_VIEW,
            TIMEZONE_OFFSET_FROM_UTC,
        ):
            continue
        info = KEYS.get(tag)
        vr = info.vr if info is not None else key_vr(element)
        if info is not None and info.items is not None and purpose == "find":
            key_level = effective_level(info.level, model)
            try:
                items, condition, lost = held_sequence(
                    element, info, key_level, codecs, fold_person_names
                )
            except QueryError as exc:
                exc.name_key(tag)
                raise
            if LEVEL_ORDER[key_level] > depth:
                return_keys.append(ReturnKey(tag, "SQ", None))
                if condition is not None or lost:
                    raise _below(tag, level)
                continue
            match = condition.items if condition is not None else ()
            return_keys.append(ReturnKey(tag, "SQ", info.keyword, items, match))
            if lost:
                unsupported.append(tag)
            if condition is not None:
                conditions.append(condition)
            continue
        if isinstance(element.value, tuple) or (info is not None and info.items is not None):
            # A sequence the index does not hold, or any in a retrieve.
            return_keys.append(ReturnKey(tag, "SQ", None))
            if isinstance(element.value, tuple) and any(element.value) and purpose == "find":
                unsupported.append(tag)
            continue
        if info is None:
            return_keys.append(ReturnKey(tag, vr, None))
            if decode_key(element, vr, codecs).strip("\x00 ") and purpose == "find":
                unsupported.append(tag)
            continue
        key_level = effective_level(info.level, model)
        below = LEVEL_ORDER[key_level] > depth
        return_keys.append(ReturnKey(tag, vr, None if below else info.keyword))
        if purpose == "retrieve" and (tag != UNIQUE_KEYS[key_level] or below):
            # C.2.2.1.2/3: other keys shall not be in a retrieve. (In Study Root
            # Patient ID's level is STUDY, so it is skipped here too.)
            continue
        text = decode_key(element, vr, codecs)
        if purpose == "retrieve" and vr == "UI" and ("*" in text or "?" in text):
            # C.4.2.2.1: a single UID or a list of them. Taken literally, a wild
            # card matched nothing, and the retrieve answered Success with none.
            raise QueryError(f"wild card in UID key {tag:08X} of a retrieve", offending=tag)
        # Every PN key (PS3.4 C.2.2.2.1.1 leaves case to the site's choice).
        fold = fold_person_names and vr == "PN"
        try:
            terms = key_terms(vr, text, fold=fold, literal=purpose == "retrieve")
        except QueryError as exc:
            if below:  # not a key of this query at all, whatever its value
                raise _below(tag, level) from None
            exc.name_key(tag)
            raise
        if terms is None:
            continue
        if below:
            raise _below(tag, level)
        if not info.matchable:
            unsupported.append(tag)
            continue
        kind = MatchKind.LIST if len(terms) > 1 else terms[0].kind
        conditions.append(
            Condition(
                tag,
                info.keyword,
                vr,
                key_level,
                kind,
                terms,
                fold,
                info.multi_valued,
                # Not for a level's Unique Key: every entity has one (C.2.2.1.1).
                # Patient ID is that of the PATIENT level in Patient Root, while
                # Study Root lists it as a Required Key of the STUDY level.
                unknown_matches=match_unknown
                and info.required
                and purpose == "find"
                and tag != UNIQUE_KEYS[key_level],
            )
        )
    if combined_date_time:
        conditions = _combined(conditions)
    if purpose == "retrieve":
        unique = UNIQUE_KEYS[level]
        if not any(c.tag == unique for c in conditions):
            raise QueryError(
                f"unique key {unique:08X} of the {level} level is missing", offending=unique
            )
    return Query(
        level=level,
        conditions=tuple(conditions),
        return_keys=tuple(return_keys),
        character_set=terms_of_charset,
        unsupported=tuple(unsupported),
        response_keys=_response_keys(model, level, return_keys),
    )


def _response_keys(
    model: QueryModel, level: Level, return_keys: Sequence[ReturnKey]
) -> tuple[ResponseKey, ...]:
    keys: dict[int, ResponseKey] = {}
    for key in return_keys:
        keys[key.tag] = ResponseKey(
            key.tag, key.vr, key.attribute, _source(key), key.items, key.match
        )
    keys[QUERY_RETRIEVE_LEVEL] = ResponseKey(QUERY_RETRIEVE_LEVEL, "CS", None, Source.LEVEL)
    # Where the matches can be retrieved from, asked for or not: PS3.4 C.4.1.1.3.2
    # has it present when no Storage Media File-Set ID and UID are (never here).
    keys[RETRIEVE_AE_TITLE] = ResponseKey(RETRIEVE_AE_TITLE, "AE", None, Source.RETRIEVE_AE)
    # Hierarchical search, PS3.4 C.4.1.3.1.1 a: the unique keys of the levels above.
    for above in Level:
        if LEVEL_ORDER[above] >= LEVEL_ORDER[level]:
            break
        if effective_level(above, model) is not above:
            continue  # no patient entity in Study Root
        tag = UNIQUE_KEYS[above]
        if tag not in keys:
            info = KEYS[tag]
            keys[tag] = ResponseKey(tag, info.vr, info.keyword, Source.TEXT)
    return tuple(keys[tag] for tag in sorted(keys))


def _source(key: ReturnKey) -> int:
    if key.tag == RETRIEVE_AE_TITLE:
        return Source.RETRIEVE_AE
    if key.tag == INSTANCE_AVAILABILITY:
        return Source.AVAILABILITY
    if key.vr == "SQ":
        return Source.SEQUENCE
    if key.attribute is None:
        return Source.EMPTY
    if key.vr == "US":
        return Source.UNSIGNED_SHORT
    if key.vr == "IS":
        return Source.INTEGER_STRING
    return Source.TEXT
