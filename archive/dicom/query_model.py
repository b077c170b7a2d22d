"""The parsed form of a Q/R Identifier: matching kinds, terms, conditions, keys.

What this is: the data :func:`archive.dicom.query.parse_identifier` builds and the
matcher (:mod:`archive.dicom.query_match`), the SQL (:mod:`archive.index.query`)
and the responses (:mod:`archive.dicom.query_identifier`) read, and the error a
bad Identifier raises. What it is not: parsing (``query.py``, ``query_terms.py``).
``archive.dicom.query`` re-exports all of it.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import msgspec

from archive.dicom.dimse.status import Status
from archive.dicom.errors import StatusError
from archive.dicom.query_keys import Level

__all__ = [
    "DATE_TIME_VRS",
    "INTEGER_VRS",
    "WILDCARD_VRS",
    "Condition",
    "MatchKind",
    "Query",
    "QueryError",
    "ResponseKey",
    "ReturnKey",
    "Source",
    "Term",
]

#: VRs for which "*" and "?" are wild cards, PS3.4 C.2.2.2.4.
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
INTEGER_VRS = frozenset({"IS", "US", "SS", "UL", "SL", "UV", "SV"})
#: The VRs matched by meaning, as inclusive bounds (see ``query.py``).
DATE_TIME_VRS = frozenset({"DA", "TM"})


class QueryError(StatusError):
    """The Identifier cannot be processed; ``status`` goes in the C-FIND/MOVE/GET-RSP.

    0xA900 Identifier does not match SOP Class, or 0xC000 Unable to process (PS3.4
    Tables C.4-1, C.4-2, C.4-3). The message is meant for the Error Comment
    (0000,0902), at most 64 characters of the default repertoire.
    """

    code: ClassVar[str] = "dicom.query"
    default_status: ClassVar[int] = Status.DATASET_DOES_NOT_MATCH_SOP_CLASS

    def __init__(self, message: str, status: int | None = None, *, offending: int | None = None):
        super().__init__(message, status)
        #: The key at fault, for the Offending Element (0000,0901) of the response
        #: (PS3.4 Tables C.4-1 to C.4-3 list it with A900 and C000).
        self.offending = offending

    def name_key(self, tag: int) -> None:
        """Name ``tag`` as the key at fault, unless one was named where this was raised."""
        if self.offending is None:
            self.offending = tag


class MatchKind(enum.StrEnum):
    """Kinds of Attribute Matching, PS3.4 C.2.2.2."""

    SINGLE = "single"  # C.2.2.2.1
    LIST = "list"  # C.2.2.2.2 (several alternatives)
    WILDCARD = "wildcard"  # C.2.2.2.4
    RANGE = "range"  # C.2.2.2.5
    SEQUENCE = "sequence"  # C.2.2.2.6: ``Condition.items`` must match one item


class Term(msgspec.Struct, frozen=True):
    """One alternative of a matching key.

    SINGLE: ``value`` (casefolded when the key folds; an integer's decimal form for
    IS/US). WILDCARD: ``value`` is the pattern. DA/TM keys, single or RANGE, carry
    the inclusive bounds ``low`` and ``high`` instead ('' = open end).
    """

    kind: MatchKind
    value: str = ""
    low: str = ""
    high: str = ""


class Condition(msgspec.Struct, frozen=True):
    """A non-universal key the index matches on: one of ``terms`` must match."""

    tag: int
    keyword: str
    vr: str
    level: Level
    kind: MatchKind
    terms: tuple[Term, ...]
    #: PN compared case-insensitively (str.casefold on both sides).
    fold: bool = False
    #: The record value is a '\\'-joined multi-value; any value may match.
    multi_valued: bool = False
    #: A Required Key: an entity whose value is zero length (unknown) matches,
    #: PS3.4 C.2.2.1.2.
    unknown_matches: bool = False
    #: Combined date-time matching (negotiated, PS3.4 C.2.2.2.5): ``keyword`` is a
    #: DA key, this its TM partner, and the one term's bounds are date + time
    #: (``query._combine_date_time``). ``vr`` is then "DT".
    time_keyword: str = ""
    #: With ``time_keyword``: an entity whose time is unknown is matched on its
    #: date alone (the time is a Required Key too), else it does not match.
    time_unknown_matches: bool = False
    #: SEQUENCE: the item keys one item must match, all of them (``keyword`` is
    #: then the item keyword, the value found in the item).
    items: tuple[Condition, ...] = ()


class ReturnKey(msgspec.Struct, frozen=True):
    """An element of the request Identifier, in request order."""

    tag: int
    vr: str
    #: The record keyword (index attribute) that answers it, or None (not held at
    #: this level: returned with zero length, PS3.4 C.4.1.1.3.2 note 2).
    attribute: str | None
    #: A held sequence: what each item of the response holds, and the conditions
    #: an item must meet to be returned (C.2.2.2.6).
    items: tuple[ResponseKey, ...] = ()
    match: tuple[Condition, ...] = ()


class Source(enum.IntEnum):
    """Where the value of a :class:`ResponseKey` comes from, for every match."""

    EMPTY = 0
    TEXT = 1
    INTEGER_STRING = 2
    UNSIGNED_SHORT = 3
    LEVEL = 4
    RETRIEVE_AE = 5
    AVAILABILITY = 6
    SEQUENCE = 7


class ResponseKey(msgspec.Struct, frozen=True, array_like=True):
    """One element of every C-FIND-RSP Identifier of the query, in tag order."""

    tag: int
    vr: str
    attribute: str | None
    source: int
    #: A held sequence (``attribute`` not None): the item keys of every item, tag
    #: order, and the conditions an item must meet to be returned.
    items: tuple[ResponseKey, ...] = ()
    match: tuple[Condition, ...] = ()


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed Q/R Identifier (see :func:`parse_identifier`).

    The information model, purpose and options it was parsed with are not kept:
    they shaped the keys (each :class:`Condition` carries its own ``fold``), and
    matching and the responses need nothing more.
    """

    level: Level
    conditions: tuple[Condition, ...] = ()
    return_keys: tuple[ReturnKey, ...] = ()
    #: The values of Specific Character Set (0008,0005) of the request, stripped.
    character_set: tuple[str, ...] = ()
    #: Tags of non-universal keys that were not matched (not held, computed,
    #: sequence items not held): C-FIND Pending FF01.
    unsupported: tuple[int, ...] = ()
    #: What every response holds, tag order (built once here, used per match).
    response_keys: tuple[ResponseKey, ...] = ()
