"""Explicit VR Little Endian to Implicit VR Little Endian, streaming, no I/O.

What this is: :class:`ToImplicit`, fed a data set encoded in Explicit VR Little
Endian fragment by fragment (cut anywhere), giving back the same data set in
Implicit VR Little Endian, the transfer syntax every DICOM application entity
must accept (PS3.5 10.1). It is what lets ``archive store`` and the node's C-MOVE
and C-GET send an instance to a peer that accepts nothing else, as DCMTK's
storescu does, without reading the file whole. What it is not: transcoding.
Values are little endian in both syntaxes and pass through untouched; only the
element headers change, so Pixel Data is never decoded.

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

State between fragments: ``_head`` (a header cut by a fragment's end, at most 12
bytes), ``_copy``/``_drop`` (value bytes still to pass or skip, however large),
``_pos`` (source offset) and ``_open`` (the sequences and items we are inside,
each with the source offset it ends at, or -1 until its delimiter; and whether
its content is Implicit VR already). Memory is a header and the output of one
fragment; work is bounded per element header, at least 8 source bytes each.

A data set this cannot follow (no VR where one must be, an undefined length on
a value that is no sequence, an item outside a sequence, a value running past
its container, a data set cut short) raises :class:`ReencodeError`, at the
fragment where it is seen: what went out before is the caller's to abort.
"""

from __future__ import annotations

from struct import Struct

from archive.dicom.wire import (
    DELIMITER_GROUP,
    ITEM,
    ITEM_DELIMITATION,
    SEQUENCE_DELIMITATION,
    SHORT_VR_BYTES,
    UNDEFINED_LENGTH,
)
from archive.errors import ArchiveError

__all__ = ["ReencodeError", "ToImplicit"]

_TAG_LENGTH = Struct("<HHL")  # Implicit VR: tag + 4-byte length; items and delimiters
_SHORT = Struct("<HH2sH")  # Explicit VR: tag + VR + 2-byte length
_LONG = Struct("<HH2s2xL")  # Explicit VR: tag + VR + 2 reserved bytes + 4-byte length

_ITEM_END = _TAG_LENGTH.pack(0xFFFE, 0xE00D, 0)
_SEQUENCE_END = _TAG_LENGTH.pack(0xFFFE, 0xE0DD, 0)
_LETTERS = frozenset(range(ord("A"), ord("Z") + 1))
#: Length to End (0008,0001), retired: like a group length, it counts bytes.
_LENGTH_TO_END = 0x00080001


class ReencodeError(ArchiveError):
    """The data set cannot be followed as Explicit VR Little Endian."""

    code = "dicom.reencode"


class _Open:
    """A sequence or item being passed through."""

    __slots__ = ("end", "implicit", "item")

    def __init__(self, item: bool, end: int, implicit: bool) -> None:
        self.item = item  # an item (else a sequence)
        self.end = end  # source offset just past it; -1: ends at its delimiter
        self.implicit = implicit  # its content is Implicit VR already (in a UN)


class ToImplicit:
    """One data set, Explicit VR LE in, Implicit VR LE out: :meth:`feed`, then :meth:`close`."""

    def __init__(self) -> None:
        self._head = b""
        self._copy = 0
        self._drop = 0
        self._pos = 0
        self._open: list[_Open] = []
        self._out: list[bytes | memoryview] = []
        self.dropped = 0  # elements left out (group lengths, Length to End)

    def feed(self, fragment: bytes | memoryview) -> bytes:
        """The next fragment of the source; what of the output it completes."""
        view = memoryview(fragment).cast("B")
        at, size = 0, len(view)
        while True:
            if self._copy:
                take = min(self._copy, size - at)
                self._out.append(view[at : at + take])
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
        if self._head or self._copy or self._drop:
            raise ReencodeError(f"the data set is cut short (at byte {self._pos})")
        self._close_ended()
        if self._open:
            what = "an item" if self._open[-1].item else "a sequence"
            raise ReencodeError(f"the data set ends inside {what} of undefined length")
        return self._take()

    # ---- internals ------------------------------------------------------------------

    def _take(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    def _close_ended(self) -> None:
        """Delimit the containers of defined length whose source ends here."""
        while self._open and self._open[-1].end == self._pos:
            done = self._open.pop()
            self._out.append(_ITEM_END if done.item else _SEQUENCE_END)

    def _header(self, view: memoryview, at: int) -> int:
        """Read and convert the header at ``view[at:]``; the offset after it, or -1."""
        have = len(self._head)
        head = self._head + bytes(view[at : at + 12 - have])
        if len(head) < 6:
            return self._keep(head)
        group, element = _TAG_LENGTH.unpack_from(head.ljust(8, b"\0"))[:2]
        top = self._open[-1] if self._open else None
        implicit = group == DELIMITER_GROUP or (top is not None and top.implicit)
        if implicit or head[4:6] in SHORT_VR_BYTES:
            size = 8
        elif head[4] in _LETTERS and head[5] in _LETTERS:
            size = 12  # every other VR, known or not (PS3.5 7.1.2)
        else:
            raise ReencodeError(
                f"no VR in the element header at byte {self._pos}: not Explicit VR Little Endian"
            )
        if len(head) < size:
            return self._keep(head)
        head = head[:size]
        self._head = b""
        start = self._pos
        self._pos += size
        if size == 12:
            vr, length = _LONG.unpack(head)[2:]
        elif implicit:
            vr, length = b"", _TAG_LENGTH.unpack(head)[2]
        else:
            vr, length = _SHORT.unpack(head)[2:]
        self._element(group << 16 | element, vr, length, start, top)
        return at + size - have

    def _keep(self, head: bytes) -> int:
        self._head = head  # all the fragment had left; _pos stays at its start
        return -1

    def _element(self, tag: int, vr: bytes, length: int, start: int, top: _Open | None) -> None:
        defined = length != UNDEFINED_LENGTH
        if top is not None and top.end >= 0 and self._pos + (length if defined else 0) > top.end:
            raise ReencodeError(f"the element at byte {start} runs past its container")
        in_sequence = top is not None and not top.item
        if tag >> 16 == DELIMITER_GROUP:
            self._delimiter(tag, length, start, top)
            return
        if in_sequence:
            raise ReencodeError(f"an element that is no item at byte {start}, in a sequence")
        if top is not None and top.implicit:
            # Inside a UN of undefined length: Implicit VR already, copied.
            self._out.append(_TAG_LENGTH.pack(tag >> 16, tag & 0xFFFF, length))
            if defined:
                self._copy = length
            else:
                self._open.append(_Open(item=False, end=-1, implicit=True))
            return
        if (tag & 0xFFFF == 0 and tag >> 16 > 2) or tag == _LENGTH_TO_END:
            if not defined:
                raise ReencodeError(f"a group length of undefined length at byte {start}")
            self._drop = length
            self.dropped += 1
            return
        if vr == b"SQ" or (vr == b"UN" and not defined):
            self._out.append(_TAG_LENGTH.pack(tag >> 16, tag & 0xFFFF, UNDEFINED_LENGTH))
            end = self._pos + length if defined else -1
            self._open.append(_Open(item=False, end=end, implicit=vr == b"UN"))
            return
        if not defined:
            raise ReencodeError(
                f"undefined length on a {vr.decode('ascii')} value at byte {start}"
                " (encapsulated Pixel Data has no Implicit VR form)"
            )
        self._out.append(_TAG_LENGTH.pack(tag >> 16, tag & 0xFFFF, length))
        self._copy = length

    def _delimiter(self, tag: int, length: int, start: int, top: _Open | None) -> None:
        defined = length != UNDEFINED_LENGTH
        if tag == ITEM:
            if top is None or top.item:
                raise ReencodeError(f"an item outside a sequence at byte {start}")
            if top.implicit and defined:
                self._out.append(_TAG_LENGTH.pack(0xFFFE, 0xE000, length))
                self._copy = length  # Implicit VR already
                return
            self._out.append(_TAG_LENGTH.pack(0xFFFE, 0xE000, UNDEFINED_LENGTH))
            end = self._pos + length if defined else -1
            self._open.append(_Open(item=True, end=end, implicit=top.implicit))
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
