"""The items of a sequence the index holds, as the header reader keeps them.

What this is: :func:`sequence_json`, the value bytes of one top-level sequence
(gathered by :class:`archive.dicom.header.HeaderReader`) decoded into the JSON text
the index stores: a list of items, each an object of the item keys kept
(:data:`archive.dicom.query_keys.SEQUENCE_KEYS`; keyword -> text decoded with the
Specific Character Set in force, or a list of items for a nested sequence), empty
values left out. The character set in force is the data set's, or the item's own
(0008,0005) for that item and the items nested in it (PS3.5 7.5.3, PS3.3
C.12.1.1.2). What it is not: I/O, nor streaming (the bytes are whole).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from archive.dicom.charset import character_set_terms, decode_value, python_codecs
from archive.dicom.dataset import DatasetError, Element, decode_items, element_items
from archive.dicom.query_keys import SEQUENCE_KEYS, KeyInfo

__all__ = ["sequence_json"]


def sequence_json(
    tag: int, items_mode: int, undefined: bool, raw: bytes, codecs: Sequence[str]
) -> str:
    """The items of a wanted sequence as the index keeps them (module docstring).

    ``raw`` is the value as received (with its Sequence Delimitation Item when
    ``undefined``: of undefined length), ``items_mode`` the encoding of its items.
    "" when it holds no item or does not decode.
    """
    try:
        decoded = decode_items(raw, items_mode, undefined=undefined)
    except DatasetError:
        return ""
    items = _items(decoded, SEQUENCE_KEYS[tag], codecs)
    return msgspec.json.encode(items).decode() if items else ""


_Item = dict[str, "str | list[_Item]"]


def _items(
    items: tuple[tuple[Element, ...], ...], info: KeyInfo, codecs: Sequence[str]
) -> list[_Item]:
    keys: Mapping[int, KeyInfo] = info.items or {}
    out: list[_Item] = []
    for item in items:
        kept: _Item = {}
        codecs_in_item = _item_codecs(item, codecs)
        for element in sorted(item, key=lambda e: e.tag):
            key = keys.get(element.tag)
            if key is None:
                continue
            if key.items is not None:
                # Any value where items belong but a UN sequence is not kept.
                nested = _items(element_items(element) or (), key, codecs_in_item)
                if nested:
                    kept[key.keyword] = nested
                continue
            if isinstance(element.value, tuple):
                continue  # items where a value belongs: not kept
            text = _item_text(bytes(element.value), key.vr, codecs_in_item)
            if text:
                kept[key.keyword] = text
        out.append(kept)
    return out if any(out) else []


def _item_codecs(item: tuple[Element, ...], codecs: Sequence[str]) -> Sequence[str]:
    """The codecs of the item's own Specific Character Set, else ``codecs`` (those
    of the enclosing item or data set), PS3.5 7.5.3."""
    terms = character_set_terms(item)
    return codecs if terms is None else python_codecs(terms)


def _item_text(raw: bytes, vr: str, codecs: Sequence[str]) -> str:
    # A PN drops the spaces around each component (decode_person_name); the
    # other VRs lose both ends, once decoded too (a space after an escape
    # sequence is a leading space).
    text = decode_value(raw.strip(b" \0"), vr, codecs)
    return text if vr == "PN" else text.strip(" ")
