"""The DICOM data dictionary (PS3.6 Table 6-1): tag <-> keyword, and each tag's VR.

What this is: four look-ups (:func:`tag_for_keyword`, :func:`keyword_for_tag`,
:func:`vr_of`, :func:`parse_tag`) over the two text tables of
:mod:`archive.dicom._dictionary_data`, parsed into dicts the first time one is
called, so importing the module costs next to nothing. What it is not: a full
dictionary. It keeps no VM, no names, no retired flag; of alternative VRs
(``US or SS``, ``OB or OW``) only the first; the item and delimitation tags
(FFFE,E000/E00D/E0DD) have no VR and are listed with ``UN``.

The tables are generated from pydicom's data dictionary by tools/gen_dictionary.py
(pydicom is not imported at run time); this module, the code over them, is written by
hand. A table line is ``ggggeeee VR Keyword``, ``-`` for a retired entry without a
keyword.

Repeating groups (PS3.5 7.6) are matched by mask: an ``x`` in a table entry stands
for any hex digit, so (6002,3000) is OverlayData. For the 50xx/60xx/7Fxx groups only
the even groups up to xx = 1E match (odd groups are private). Looking up a repeating
keyword gives its first instance (6000,3000 for OverlayData) that is neither a
group length (1010xxxx ZonalMap: 1010,0001) nor a tag of its own (002804x0
RowsForNthOrderCoefficients: 0028,0410, since 0028,0400 is TransformLabel).
"""

from __future__ import annotations

import re
from functools import cache

from archive.dicom._dictionary_data import REPEATERS, TABLE

__all__ = ["keyword_for_tag", "parse_tag", "tag_for_keyword", "vr_of"]

_UNKNOWN = "UN"
_GROUP_LENGTH = "UL"
_TAG_TEXT = re.compile(r"\(?\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)?|([0-9A-Fa-f]{8})")
_KEYWORD_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9]*")

# (mask, value, VR, keyword, groups repeat): tag & mask == value matches.
_Repeater = tuple[int, int, str, str, bool]


@cache
def _tables() -> tuple[dict[int, tuple[str, str]], dict[str, int]]:
    """tag -> (VR, keyword) and keyword -> tag, built on first use."""
    by_tag: dict[int, tuple[str, str]] = {}
    by_keyword: dict[str, int] = {}
    for line in TABLE.splitlines():
        tag_text, vr, keyword = line.split(" ")
        tag = int(tag_text, 16)
        by_tag[tag] = (vr, keyword)
        if keyword != "-":
            by_keyword[keyword] = tag
    for mask, value, _vr, keyword, groups in _repeaters():
        by_keyword[keyword] = _first_instance(mask, value, groups, by_tag)
    return by_tag, by_keyword


@cache
def _repeaters() -> tuple[_Repeater, ...]:
    rows = []
    for line in REPEATERS.splitlines():
        pattern, vr, keyword = line.split(" ")
        mask = int("".join("0" if c == "x" else "F" for c in pattern), 16)
        value = int(pattern.replace("x", "0"), 16)
        rows.append((mask, value, vr, keyword, "x" in pattern[:4]))
    return tuple(rows)


def _first_instance(mask: int, value: int, groups: bool, by_tag: dict[int, tuple[str, str]]) -> int:
    """The lowest tag a repeating entry matches that no other look-up claims first."""
    free = [bit for bit in range(32) if not mask >> bit & 1]
    for n in range(1 << len(free)):
        tag = value
        for i, bit in enumerate(free):
            tag |= (n >> i & 1) << bit
        if tag & 0xFFFF and tag not in by_tag and not (groups and tag >> 16 & 1):
            return tag
    return value  # not reached: every entry has a free instance


def _lookup(tag: int) -> tuple[str, str] | None:
    by_tag, _ = _tables()
    entry = by_tag.get(tag)
    if entry is not None:
        return entry
    for mask, value, vr, keyword, groups in _repeaters():
        # PS3.5 7.6: the repeating groups are the even ones from xx00 to xx1E.
        if tag & mask == value and not (groups and (tag >> 16) & 0xFF > 0x1E):
            return vr, keyword
    return None


def _is_private(tag: int) -> bool:
    return bool(tag >> 16 & 1)


def tag_for_keyword(keyword: str) -> int | None:
    """The tag of a PS3.6 keyword (``"PatientID"`` -> 0x00100020), or None."""
    return _tables()[1].get(keyword)


def keyword_for_tag(tag: int) -> str | None:
    """The PS3.6 keyword of a tag, or None for private, unknown and keyword-less tags."""
    if _is_private(tag):
        return None
    entry = _lookup(tag)
    if entry is None or entry[1] == "-":
        return None
    return entry[1]


def vr_of(tag: int) -> str:
    """The VR of a tag for Implicit VR decoding (PS3.5 7.1.3).

    ``UL`` for group length elements (gggg,0000; PS3.5 7.2), ``UN`` for private and
    unknown tags, the first VR of entries that have several.
    """
    if tag & 0xFFFF == 0:
        return _GROUP_LENGTH
    if _is_private(tag):
        return _UNKNOWN
    entry = _lookup(tag)
    return _UNKNOWN if entry is None else entry[0]


def parse_tag(text: str) -> int | None:
    """A tag from ``"0010,0020"``, ``"(0010,0020)"``, ``"00100020"`` or a keyword; else None."""
    text = text.strip()
    match = _TAG_TEXT.fullmatch(text)
    if match is not None:
        group, element, whole = match.groups()
        return int(whole, 16) if whole else int(group, 16) << 16 | int(element, 16)
    if _KEYWORD_TEXT.fullmatch(text):
        return tag_for_keyword(text)
    return None
