"""Native data sets in another native encoding, streaming, no I/O.

What this is: :class:`ToImplicit`, fed a data set encoded in Explicit VR Little
Endian fragment by fragment (cut anywhere), giving back the same data set in
Implicit VR Little Endian, the transfer syntax every DICOM application entity
must accept (PS3.5 10.1); and :class:`ToLittleEndian`, Explicit VR Big Endian
(retired, but in old archives) to Explicit VR Little Endian. They are what lets
``archive store`` and the node's C-MOVE and C-GET send an instance to a peer
that accepts neither its stored syntax nor anything but these, as DCMTK's
storescu does, without reading the file whole. What they are not: transcoding.
Pixel Data is never decoded: its bytes pass as they are, or swapped as 16-bit
words when it is OW in Big Endian, as every other number is.

Theory of operation (PS3.5 7.1 and 7.5). An Explicit VR element header is 8 bytes
(tag, VR, 2-byte length) or 12 (tag, VR, 2 reserved bytes, 4-byte length); an
Implicit VR one is 8 (tag, 4-byte length). Values keep their length, so a plain
element is a new header and its value copied as it came. What does not keep its
length is a container: a sequence or item of defined length holds headers that
shrink by 4 bytes each (the 12-byte ones). Rather than buffer a sequence to
measure it again, every sequence and item of defined length goes out with
undefined length, closed by its delimitation item once the source reaches the
end its length gave: the same data set, PS3.5 7.5.1 and 7.5.2 allow both. One
consequence is dropped on purpose: Group Length elements (gggg,0000), retired in
data sets (PS3.5 7.2), and Length to End (0008,0001), whose values count bytes
that change; left in, they would be wrong. A UN of undefined length holds an
Implicit VR Little Endian sequence already (PS3.5 6.2.2), copied as it is.
From Big Endian to Little Endian no header changes its size, so the structure
stays as it is, and only the numbers swap: those of the headers, and the values
of the VRs that are numbers (PS3.5 7.3).

State between fragments: ``_head`` (a header cut by a fragment's end, at most 12
bytes), ``_copy``/``_drop`` (value bytes still to pass or skip, however large),
``_pos`` (source offset) and ``_open`` (the sequences and items we are inside,
each with the source offset it ends at, or -1 until its delimiter; and whether
its content is Implicit VR already), and for a swapped value the start of a
number a fragment cut. Memory is a header, the output of one fragment and at
most :data:`MAX_OPEN` open containers; work is bounded per element header, at
least 8 source bytes each.

Byte for byte, the output is what DCMTK's ``dcmconv`` writes (``+ti -e -g``;
``+te`` from Big Endian) for every native file pydicom ships, but where dcmconv
changes more: it pads an odd-length value (kept odd here: values pass as they
are), keeps Length to End, re-encodes the content of a UN of undefined length
(copied here), and with ``+te`` gives every sequence and item a defined length
and such a UN the VR SQ (lengths and VRs are kept here).

A data set this cannot follow (no VR where one must be, an undefined length on
a value that is no sequence, an item outside a sequence, a value running past
its container, a data set cut short) raises :class:`ReencodeError`, at the
fragment where it is seen: what went out before is the caller's to abort.
"""

from __future__ import annotations

from array import array

from archive.dicom.wire import (
    BE,
    DELIMITER_GROUP,
    ITEM,
    ITEM_DELIMITATION,
    LE,
    SEQUENCE_DELIMITATION,
    SHORT_VR_BYTES,
    UNDEFINED_LENGTH,
    HeaderStructs,
)
from archive.errors import ArchiveError

__all__ = ["MAX_OPEN", "ReencodeError", "ToImplicit", "ToLittleEndian"]

# The output's header layouts (wire.py): Little Endian, whatever the source.
_TAG_LENGTH, _SHORT, _LONG = LE.tag_length, LE.tag_vr_length, LE.tag_vr_long_length

_ITEM_END = _TAG_LENGTH.pack(0xFFFE, 0xE00D, 0)
_SEQUENCE_END = _TAG_LENGTH.pack(0xFFFE, 0xE0DD, 0)
#: Sequences and items one may be inside at once: real data sets nest a few
#: levels (an SR content tree some tens); a deeper one is refused, so memory
#: stays bounded whatever the input.
MAX_OPEN = 256
#: Length to End (0008,0001), retired: like a group length, it counts bytes.
_LENGTH_TO_END = 0x00080001
#: Bytes per number of the VRs whose values change with the byte order (PS3.5
#: 7.3); AT is two 16-bit numbers. Strings, OB and UN do not change.
_SWAPPED = {b"US": 2, b"SS": 2, b"OW": 2, b"AT": 2, b"UL": 4, b"SL": 4, b"FL": 4, b"OF": 4}
_SWAPPED |= {b"OL": 4, b"FD": 8, b"OD": 8, b"SV": 8, b"UV": 8, b"OV": 8}
_ARRAY_CODES = {size: next(c for c in "HILQ" if array(c).itemsize == size) for size in (2, 4, 8)}


class ReencodeError(ArchiveError):
    """The data set cannot be followed in the encoding it is said to have."""

    code = "dicom.reencode"


class _Open:
    """A sequence or item being passed through."""

    __slots__ = ("end", "implicit", "item")

    def __init__(self, item: bool, end: int, implicit: bool) -> None:
        self.item = item  # an item (else a sequence)
        self.end = end  # source offset just past it; -1: ends at its delimiter
        self.implicit = implicit  # its content is Implicit VR LE already (in a UN)


class _Walk:
    """The element walk both conversions share (module docstring); a subclass
    says what each header becomes and how values pass."""

    #: The source's header layouts (its byte order), and its name for errors.
    _SOURCE_ORDER: HeaderStructs = LE
    _SOURCE = "Explicit VR Little Endian"

    def __init__(self) -> None:
        self._head = b""
        self._copy = 0
        self._drop = 0
        self._pos = 0
        self._open: list[_Open] = []
        self._out: list[bytes | memoryview] = []
        self._unit = 1  # bytes per number of the value being passed on (swapped if > 1)
        self._carry = b""  # the start of such a number cut by a fragment's end
        self.dropped = 0  # elements left out (group lengths, Length to End)

    def feed(self, fragment: bytes | memoryview) -> bytes:
        """The next fragment of the source; what of the output it completes."""
        view = memoryview(fragment).cast("B")
        at, size = 0, len(view)
        while True:
            if self._copy:
                take = min(self._copy, size - at)
                self._value(view[at : at + take])
                at += take
                self._pos += take
                self._copy -= take
                if self._copy:
                    break
            if self._drop:
                take = min(self._drop, size - at)
                at += take
                self._pos += take
                self._drop -= take
                if self._drop:
                    break
            self._close_ended()
            if at == size:
                break
            at = self._header(view, at)
            if at < 0:
                break  # a header cut by the fragment's end: kept in _head
        return self._take()

    def close(self) -> bytes:
        """The source ended: the output's last bytes. Raises if it was cut short."""
        if self._head or self._copy or self._drop or self._carry:
            raise ReencodeError(f"the data set is cut short (at byte {self._pos})")
        self._close_ended()
        if self._open:
            what = "an item" if self._open[-1].item else "a sequence"
            raise ReencodeError(f"the data set ends inside {what} of undefined length")
        return self._take()

    # ---- what a subclass says ----------------------------------------------------------

    def _value(self, piece: memoryview) -> None:
        """Pass ``piece`` of the current value on."""
        self._out.append(piece)

    def _ended(self, done: _Open) -> None:
        """The source reached the end of ``done``, of defined length."""

    def _container(self, tag: int, vr: bytes, length: int) -> None:
        """The header of a sequence (``vr``: SQ, or UN of undefined length) or an
        item (``vr`` empty) the walk goes into."""
        raise NotImplementedError

    def _element(self, tag: int, vr: bytes, length: int, long_form: bool, start: int) -> None:
        """A top-level or item element that is no sequence, in the source's encoding."""
        raise NotImplementedError

    # ---- the walk -----------------------------------------------------------------------

    def _take(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    def _close_ended(self) -> None:
        while self._open and self._open[-1].end == self._pos:
            self._ended(self._open.pop())

    def _header(self, view: memoryview, at: int) -> int:
        """Read and pass on the header at ``view[at:]``; the offset after it, or -1."""
        have = len(self._head)
        head = self._head + bytes(view[at : at + 12 - have])
        if len(head) < 6:
            return self._keep(head)
        top = self._open[-1] if self._open else None
        in_un = top is not None and top.implicit
        order = LE if in_un else self._SOURCE_ORDER
        tags = order.tag_length
        group, element = tags.unpack_from(head.ljust(8, b"\0"))[:2]
        implicit = in_un or group == DELIMITER_GROUP
        if implicit or head[4:6] in SHORT_VR_BYTES:
            size = 8
        elif head[4:6].isalpha() and head[4:6].isupper():
            size = 12  # every other VR, known or not (PS3.5 7.1.2)
        else:
            raise ReencodeError(
                f"no VR in the element header at byte {self._pos}: not {self._SOURCE}"
            )
        if len(head) < size:
            return self._keep(head)
        head = head[:size]
        self._head = b""
        self._unit = 1  # values pass as they are unless _element says otherwise
        start = self._pos
        self._pos += size
        if size == 12:
            vr, length = order.tag_vr_long_length.unpack(head)[2:]
        elif implicit:
            vr, length = b"", tags.unpack(head)[2]
        else:
            vr, length = order.tag_vr_length.unpack(head)[2:]
        self._walk(group << 16 | element, vr, length, size == 12, start, top)
        return at + size - have

    def _enter(self, container: _Open) -> None:
        if len(self._open) >= MAX_OPEN:
            raise ReencodeError(
                f"sequences and items nested more than {MAX_OPEN} deep at byte {self._pos}"
            )
        self._open.append(container)

    def _keep(self, head: bytes) -> int:
        self._head = head  # all the fragment had left; _pos stays at its start
        return -1

    def _walk(
        self, tag: int, vr: bytes, length: int, long_form: bool, start: int, top: _Open | None
    ) -> None:
        defined = length != UNDEFINED_LENGTH
        if top is not None and top.end >= 0 and self._pos + (length if defined else 0) > top.end:
            raise ReencodeError(f"the element at byte {start} runs past its container")
        if tag >> 16 == DELIMITER_GROUP:
            self._delimiter(tag, length, start, top)
            return
        if top is not None and not top.item:
            raise ReencodeError(f"an element that is no item at byte {start}, in a sequence")
        if top is not None and top.implicit:
            # Inside a UN of undefined length: Implicit VR LE already, copied.
            self._out.append(_TAG_LENGTH.pack(tag >> 16, tag & 0xFFFF, length))
            if defined:
                self._copy = length
            else:
                self._enter(_Open(item=False, end=-1, implicit=True))
            return
        if vr == b"SQ" or (vr == b"UN" and not defined):
            self._container(tag, vr, length)
            end = self._pos + length if defined else -1
            self._enter(_Open(item=False, end=end, implicit=vr == b"UN"))
            return
        self._element(tag, vr, length, long_form, start)

    def _delimiter(self, tag: int, length: int, start: int, top: _Open | None) -> None:
        defined = length != UNDEFINED_LENGTH
        if tag == ITEM:
            if top is None or top.item:
                raise ReencodeError(f"an item outside a sequence at byte {start}")
            if top.implicit and defined:
                self._out.append(_TAG_LENGTH.pack(0xFFFE, 0xE000, length))
                self._copy = length  # Implicit VR LE already
                return
            self._container(ITEM, b"", length)
            end = self._pos + length if defined else -1
            self._enter(_Open(item=True, end=end, implicit=top.implicit))
            return
        if tag == ITEM_DELIMITATION and top is not None and top.item and top.end < 0:
            self._open.pop()
            self._out.append(_ITEM_END)
            return
        if tag == SEQUENCE_DELIMITATION and top is not None and not top.item and top.end < 0:
            self._open.pop()
            self._out.append(_SEQUENCE_END)
            return
        if tag == SEQUENCE_DELIMITATION and top is None and length == 0:
            return  # a stray delimiter at the top level (some writers leave one): left out
        raise ReencodeError(
            f"unexpected delimiter ({tag >> 16:04X},{tag & 0xFFFF:04X}) at byte {start}"
        )


class ToImplicit(_Walk):
    """One data set, Explicit VR LE in, Implicit VR LE out: :meth:`feed`, then :meth:`close`."""

    def _ended(self, done: _Open) -> None:
        self._out.append(_ITEM_END if done.item else _SEQUENCE_END)

    def _container(self, tag: int, vr: bytes, length: int) -> None:
        # Undefined length whatever the source's: its headers may shrink.
        self._out.append(_TAG_LENGTH.pack(tag >> 16, tag & 0xFFFF, UNDEFINED_LENGTH))

    def _element(self, tag: int, vr: bytes, length: int, long_form: bool, start: int) -> None:
        if length == UNDEFINED_LENGTH:
            raise ReencodeError(
                f"undefined length on a {vr.decode('ascii')} value at byte {start}"
                " (encapsulated Pixel Data has no Implicit VR form)"
            )
        if (tag & 0xFFFF == 0 and tag >> 16 > 2) or tag == _LENGTH_TO_END:
            self._drop = length
            self.dropped += 1
            return
        self._out.append(_TAG_LENGTH.pack(tag >> 16, tag & 0xFFFF, length))
        self._copy = length


class ToLittleEndian(_Walk):
    """One data set, Explicit VR Big Endian in (PS3.5 A.3, retired), Explicit VR
    Little Endian out: every header's numbers and every numeric value swapped by
    its VR (:data:`_SWAPPED`); lengths, and so the structure, unchanged. A UN's
    value cannot be swapped (its VR is unknown) and goes as it is, as DCMTK
    leaves it."""

    _SOURCE_ORDER = BE
    _SOURCE = "Explicit VR Big Endian"

    def _value(self, piece: memoryview) -> None:
        if self._unit == 1:
            self._out.append(piece)
            return
        data = self._carry + bytes(piece) if self._carry else piece
        whole = len(data) - len(data) % self._unit
        numbers = array(_ARRAY_CODES[self._unit])
        numbers.frombytes(
            data[:whole]
        )  # not array(code, view): that takes a view's bytes as numbers
        numbers.byteswap()
        self._out.append(numbers.tobytes())
        self._carry = bytes(data[whole:])

    def _container(self, tag: int, vr: bytes, length: int) -> None:
        if vr:
            self._out.append(_LONG.pack(tag >> 16, tag & 0xFFFF, vr, length))
        else:
            self._out.append(_TAG_LENGTH.pack(tag >> 16, tag & 0xFFFF, length))

    def _element(self, tag: int, vr: bytes, length: int, long_form: bool, start: int) -> None:
        if length == UNDEFINED_LENGTH:
            raise ReencodeError(f"undefined length on a {vr.decode('ascii')} value at byte {start}")
        self._unit = _SWAPPED.get(vr, 1)
        if length % self._unit:
            raise ReencodeError(
                f"a {vr.decode('ascii')} value of {length} bytes at byte {start}:"
                f" not a whole number of {self._unit}-byte numbers"
            )
        header = _LONG if long_form else _SHORT
        self._out.append(header.pack(tag >> 16, tag & 0xFFFF, vr, length))
        self._copy = length
