"""Key values of a Q/R Identifier as terms to match, and held sequence keys.

What this is: :func:`key_terms` (the alternatives of one key's value: single,
wild card, range, universal, PS3.4 C.2.2.2.1-5), :func:`decode_key` and
:func:`key_vr` (a key's text and VR), and a held sequence
key's single item as item conditions and item return keys, C.2.2.2.6,
recursively, :func:`held_sequence`). The rules are listed in the docstring of
:mod:`archive.dicom.query`, which uses these. What it is not: I/O, nor SQL.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

from archive.dicom import dictionary
from archive.dicom.attributes import normalized_date
from archive.dicom.charset import SPECIFIC_CHARACTER_SET, decode_value
from archive.dicom.dataset import Element, element_items
from archive.dicom.dimse.status import Status
from archive.dicom.query_keys import KeyInfo, Level
from archive.dicom.query_model import (
    DATE_TIME_VRS,
    INTEGER_VRS,
    WILDCARD_VRS,
    Condition,
    MatchKind,
    QueryError,
    ResponseKey,
    Source,
    Term,
)

__all__ = ["decode_key", "held_sequence", "key_terms", "key_vr"]

_DA = re.compile(r"\d{8}")
_TM = re.compile(r"\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?")
# Latest time a partial TM can mean, completed from its length (HH, HHMM, HHMMSS).
# Seconds run to 60: a leap second is in its minute (PS3.5 TM allows SS = 60).
_TM_CEIL = {2: "5960.999999", 4: "60.999999", 6: ".999999"}


def _date(text: str) -> str:
    value = normalized_date(text.strip())  # ACR-NEMA YYYY.MM.DD accepted
    if not _DA.fullmatch(value):
        raise QueryError(f"invalid DA key value {text[:20]!r}", Status.CANNOT_UNDERSTAND)
    return value


def _time(text: str) -> tuple[str, str]:
    """(earliest, latest) reading of a TM value, PS3.5 Table 6.2-1 TM."""
    value = text.strip().replace(":", "")
    if not _TM.fullmatch(value):
        raise QueryError(f"invalid TM key value {text[:20]!r}", Status.CANNOT_UNDERSTAND)
    if "." in value:
        # The earliest reading without trailing zeros, as stored times are
        # compared (query_match.normalized_time): 235959.0 is 235959.
        head, fraction = value.split(".")
        return value.rstrip("0").rstrip("."), f"{head}.{fraction.ljust(6, '9')}"
    return value, value + _TM_CEIL[len(value)]


def _date_time_term(vr: str, text: str) -> Term:
    """A DA or TM alternative: single value or range, as inclusive bounds."""
    if "-" not in text:
        if vr == "DA":
            day = _date(text)
            return Term(MatchKind.SINGLE, text.strip(), day, day)
        low, high = _time(text)
        return Term(MatchKind.SINGLE, text.strip(), low, high)
    start, _, end = text.partition("-")
    if vr == "DA":
        low = _date(start) if start.strip() else ""
        high = _date(end) if end.strip() else ""
    else:
        low = _time(start)[0] if start.strip() else ""
        high = _time(end)[1] if end.strip() else ""
    return Term(MatchKind.RANGE, text.strip(), low, high)


def decode_key(element: Element, vr: str, codecs: Sequence[str]) -> str:
    raw = element.value
    assert isinstance(raw, bytes | bytearray | memoryview)
    return decode_value(bytes(raw), vr, codecs)


def _strip(text: str, vr: str) -> str:
    return text.strip("\x00 ") if vr == "UI" else text.strip(" ")


def key_terms(info_vr: str, text: str, *, fold: bool, literal: bool) -> tuple[Term, ...] | None:
    """The alternatives of a non-empty key value; None when it is universal."""
    terms: list[Term] = []
    for part in text.split("\\"):
        alternative = _strip(part, info_vr)
        if not alternative:
            continue  # "A\\" has an empty alternative: it adds nothing to match
        if fold:
            alternative = alternative.casefold()
        if not literal and not alternative.strip("*"):
            return None  # "*" is Universal Matching, C.2.2.2.4 note 1 (any VR, leniently)
        if not literal and info_vr in DATE_TIME_VRS:
            if alternative == "-":
                return None
            terms.append(_date_time_term(info_vr, alternative))
        elif info_vr in INTEGER_VRS:
            try:
                number = int(alternative)
            except ValueError:
                raise QueryError(
                    f"invalid {info_vr} key value {alternative[:20]!r}", Status.CANNOT_UNDERSTAND
                ) from None
            terms.append(Term(MatchKind.SINGLE, str(number)))
        elif not literal and info_vr in WILDCARD_VRS and ("*" in alternative or "?" in alternative):
            terms.append(Term(MatchKind.WILDCARD, alternative))
            if info_vr == "PN":
                terms.extend(_shorter_names(alternative))
        else:
            terms.append(Term(MatchKind.SINGLE, alternative))
    return tuple(terms) or None


def _shorter_names(pattern: str) -> list[Term]:
    """The forms a PN wild card pattern also matches as names are indexed: without
    trailing empty components and groups (PS3.5 6.2.1.1, ``charset.decode_person_name``).

    ``DOE^*`` matches ``DOE^``, one name with ``DOE``, which is how the index holds
    it: so ``DOE`` matches too. In each component group, every trailing component
    that is nothing but ``*`` may be absent from the held name, and so may every
    trailing group that is nothing but ``*``: each such shorter pattern is one
    more alternative. One that is all ``*`` would be Universal Matching, which
    also matches empty (unknown) values; it stands for any name here, so it is
    ``?*``, as an empty value matches a wild card nowhere else.
    """
    groups = pattern.split("=")
    kept = len(groups)
    cuts = [kept]
    while kept > 1 and not _group_forms(groups[kept - 1])[-1].strip("*"):
        kept -= 1
        cuts.append(kept)
    shorter: dict[str, None] = {}
    for cut in cuts:
        for combination in itertools.product(*(_group_forms(g) for g in groups[:cut])):
            name = "=".join(combination)
            # A held name never ends in a delimiter: such a form would match none.
            if name and name != pattern and not name.endswith(("^", "=")):
                shorter[name if name.strip("*") else "?*"] = None
    return [
        Term(MatchKind.WILDCARD if "*" in name or "?" in name else MatchKind.SINGLE, name)
        for name in shorter
    ]


def _group_forms(group: str) -> list[str]:
    """A component group of a pattern, then without each trailing ``*``-only component."""
    forms = [group]
    components = group.split("^")
    while len(components) > 1 and not components[-1].strip("*"):
        components.pop()
        forms.append("^".join(components))
    return forms


def key_vr(element: Element) -> str:
    if element.vr != "UN":
        return element.vr
    # Implicit VR: the dictionary knows; an unknown tag stays UN.
    return dictionary.vr_of(element.tag)


def held_sequence(
    element: Element, info: KeyInfo, level: Level, codecs: Sequence[str], fold: bool
) -> tuple[tuple[ResponseKey, ...], Condition | None, bool]:
    """A key of a sequence the index holds (``info.items``), PS3.4 C.2.2.2.6:
    (what each item of a response holds, the condition one of an entity's items
    must meet or None when the key is universal, whether a key inside was not
    matched: FF01). Nested held sequences the same way, recursively.
    """
    element, unreadable = _as_sequence(element)
    items, match, lost = _item_keys(element, info, codecs, fold)
    if not match:
        return items, None, lost or unreadable
    condition = Condition(
        element.tag, info.keyword, "SQ", level, MatchKind.SEQUENCE, (), items=match
    )
    return items, condition, lost or unreadable


def _item_keys(
    element: Element, info: KeyInfo, codecs: Sequence[str], fold_person_names: bool
) -> tuple[tuple[ResponseKey, ...], tuple[Condition, ...], bool]:
    """The single item of a held sequence key: (item return keys, item conditions,
    whether an item key was not matched)."""
    assert isinstance(element.value, tuple)
    assert info.items is not None
    if len(element.value) > 1:
        raise QueryError(f"sequence key {element.tag:08X} has {len(element.value)} items")
    held = info.items
    if not element.value or not element.value[0]:
        # No item key named: the whole sequence, every item key held.
        return tuple(_all_item_keys(held)), (), False
    keys: list[ResponseKey] = []
    match: list[Condition] = []
    lost = False
    seen: set[int] = set()
    for item_element in sorted(element.value[0], key=lambda e: e.tag):
        tag = item_element.tag
        if tag in seen or (tag >> 16) & 1 or tag & 0xFFFF == 0 or tag == SPECIFIC_CHARACTER_SET:
            continue
        seen.add(tag)
        key = held.get(tag)
        if key is not None and key.items is not None:
            items, inner, inner_lost = held_sequence(
                item_element, key, key.level, codecs, fold_person_names
            )
            inner_match = inner.items if inner is not None else ()
            keys.append(ResponseKey(tag, "SQ", key.keyword, Source.SEQUENCE, items, inner_match))
            lost = lost or inner_lost
            if inner is not None:
                match.append(inner)
            continue
        if isinstance(item_element.value, tuple):  # a sequence not held
            keys.append(ResponseKey(tag, "SQ", None, Source.SEQUENCE))
            lost = lost or any(item for item in item_element.value)
            continue
        vr = key.vr if key is not None else key_vr(item_element)
        text = decode_key(item_element, vr, codecs)
        fold = fold_person_names and vr == "PN"
        terms = key_terms(vr, text, fold=fold, literal=False)
        if key is None:
            keys.append(ResponseKey(tag, vr, None, Source.EMPTY))
            lost = lost or terms is not None
            continue
        keys.append(ResponseKey(tag, vr, key.keyword, Source.TEXT))
        if terms is not None:
            kind = MatchKind.LIST if len(terms) > 1 else terms[0].kind
            match.append(Condition(tag, key.keyword, vr, key.level, kind, terms, fold))
    return tuple(keys), tuple(match), lost


def _as_sequence(element: Element) -> tuple[Element, bool]:
    """A held sequence key as items, and whether its value could not be read as
    items. One sent as UN of defined length is decoded (Implicit VR LE, PS3.5
    6.2.2); any other value is an empty sequence (universal), unreadable if not
    empty."""
    if isinstance(element.value, tuple):
        return element, False
    items = element_items(element)
    return Element(element.tag, "SQ", items or ()), items is None


def _all_item_keys(held: Mapping[int, KeyInfo]) -> list[ResponseKey]:
    keys = []
    for tag in sorted(held):
        key = held[tag]
        if key.items is not None:
            items = tuple(_all_item_keys(key.items))
            keys.append(ResponseKey(tag, "SQ", key.keyword, Source.SEQUENCE, items))
        else:
            keys.append(ResponseKey(tag, key.vr, key.keyword, Source.TEXT))
    return keys
