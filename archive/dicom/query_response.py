"""C-FIND-RSP identifiers, fast: one encoding plan per query, reused for every match.

:func:`archive.dicom.query_identifier.response_identifier` builds each identifier through the
general data-set encoder (Element objects, sorting, padding rules): about 24 µs for
ten keys, which is most of a broad query's time on the server. The keys and their
order are the same for every match of a query, so :func:`response_encoder` works
out once, per key, the element header and how to get the value; each match then
costs one pass over the keys and one ``bytes.join``.

The plan covers the common case: Implicit or Explicit VR Little Endian, values in
the default repertoire (ASCII), no sequence keys. Anything else (a name that needs
another character set, Big Endian, Deflated, a sequence key) goes through
:func:`response_identifier`, so both give the same bytes, which a test checks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# The general encoder's VR rules, so both give the same bytes.
from archive.dicom.dataset import SHORT_VRS, SPACE_PADDED_VRS
from archive.dicom.query import Query, ResponseKey, Source
from archive.dicom.query_identifier import ONLINE, response_identifier
from archive.dicom.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from archive.dicom.wire import LE

__all__ = ["fast_plan_covers", "response_encoder"]

_US = _LENGTH_16 = LE.us.pack  # a US value, and a 2-byte length field
_LENGTH_32 = LE.long_length.pack

#: One key of the plan: source, column of the value in the row (-1: none), constant
#: value, header prefix (tag, and VR when explicit), length packer, pad byte.
_Step = tuple[int, int, bytes, bytes, Callable[[int], bytes], bytes]
#: A step whose value is its constant (b"" for attributes the rows do not hold).
_CONSTANT = -1


def fast_plan_covers(query: Query, transfer_syntax: str, *, retrieve_ae: str = "") -> bool:
    """Whether :func:`response_encoder` answers ``query`` with the fast plan.

    When it does not, every match goes through :func:`response_identifier`. (Inside
    the plan a match whose text needs another character set still does.)
    """
    return _steps(query, transfer_syntax, retrieve_ae, ()) is not None


def response_encoder(
    query: Query,
    transfer_syntax: str,
    *,
    retrieve_ae: str = "",
    columns: Sequence[str] | None = None,
) -> Callable[[Any], bytes]:
    """A function giving the same bytes as ``response_identifier(query, record, ...)``.

    Without ``columns`` it takes a record (keyword -> value). With ``columns`` it
    takes a row, a sequence whose item ``i`` is the value of ``columns[i]`` (as
    the index reads them: no dict is built per match).
    """

    def general(record: Mapping[str, object]) -> bytes:
        return response_identifier(query, record, transfer_syntax, retrieve_ae=retrieve_ae)

    # A record is read as a row of the attributes the responses use.
    names = (
        columns
        if columns is not None
        else sorted({k.attribute for k in query.response_keys if k.attribute})
    )

    def general_row(row: Sequence[object]) -> bytes:
        return general(dict(zip(names, row, strict=True)))

    steps = _steps(query, transfer_syntax, retrieve_ae, names)
    if steps is None:
        return general if columns is None else general_row

    # Plain ints: comparing with an IntEnum member costs ten times more, per key
    # per match.
    is_text, integer_string, unsigned_short = (
        int(Source.TEXT),
        int(Source.INTEGER_STRING),
        int(Source.UNSIGNED_SHORT),
    )

    def fast_row(row: Sequence[object]) -> bytes:
        out: list[bytes] = []
        for source, column, constant, prefix, length, pad in steps:
            if source == is_text:
                text = row[column]
                if not isinstance(text, str):
                    value = b""
                elif text.isascii():
                    value = text.encode("ascii")
                else:
                    return general_row(row)  # another character set: the general path
            elif source == integer_string:
                number = row[column]
                value = str(number).encode("ascii") if isinstance(number, int) else b""
            elif source == unsigned_short:
                number = row[column]
                value = _US(number) if isinstance(number, int) else b""
            else:
                value = constant
            if len(value) & 1:
                value += pad
            out += (prefix, length(len(value)), value)
        return b"".join(out)

    if columns is not None:
        return fast_row

    def fast(record: Mapping[str, object]) -> bytes:
        return fast_row([record.get(a) for a in names])

    return fast


def _steps(
    query: Query, transfer_syntax: str, retrieve_ae: str, columns: Sequence[str]
) -> list[_Step] | None:
    """The plan: one step per response key, or None when the query is outside it."""
    explicit = transfer_syntax == EXPLICIT_VR_LE
    if not (explicit or transfer_syntax == IMPLICIT_VR_LE) or not retrieve_ae.isascii():
        return None
    position = {name: n for n, name in enumerate(columns)}
    steps: list[_Step] = []
    for key in query.response_keys:  # in tag order already, as the encoding needs
        if key.source == Source.SEQUENCE:
            return None
        source, column = int(key.source), position.get(key.attribute or "", -1)
        constant = b""
        if key.source == Source.LEVEL:
            constant = query.level.value.encode("ascii")
        elif key.source == Source.RETRIEVE_AE:
            constant = retrieve_ae.encode("ascii")
        elif key.source == Source.AVAILABILITY:
            constant = ONLINE
        elif column < 0:
            source = _CONSTANT  # a value the rows do not carry: zero length
        pad = b" " if key.vr in SPACE_PADDED_VRS else b"\0"
        steps.append((source, column, constant, *_header(key, explicit), pad))
    return steps


def _header(key: ResponseKey, explicit: bool) -> tuple[bytes, Callable[[int], bytes]]:
    """The element header as a fixed prefix and the packer of its length field."""
    tag = struct.pack("<HH", key.tag >> 16, key.tag & 0xFFFF)
    if not explicit:
        return tag, _LENGTH_32
    vr = key.vr.encode("ascii")
    if key.vr in SHORT_VRS:
        return tag + vr, _LENGTH_16
    return tag + vr + b"\0\0", _LENGTH_32
