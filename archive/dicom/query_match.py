"""The reference matcher: whether one index record matches a :class:`Query`.

What this is: :func:`matches`, slow and simple, the rules of the module docstring
of :mod:`archive.dicom.query` applied to one record (keyword -> value, as
``Index.find`` yields); :func:`item_matches`, the same for one item of a held
sequence (the responses return only the items that match); and
:func:`normalized_time`, how a stored time is read.
It is what the SQL translation in :mod:`archive.index.query` is tested against
(``tests/index/test_find_properties.py``). What it is not: used to answer queries
(the index does), nor I/O of any kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import msgspec

from archive.dicom.query import DATE_TIME_VRS, Condition, MatchKind, Query, Term

__all__ = ["item_matches", "matches", "normalized_time", "sequence_items"]


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def normalized_time(value: str) -> str:
    """A stored TM as compared with a key's bounds: its earliest reading.

    ``10`` and ``1015`` are 10:00 and 10:15 (``100000``, ``101500``); ``10:15:30``
    (ACR-NEMA) is ``101530``; a fraction loses its trailing zeros (``101530.250``
    is ``101530.25``, ``101530.0`` is ``101530``), so that the strings compare as
    the times do. Keys are normalized when parsed (``query_terms._time``); the
    index does the same in SQL (``archive.index.query``).
    """
    bare = value.replace(":", "")
    time = (bare + "0000")[: max(6, len(bare))]
    return time.rstrip("0").rstrip(".") if "." in time else time


def _term_matches(condition: Condition, term: Term, value: str | int) -> bool:
    if condition.vr in DATE_TIME_VRS and isinstance(value, str):
        if not value:
            return False
        if condition.vr == "TM":
            value = normalized_time(value)
        return _within(value, term.low, term.high)
    if isinstance(value, int):
        return term.kind is MatchKind.SINGLE and value == int(term.value)
    if not value:
        return False
    if term.kind is MatchKind.WILDCARD:
        return _wildcard_regex(term.value).fullmatch(value) is not None
    return value == term.value


def _date_time_matches(condition: Condition, date: object, time: object) -> bool:
    """A combined date-time condition (``query._combine_date_time``) against a record.

    Both known: date and normalized time, concatenated, against the bounds. One
    unknown (if its key's unknown matches): the other alone against its part of
    the bounds, as when matching key by key.
    """
    term = condition.terms[0]
    day = "" if date is None else str(date)
    hour = "" if time is None else str(time)
    if not day:
        if not condition.unknown_matches:
            return False
        if not hour:
            return condition.time_unknown_matches
        value, low, high = normalized_time(hour), term.low[8:], term.high[8:]
    elif not hour:
        if not condition.time_unknown_matches:
            return False
        value, low, high = day, term.low[:8], term.high[:8]
    else:
        value, low, high = day + normalized_time(hour), term.low, term.high
    return _within(value, low, high)


def _within(value: str, low: str, high: str) -> bool:
    """Inclusive bounds, an empty one open."""
    return (not low or value >= low) and (not high or value <= high)


def matches(query: Query, record: Mapping[str, object]) -> bool:
    """Whether ``record`` (keyword -> value, as ``Index.find`` yields) matches.

    The reference matcher: slow, simple, and what the SQL translation must agree
    with. A record value of None or '' (unknown) matches a Required Key whatever
    its value (PS3.4 C.2.2.1.2), and no other non-universal key. A sequence
    condition matches when one of the record's items meets all its item
    conditions (C.2.2.2.6).
    """
    return item_matches(query.conditions, record)


def item_matches(conditions: Iterable[Condition], item: Mapping[str, object]) -> bool:
    """Whether ``item`` (a record, or one item of a held sequence) meets every
    condition."""
    for condition in conditions:
        raw = item.get(condition.keyword)
        if condition.kind is MatchKind.SEQUENCE:
            if not any(item_matches(condition.items, inner) for inner in sequence_items(raw)):
                return False
            continue
        if condition.time_keyword:
            if not _date_time_matches(condition, raw, item.get(condition.time_keyword)):
                return False
            continue
        if raw is None or raw == "":
            if condition.unknown_matches:
                continue
            return False
        if not isinstance(raw, str | int):
            return False
        values: list[str | int]
        if isinstance(raw, str):
            text = raw.casefold() if condition.fold else raw
            values = list(text.split("\\")) if condition.multi_valued else [text]
        else:
            values = [raw]
        if not any(
            _term_matches(condition, term, value) for term in condition.terms for value in values
        ):
            return False
    return True


def sequence_items(stored: object) -> list[Mapping[str, object]]:
    """A held sequence's items: JSON text in a record (``header.py`` wrote it), a
    list inside an item; none for anything else."""
    if isinstance(stored, str) and stored:
        try:
            stored = msgspec.json.decode(stored)
        except msgspec.DecodeError:
            return []
    if not isinstance(stored, list):
        return []
    return [item for item in stored if isinstance(item, dict)]
