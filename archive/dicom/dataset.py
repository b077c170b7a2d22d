"""A small, pure data set codec for identifiers (C-FIND, C-MOVE, C-GET; PS3.4 C.4).

What this is: :func:`decode_dataset` turns the bytes of a whole, small data set into a
tree of :class:`Element` (raw value bytes, sequences as tuples of items), and
:func:`encode_dataset` turns such a tree back into bytes, in the four native transfer
syntaxes of PS3.5 Annex A (Implicit VR LE, Explicit VR LE and BE, Deflated Explicit VR
LE). What it is not: a value decoder (values stay the bytes on the wire; text goes
through :mod:`archive.dicom.charset` and :mod:`archive.dicom.textcodec`), a streaming
parser (see :mod:`archive.dicom.header` for C-STORE data sets), or a reader of pixel
data: encapsulated values never occur in identifiers.

Theory of operation. Decoding is one recursive walk over a memoryview with a cursor;
each sequence or item of defined length is walked within its end offset, one of
undefined length until its delimitation item (PS3.5 7.5). Every header read is
bounds-checked first, so hostile bytes end in :class:`DatasetError` and never in
``IndexError`` or ``struct.error``; the walk is bounded by :data:`MAX_ELEMENTS` and
:data:`MAX_DEPTH`, and inflating by :data:`MAX_INFLATED`. Encoding writes sequences
and items with undefined length, so no length has to be computed ahead.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import ClassVar, NamedTuple

from archive.dicom import uids
from archive.dicom.dictionary import vr_of
from archive.dicom.dimse.status import Status
from archive.dicom.errors import StatusError
from archive.dicom.wire import (
    DEFLATED,
    DELIMITER_GROUP,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    ITEM,
    ITEM_DELIMITATION,
    LE,
    LONG_VRS,
    SEQUENCE_DELIMITATION,
    SHORT_VR_BYTES,
    SHORT_VRS,
    STRUCTS,
    UNDEFINED_LENGTH,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_INFLATED",
    "SHORT_VRS",
    "SPACE_PADDED_VRS",
    "DatasetError",
    "Element",
    "decode_dataset",
    "decode_items",
    "element_items",
    "encode_dataset",
    "un_items",
]

#: Elements and items a decoded data set may hold, all levels together.
MAX_ELEMENTS = 10_000
#: Sequences that may nest inside one another.
MAX_DEPTH = 16
#: Bytes a Deflated data set may inflate to (a deflate bomb is refused, not inflated).
MAX_INFLATED = 16 * 1024 * 1024


class Element(NamedTuple):
    """One data element, PS3.5 7.1.

    ``value`` is the raw value as on the wire (padding kept, in the transfer syntax's
    byte order), or for ``SQ`` the items, each a tuple of elements. In Implicit VR the
    VR comes from the data dictionary: ``UN`` when unknown, ``SQ`` for an undefined
    length of an unknown tag; an explicit ``UN`` of undefined length is a sequence in
    Implicit VR LE (PS3.5 6.2.2) and is decoded as ``SQ``.
    """

    tag: int
    vr: str
    value: bytes | tuple[tuple[Element, ...], ...]


class DatasetError(StatusError):
    """The data set cannot be decoded or encoded; ``status`` is the DIMSE status to send.

    C000 Error: Unable to process / Cannot understand (PS3.4 C.4.1.1.4, C.4.2.1.5).
    """

    code: ClassVar[str] = "dicom.dataset"
    default_status: ClassVar[int] = Status.CANNOT_UNDERSTAND


_VR_BYTES = {vr: vr.encode() for vr in SHORT_VRS | LONG_VRS}
#: Odd values are padded with NUL in these VRs (PS3.5 6.2), with a space in the rest
#: of the text VRs, with NUL in the binary ones (whose values are never odd if valid).
SPACE_PADDED_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"}
)


def _mode(transfer_syntax: str) -> int:
    if transfer_syntax == uids.IMPLICIT_VR_LE:
        return IMPLICIT_LE
    if transfer_syntax == uids.EXPLICIT_VR_BE:
        return EXPLICIT_BE
    # Explicit VR LE, Deflated once inflated, and every encapsulated syntax: outside
    # Pixel Data those are Explicit VR LE (PS3.5 A.4).
    return EXPLICIT_LE


# ---- decoding ----------------------------------------------------------------------


def _inflate(data: bytes | memoryview) -> bytes:
    """Raw deflate (RFC 1951, PS3.5 A.5), refusing output beyond MAX_INFLATED."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, MAX_INFLATED + 1)
        if len(out) > MAX_INFLATED or inflater.unconsumed_tail:
            raise DatasetError(f"deflated data set inflates past {MAX_INFLATED} bytes")
        out += inflater.flush()
        if len(out) > MAX_INFLATED:
            raise DatasetError(f"deflated data set inflates past {MAX_INFLATED} bytes")
    except zlib.error as exc:
        raise DatasetError(f"deflated data set is not raw deflate: {exc}") from None
    if not inflater.eof:
        raise DatasetError("deflated data set is truncated")
    return out


class _Decoder:
    """One walk over one data set; holds the buffer, byte order and running count."""

    __slots__ = ("buf", "count", "end", "explicit", "structs")

    def __init__(self, buf: memoryview, mode: int) -> None:
        self.buf = buf
        self.end = len(buf)
        self.explicit = mode != IMPLICIT_LE
        self.structs = STRUCTS[mode]
        self.count = 0

    def elements(
        self, pos: int, end: int, depth: int, in_item: bool
    ) -> tuple[tuple[Element, ...], int]:
        """Elements from ``pos`` to ``end``, or to an item delimitation item if ``end < 0``.

        Returns them and the position after the last byte read.
        """
        buf = self.buf
        tag_length, tag_vr_length, long_length, _, _ = self.structs
        explicit = self.explicit
        out: list[Element] = []
        undefined = end < 0
        limit = self.end if undefined else end
        while pos < limit or undefined:
            if pos + 8 > limit:
                raise DatasetError(f"element header at offset {pos} runs past the end")
            group, element, length = tag_length.unpack_from(buf, pos)
            tag = group << 16 | element
            if group == DELIMITER_GROUP:
                if tag == ITEM_DELIMITATION and undefined and in_item:
                    if length != 0:
                        raise DatasetError(f"item delimitation item of length {length}")
                    return tuple(out), pos + 8
                raise DatasetError(f"unexpected ({group:04X},{element:04X}) at offset {pos}")
            self.count += 1
            if self.count > MAX_ELEMENTS:
                raise DatasetError(f"more than {MAX_ELEMENTS} elements")
            if explicit:
                _, _, vr_bytes, length = tag_vr_length.unpack_from(buf, pos)
                if vr_bytes in SHORT_VR_BYTES:
                    pos += 8
                else:
                    if not (vr_bytes.isalpha() and vr_bytes.isupper()):
                        raise DatasetError(f"no VR at offset {pos + 4}: {bytes(vr_bytes)!r}")
                    if pos + 12 > limit:
                        raise DatasetError(f"element header at offset {pos} runs past the end")
                    (length,) = long_length.unpack_from(buf, pos + 8)
                    pos += 12
                vr = vr_bytes.decode()
            else:
                vr = vr_of(tag)
                pos += 8
            if length == UNDEFINED_LENGTH:
                if vr == "SQ" or vr == "UN":
                    # An undefined-length UN is a sequence in Implicit VR LE, PS3.5 6.2.2.
                    implicit_un = explicit and vr == "UN"
                    items, pos = self.sequence(pos, -1, depth + 1, implicit_un)
                    value: bytes | tuple[tuple[Element, ...], ...] = items
                    vr = "SQ"
                else:
                    raise DatasetError(f"undefined length on {vr} ({group:04X},{element:04X})")
            else:
                stop = pos + length
                if stop > limit:
                    raise DatasetError(
                        f"({group:04X},{element:04X}) of length {length} runs past the end"
                    )
                if vr == "SQ":
                    value, pos = self.sequence(pos, stop, depth + 1, False)
                else:
                    value = bytes(buf[pos:stop])
                    pos = stop
            if element != 0:  # group lengths (gggg,0000) are dropped, PS3.5 7.2
                out.append(Element(tag, vr, value))
        if undefined:
            raise DatasetError("item without its item delimitation item")
        return tuple(out), pos

    def sequence(
        self, pos: int, end: int, depth: int, implicit_un: bool
    ) -> tuple[tuple[tuple[Element, ...], ...], int]:
        """Items of a sequence from ``pos`` to ``end``, or to its delimiter if ``end < 0``."""
        if depth > MAX_DEPTH:
            raise DatasetError(f"sequences nested deeper than {MAX_DEPTH}")
        if implicit_un and self.explicit:
            saved = self.explicit, self.structs
            self.explicit, self.structs = False, LE
            try:
                return self.sequence(pos, end, depth, False)
            finally:
                self.explicit, self.structs = saved
        tag_length = self.structs[0]
        buf = self.buf
        undefined = end < 0
        limit = self.end if undefined else end
        items: list[tuple[Element, ...]] = []
        while pos < limit or undefined:
            if pos + 8 > limit:
                raise DatasetError(f"item header at offset {pos} runs past the end")
            group, element, length = tag_length.unpack_from(buf, pos)
            tag = group << 16 | element
            pos += 8
            if tag == SEQUENCE_DELIMITATION and undefined:
                if length != 0:
                    raise DatasetError(f"sequence delimitation item of length {length}")
                return tuple(items), pos
            if tag != ITEM:
                raise DatasetError(f"({group:04X},{element:04X}) where an item belongs")
            self.count += 1
            if self.count > MAX_ELEMENTS:
                raise DatasetError(f"more than {MAX_ELEMENTS} elements")
            if length == UNDEFINED_LENGTH:
                item, pos = self.elements(pos, -1, depth, True)
            else:
                if pos + length > limit:
                    raise DatasetError(f"item of length {length} runs past the end")
                item, pos = self.elements(pos, pos + length, depth, False)
            items.append(item)
        if undefined:
            raise DatasetError("sequence without its sequence delimitation item")
        return tuple(items), pos


def decode_dataset(data: bytes | memoryview, transfer_syntax: str) -> tuple[Element, ...]:
    """Decode a whole data set, PS3.5 7.1 and 7.5, in the given transfer syntax.

    Elements come in the order found; group lengths are dropped. Raises
    :class:`DatasetError` for anything that is not a well-formed data set, for more
    than :data:`MAX_ELEMENTS` elements and items, sequences nested deeper than
    :data:`MAX_DEPTH`, or a Deflated data set inflating past :data:`MAX_INFLATED`.
    """
    if transfer_syntax in DEFLATED:
        data = _inflate(data)
    buf = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
    decoder = _Decoder(buf, _mode(transfer_syntax))
    elements, _ = decoder.elements(0, len(buf), 0, False)
    return elements


def decode_items(
    value: bytes | memoryview, mode: int, *, undefined: bool = False
) -> tuple[tuple[Element, ...], ...]:
    """The items of one sequence's value, PS3.5 7.5, each a tuple of elements.

    ``mode`` is the encoding of the items (``wire.IMPLICIT_LE``, ``EXPLICIT_LE``,
    ``EXPLICIT_BE``); ``undefined``: the value runs to its Sequence Delimitation
    Item, which it ends with. The limits of :func:`decode_dataset` apply. Raises
    :class:`DatasetError`.
    """
    buf = memoryview(value).cast("B")
    items, end = _Decoder(buf, mode).sequence(0, -1 if undefined else len(buf), 1, False)
    if end != len(buf):
        raise DatasetError(f"{len(buf) - end} bytes after the sequence delimitation item")
    return items


def un_items(value: bytes) -> tuple[tuple[Element, ...], ...] | None:
    """The items of a sequence sent as UN of defined length, or None if ``value``
    holds none. PS3.5 6.2.2: such a value is Implicit VR Little Endian, whatever
    the transfer syntax."""
    try:
        return decode_items(value, IMPLICIT_LE)
    except DatasetError:
        return None


def element_items(element: Element) -> tuple[tuple[Element, ...], ...] | None:
    """The items of a sequence element: its own, those of one sent as UN of defined
    length (:func:`un_items`), none for an empty value; None for any other value,
    which cannot be read as items."""
    value = element.value
    if isinstance(value, tuple):
        return value
    if not value:
        return ()
    return un_items(value) if element.vr == "UN" else None


# ---- encoding ----------------------------------------------------------------------


class _Encoder:
    """One data set to bytes: a list of parts joined at the end."""

    __slots__ = ("explicit", "item", "item_end", "out", "sequence_end", "structs")

    def __init__(self, mode: int) -> None:
        self.explicit = mode != IMPLICIT_LE
        self.structs = STRUCTS[mode]
        tag_length = self.structs[0]
        self.item = tag_length.pack(0xFFFE, 0xE000, UNDEFINED_LENGTH)
        self.item_end = tag_length.pack(0xFFFE, 0xE00D, 0)
        self.sequence_end = tag_length.pack(0xFFFE, 0xE0DD, 0)
        self.out: list[bytes] = []

    def elements(self, elements: Iterable[Element]) -> None:
        out = self.out
        tag_length, tag_vr_length, _, tag_vr_long_length, _ = self.structs
        explicit = self.explicit
        for tag, vr, value in sorted(elements, key=_by_tag):
            group, element = tag >> 16, tag & 0xFFFF
            if isinstance(value, tuple):
                if vr != "SQ":
                    raise DatasetError(f"({group:04X},{element:04X}) has items but VR {vr}")
                if explicit:
                    out.append(tag_vr_long_length.pack(group, element, b"SQ", UNDEFINED_LENGTH))
                else:
                    out.append(tag_length.pack(group, element, UNDEFINED_LENGTH))
                for item in value:
                    out.append(self.item)
                    self.elements(item)
                    out.append(self.item_end)
                out.append(self.sequence_end)
                continue
            length = len(value)
            if length & 1:
                value += b" " if vr in SPACE_PADDED_VRS else b"\0"
                length += 1
            if not explicit:
                if length >= UNDEFINED_LENGTH:
                    raise DatasetError(f"({group:04X},{element:04X}) is too long")
                out.append(tag_length.pack(group, element, length))
            elif vr in SHORT_VRS:
                if length > 0xFFFF:
                    raise DatasetError(f"({group:04X},{element:04X}) {vr} longer than 65534")
                out.append(tag_vr_length.pack(group, element, _VR_BYTES[vr], length))
            else:
                vr_bytes = _VR_BYTES.get(vr) or _valid_vr(tag, vr)
                if length >= UNDEFINED_LENGTH:
                    raise DatasetError(f"({group:04X},{element:04X}) is too long")
                out.append(tag_vr_long_length.pack(group, element, vr_bytes, length))
            out.append(value)


def _by_tag(element: Element) -> int:
    return element.tag


def _valid_vr(tag: int, vr: str) -> bytes:
    """A VR this module does not know, if it is at least two capital letters (PS3.5 6.2)."""
    if len(vr) != 2 or not (vr.isascii() and vr.isalpha() and vr.isupper()):
        raise DatasetError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) has no valid VR: {vr!r}")
    return vr.encode()


def encode_dataset(elements: Iterable[Element], transfer_syntax: str) -> bytes:
    """Encode a data set, PS3.5 7.1 and 7.5, in the given transfer syntax.

    Each level is written in ascending tag order (PS3.5 7.1); odd values are padded
    (PS3.5 6.2: NUL for UI and the binary VRs, a space for the other text VRs);
    sequences and items have undefined length. Values are written as given: for
    Explicit VR Big Endian the caller passes binary numbers (US, UL, FL, AT, OW, ...)
    already big endian; text is the same in either byte order. Raises
    :class:`DatasetError` for a value too long for its length field, an invalid VR, or
    items on an element whose VR is not ``SQ``.
    """
    encoder = _Encoder(_mode(transfer_syntax))
    encoder.elements(elements)
    data = b"".join(encoder.out)
    if transfer_syntax in DEFLATED:
        deflater = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        return deflater.compress(data) + deflater.flush()
    return data
