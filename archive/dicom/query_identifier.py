"""The C-FIND-RSP Identifier of one match, through the general data-set encoder.

What this is: :func:`response_identifier`, every case (any transfer syntax, any
character set, sequences); :mod:`archive.dicom.query_response` is the fast plan for
the common case and must give the same bytes. What it is not: matching (the index
selects the matches; a held sequence's items are filtered here with the reference
matcher, :func:`archive.dicom.query_match.item_matches`) nor I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

from archive.dicom.charset import SPECIFIC_CHARACTER_SET, TEXT_VRS
from archive.dicom.dataset import Element, encode_dataset
from archive.dicom.query import Query, ResponseKey, Source
from archive.dicom.query_match import item_matches, sequence_items
from archive.dicom.textcodec import encode_value, response_character_set
from archive.dicom.uids import EXPLICIT_VR_BE
from archive.dicom.wire import BE, LE

__all__ = ["ONLINE", "response_identifier"]

#: Instance Availability (0008,0056) of every match: all is on local disk, PS3.4
#: C.4.1.1.3.2.
ONLINE = b"ONLINE"

#: A value before encoding: text (its repertoire not yet known), bytes as they go
#: on the wire, or the items of a sequence (each its keys and values).
_Value: TypeAlias = "str | bytes | list[list[tuple[ResponseKey, _Value]]]"


def response_identifier(
    query: Query,
    record: Mapping[str, object],
    transfer_syntax: str,
    *,
    retrieve_ae: str = "",
) -> bytes:
    """The Identifier of the C-FIND-RSP (Pending) for one match, PS3.4 C.4.1.1.3.2.

    Every key of the request in tag order, valued from ``record`` (zero length when
    the index does not hold it), Query/Retrieve Level, the unique keys of the levels
    above, Retrieve AE Title (0008,0054) always (``retrieve_ae``), and
    Specific Character Set (0008,0005) when a value needs more than the default
    repertoire. A held sequence holds the items that match the key's item keys,
    each with the requested item keys only (C.2.2.2.6). Encoded in
    ``transfer_syntax``.
    """
    big_endian = transfer_syntax == EXPLICIT_VR_BE
    # First pass: values as str, to learn whether the default repertoire will do.
    wide: list[str] = []
    values: list[tuple[ResponseKey, _Value]] = []
    for key in query.response_keys:
        source = key.source
        value: _Value
        if source == Source.TEXT:
            value = _text(record.get(key.attribute or ""), key, wide)
        elif source == Source.INTEGER_STRING:
            number = record.get(key.attribute or "")
            value = str(number).encode("ascii") if isinstance(number, int) else b""
        elif source == Source.UNSIGNED_SHORT:
            number = record.get(key.attribute or "")
            packer = BE.us if big_endian else LE.us
            value = packer.pack(number) if isinstance(number, int) else b""
        elif source == Source.LEVEL:
            value = query.level.value.encode("ascii")
        elif source == Source.RETRIEVE_AE:
            value = retrieve_ae
        elif source == Source.AVAILABILITY:
            value = ONLINE
        elif source == Source.SEQUENCE:
            value = _items(key, record.get(key.attribute) if key.attribute else None, wide)
        else:
            value = b""
        values.append((key, value))
    terms: tuple[str, ...] = ()
    elements: list[Element] = []
    if wide:
        terms = response_character_set(wide, query.character_set)
        if terms:
            charset = "\\".join(terms).encode("ascii")
            elements.append(Element(SPECIFIC_CHARACTER_SET, "CS", charset))
    elements.extend(_element(key, value, terms) for key, value in values)
    return encode_dataset(elements, transfer_syntax)


def _text(value: object, key: ResponseKey, wide: list[str]) -> str:
    text = value if isinstance(value, str) else ""
    if key.vr in TEXT_VRS and not text.isascii():
        wide.append(text)
    return text


def _items(key: ResponseKey, stored: object, wide: list[str]) -> _Value:
    """The items of a sequence key's response: those that match, requested keys only."""
    items: list[list[tuple[ResponseKey, _Value]]] = []
    for item in sequence_items(stored):
        if not item_matches(key.match, item):
            continue
        values: list[tuple[ResponseKey, _Value]] = []
        for sub in key.items:
            if sub.source == Source.SEQUENCE:
                held = item.get(sub.attribute) if sub.attribute else None
                values.append((sub, _items(sub, held, wide)))
            elif sub.attribute:
                values.append((sub, _text(item.get(sub.attribute), sub, wide)))
            else:
                values.append((sub, b""))
        items.append(values)
    return items


def _element(key: ResponseKey, value: _Value, terms: Sequence[str]) -> Element:
    if isinstance(value, list):
        items = tuple(tuple(_element(k, v, terms) for k, v in item) for item in value)
        return Element(key.tag, "SQ", items)
    if isinstance(value, bytes):
        return Element(key.tag, key.vr, value)
    if value.isascii():
        data = value.encode("ascii")
    elif key.vr in TEXT_VRS:
        data = encode_value(value, key.vr, terms)
    else:
        # Default repertoire only (PS3.5 6.1.2.3); what a broken sender put there
        # cannot fail the whole response.
        data = value.encode("ascii", "replace")
    return Element(key.tag, key.vr, data)
