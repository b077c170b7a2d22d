"""Index attributes from the leading bytes of a received data set, streaming, no I/O.

What this is: :class:`HeaderReader`, fed the data set of a C-STORE fragment by
fragment (memoryviews cut anywhere), which picks out the attributes the index stores
(:class:`InstanceAttributes`) and stops at Pixel Data (7FE0,0010) or at the first
top-level tag past the last one it wants (``store_request.py`` checks them against
the C-STORE-RQ). What it is not: a data set parser. It keeps nothing
but the attributes it wants, never joins fragments, and never looks past the header.

Theory of operation. The reader is a loop over a cursor in the current fragment with
four pieces of state carried between fragments: ``skip`` (bytes of an unwanted value
still to pass over, however large), ``want`` (length of a wanted value being
gathered), ``buf`` (a partial element header, at most 12 bytes, or the part of a
wanted value seen so far) and ``depth`` (how many undefined-length sequences and
items we are inside). A header wholly inside the fragment is unpacked in place; only
one split across fragments is copied into ``buf``. Sequences are never parsed, only
stepped over: one of defined length is skipped like any value; in one of undefined
length (explicit SQ or UN, or any undefined length in Implicit VR, where SQ is
known only from the data dictionary) items of defined length are skipped, and
undefined lengths and delimitation items move ``depth`` up and down (PS3.5 7.5). At
the top level a zero-length delimitation item is a stray and is stepped over; any
other item or delimiter there is refused.
Inside a UN of undefined length the encoding is Implicit VR Little Endian whatever
the transfer syntax (PS3.5 6.2.2). Memory is bounded by :data:`MAX_VALUE_LENGTH` per
value, :data:`MAX_HELD` in all, and for Deflated one :data:`INFLATE_BLOCK` of input
and one :data:`INFLATE_CHUNK` of output at a time.

Work is bounded per byte received, since the reader runs on the event loop: an
element header is at least 8 bytes, so a plain data set costs at most one turn of
the loop per 8 bytes. Deflated is the exception (raw deflate inflates up to 1032:1,
and every inflated header is a turn of the loop), so it is walked only until the
reader is done, and inflated only up to :data:`MAX_INFLATE_RATIO` times the bytes
received plus :data:`INFLATE_ALLOWANCE`. Past that in its header it is refused
(C000) as a deflate bomb. After its header the rest is inflated (in C, without
walking) so that a stream cut short or corrupt is refused; one that goes past the
ratio there too is no longer inflated and is stored as received, unchecked. So a
Deflated data set whose deflate stream is whole but whose elements end early after
the header is not refused here, unlike the other encodings. A reader made with
``rest="checked"`` (a scan, in the I/O pool, of a file of unknown origin:
``archive check``) knows no ratio and checks the stream to its end (:data:`Rest`).

The top-level sequences the index holds (:data:`archive.dicom.query_keys.SEQUENCE_KEYS`,
for Sequence Matching) are the exception to "never parsed": their value bytes are
gathered as they are walked (at most :data:`MAX_SEQUENCE_LENGTH` each; a longer one
is stepped over and not indexed) and decoded in :meth:`HeaderReader.finish`
(``header_sequences.py``). Each is indexed as JSON text: a list of items, each an
object of the item keys kept (keyword -> decoded text, or a list of items for a
nested sequence, one sent as UN decoded as Implicit VR LE), empty values left out;
``""`` when absent or empty. A sequence that does not decode is
not indexed (the data set is stored as received, as any other sequence it holds);
of a tag repeated, the first copy short enough to index is.

The element walk (:meth:`HeaderReader._parse`) has a twin in C,
``archive._native.header_walk`` (``native/header.c``), which runs in its place when
the extension is built (:data:`_walk`; ``ARCHIVE_NATIVE=0`` keeps the Python one):
the same state, values, sequences and errors at the same byte, in ~4 us per small
data set instead of ~25-40 us on the event loop. The Python walk stays the
reference; ``tests/dicom/test_header_native.py`` holds the two to it.

Values are kept as raw bytes and decoded once, in :meth:`HeaderReader.finish`, with
the Specific Character Set (see :mod:`archive.dicom.charset`). A date in the
ACR-NEMA form ``YYYY.MM.DD`` is indexed as ``YYYYMMDD`` (the file keeps what was
sent); a time is kept as sent, and matched by its meaning (``query_match.py``).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import ClassVar, Literal

from archive.dicom import uids
from archive.dicom.attributes import LAST_WANTED as _LAST_WANTED
from archive.dicom.attributes import NOT_WANTED as _NOT_WANTED
from archive.dicom.attributes import SQ as _SQ
from archive.dicom.attributes import WANTED as _WANTED
from archive.dicom.attributes import InstanceAttributes, decode_values, normalized_date
from archive.dicom.dimse.status import Status
from archive.dicom.errors import StatusError
from archive.dicom.wire import (
    ALL_VR_BYTES,
    DEFLATED,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    ITEM,
    ITEM_DELIMITATION,
    LE,
    SEQUENCE_DELIMITATION,
    SHORT_VR_BYTES,
    STRUCTS,
    UNDEFINED_LENGTH,
)
from archive.native import EXTENSION, choose

__all__ = [
    "INFLATE_ALLOWANCE",
    "INFLATE_BLOCK",
    "INFLATE_CHUNK",
    "MAX_HELD",
    "MAX_INFLATE_RATIO",
    "MAX_SEQUENCE_LENGTH",
    "MAX_VALUE_LENGTH",
    "HeaderError",
    "HeaderReader",
    "InstanceAttributes",
    "Rest",
    "normalized_date",
]

#: A wanted value longer than this is refused: every wanted VR is at most 64
#: characters (PS3.5 Table 6.2-1), so this is garbage, not data.
MAX_VALUE_LENGTH = 64 * 1024
#: Bytes of wanted values held at once, all attributes together.
MAX_HELD = 256 * 1024
#: Bytes of one wanted sequence gathered at most (a few hundred is usual); a longer
#: one is not indexed. Not counted in :data:`MAX_HELD`: with five wanted
#: sequences, the reader holds at most 256 + 5 x 16 KiB.
MAX_SEQUENCE_LENGTH = 16 * 1024
#: Output bytes asked of the inflater per call for Deflated (PS3.5 A.5).
INFLATE_CHUNK = 64 * 1024
#: Deflated input is inflated in blocks of this size at fixed stream offsets.
INFLATE_BLOCK = 4096
#: Bytes the header part of a Deflated data set may inflate to per byte received,
#: on average from the start. Headers deflate 3-10:1; a Key Object Selection whose
#: evidence references 30 000 instances by UIDs that differ in a counter, 30-35:1
#: (1.5-2 element headers per byte received). At 64:1 the reader walks at most 8
#: element headers per byte received, where a plain data set has one per 8 bytes.
MAX_INFLATE_RATIO = 64
#: Bytes the header part may inflate to whatever the ratio: a small data set whose
#: header holds a run of zeros, say, is not a bomb.
INFLATE_ALLOWANCE = 64 * 1024

# Items and delimiters are matched on the element number once the group is FFFE.
_ITEM = ITEM & 0xFFFF
_ITEM_DELIMITATION = ITEM_DELIMITATION & 0xFFFF
_SEQUENCE_DELIMITATION = SEQUENCE_DELIMITATION & 0xFFFF

#: Per header encoding: (tag + 4-byte length, tag + VR + 2-byte length, 4-byte length).
_STRUCTS = tuple(structs[:3] for structs in STRUCTS)
_LE_TAG_VR_LENGTH, _LE_LONG_LENGTH = LE.tag_vr_length, LE.long_length

_STANDARD_TS_ROOT = "1.2.840.10008.1.2."

#: Top-level Pixel Data, whose length form the transfer syntax fixes (PS3.5 A.4):
#: defined in a native syntax, undefined (fragments) in an encapsulated one.
_PIXEL_DATA = 0x7FE00010
#: ``HeaderReader._pixels``: what a top-level Pixel Data's length must be, if known.
PIXELS_ANY, PIXELS_NATIVE, PIXELS_ENCAPSULATED = 0, 1, 2
_PIXELS_MESSAGES = {
    PIXELS_NATIVE: "Pixel Data of undefined length in a native transfer syntax",
    PIXELS_ENCAPSULATED: "Pixel Data of defined length in an encapsulated transfer syntax",
}


class HeaderError(StatusError):
    """The data set cannot be stored; ``status`` is the C-STORE-RSP failure status.

    Statuses are those of PS3.4 Table B.2-1 (C-STORE Status): A7xx Refused: Out of
    Resources, A9xx Error: Data Set does not match SOP Class, Cxxx Error: Cannot
    understand. This module sends :attr:`Status.CANNOT_UNDERSTAND` (C000) for bytes
    that cannot be parsed; ``store_request.check_store_request`` C000 or
    :attr:`Status.DATASET_DOES_NOT_MATCH_SOP_CLASS` (A900).
    """

    code: ClassVar[str] = "dicom.header"
    default_status: ClassVar[int] = Status.CANNOT_UNDERSTAND

    def __init__(
        self, message: str, status: int | None = None, *, offending: int | None = None
    ) -> None:
        super().__init__(message, status)
        #: The tag at fault, for the response's Offending Element (0000,0901).
        self.offending = offending


def _no_vr(group: int, element: int, vr: bytes) -> str:
    return f"({group:04X},{element:04X}) has no VR (bytes {vr[0]:02X} {vr[1]:02X}) in Explicit VR"


def _fresh(exc: HeaderError) -> HeaderError:
    """The same verdict as ``exc``, in a new exception with no traceback."""
    return HeaderError(str(exc), exc.status, offending=exc.offending)


def _cannot_understand(message: str) -> HeaderError:
    return HeaderError(message, Status.CANNOT_UNDERSTAND)


#: What a reader does with a Deflated data set past its header: "bounded" (on the
#: event loop; and recovery reading back a version ingest acknowledged so)
#: inflates it within :data:`MAX_INFLATE_RATIO` to check the stream, then no
#: further; "checked" (a scan in the I/O pool of a file of unknown origin:
#: ``archive check``) inflates it to its end, so a cut file is told from a whole
#: one; "skipped" (a header-only scan, ``finish(whole=False)``) stops at the header,
#: unless the data set ended before it (``finish(whole=True)``: then as "checked").
Rest = Literal["bounded", "checked", "skipped"]


class HeaderReader:
    """Streaming extractor of :class:`InstanceAttributes` from data set bytes.

    ``transfer_syntax`` is the UID of the accepted presentation context: Implicit VR
    LE, Explicit VR LE, Explicit VR BE, Deflated Explicit VR LE, or any other standard
    transfer syntax (their data sets are all Explicit VR LE, PS3.5 A.4). A private
    one raises :class:`HeaderError` (C000).
    """

    __slots__ = (
        "_buf",
        "_capture",
        "_capture_tag",
        "_deflated",
        "_depth",
        "_done",
        "_error",
        "_given",
        "_held",
        "_inflated",
        "_inflater",
        "_mode",
        "_pending",
        "_pixels",
        "_rest",
        "_sequences",
        "_skip",
        "_un_depth",
        "_unchecked",
        "_values",
        "_want",
    )

    def __init__(self, transfer_syntax: str, *, rest: Rest = "bounded") -> None:
        ts = transfer_syntax.rstrip("\0 ")
        self._inflater: zlib._Decompress | None = None
        #: What becomes of a Deflated data set past its header (:data:`Rest`).
        self._rest = rest
        if ts == uids.IMPLICIT_VR_LE:
            self._mode = IMPLICIT_LE
        elif ts == uids.EXPLICIT_VR_BE:
            self._mode = EXPLICIT_BE
        elif ts in DEFLATED:
            self._mode = EXPLICIT_LE
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, RFC 1951
        elif ts == uids.EXPLICIT_VR_LE or ts.startswith(_STANDARD_TS_ROOT):
            self._mode = EXPLICIT_LE
        else:
            raise _cannot_understand(f"unsupported transfer syntax {ts!r}")
        # Pixel Data encoded against its syntax cannot be decoded nor sent on
        # (DCMTK refuses it): refused at its header. An accepted syntax we do not
        # know (or a JPIP one, without Pixel Data) is not judged.
        if ts in uids.NATIVE_TRANSFER_SYNTAXES:
            self._pixels = PIXELS_NATIVE
        elif ts in uids.ENCAPSULATED_TRANSFER_SYNTAXES:
            self._pixels = PIXELS_ENCAPSULATED
        else:
            self._pixels = PIXELS_ANY
        self._buf = bytearray()
        self._deflated = bytearray()  # deflated input short of a whole block
        self._given = 0  # deflated bytes handed to the inflater
        self._inflated = 0  # and the bytes it gave back
        #: Deflated past its header and past the ratio: no longer inflated.
        self._unchecked = False
        self._skip = 0
        self._want = 0
        self._pending = 0
        self._depth = 0
        self._un_depth = 0
        self._held = 0
        self._values: dict[int, bytes] = {}
        # A wanted sequence of undefined length being gathered, and its tag.
        self._capture: bytearray | None = None
        self._capture_tag = 0
        # Wanted sequences found: tag -> (encoding of their items, value length).
        self._sequences: dict[int, tuple[int, bool]] = {}
        self._done = False
        self._error: HeaderError | None = None

    @property
    def done(self) -> bool:
        """True once every wanted attribute has been seen (or could no longer come)."""
        return self._done

    @property
    def buffered(self) -> int:
        """Bytes held now: partial header or value, wanted values, deflated input,
        the part of a wanted sequence gathered so far."""
        gathered = len(self._capture) if self._capture is not None else 0
        return len(self._buf) + self._held + len(self._deflated) + gathered

    @property
    def inflated(self) -> int:
        """Bytes of a Deflated data set inflated so far (0 for other transfer syntaxes)."""
        return self._inflated

    def feed(self, data: bytes | bytearray | memoryview) -> bool:
        """Take the next fragment of the data set; return :attr:`done`.

        Feed every fragment, to the end: once :attr:`done`, values are no longer
        read but element headers are still walked (a cheap skip counter for a long
        Pixel Data), so :meth:`finish` can tell a whole data set from a truncated
        one. Raises :class:`HeaderError` when the bytes cannot be a data set, and
        again on every later call. Deflated input is inflated a whole
        :data:`INFLATE_BLOCK` at a time, so there the last bytes of the header may
        only be read by :meth:`finish`; once done, Deflated input is only inflated,
        and past the ratio ignored (see the module docstring).
        """
        if self._error is not None:
            raise self._again()
        if self._unchecked:  # only ever set once done
            return True
        view = memoryview(data)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")  # counted and cut in bytes, whatever its items
        try:
            if self._inflater is None:
                error = _walk(self, view)
                if error is not None:
                    raise _cannot_understand(error)
            else:
                self._inflate(view)
        except HeaderError as exc:
            self._keep(exc)
            raise
        return self._done

    def _inflate(self, view: memoryview) -> None:
        # The inflater is given the stream in blocks cut at fixed offsets, whatever
        # the fragments: the outcome (including where a corrupt stream is noticed,
        # since zlib drops the output of a failing call) depends on the bytes alone.
        held = self._deflated
        if held:
            take = INFLATE_BLOCK - len(held)
            held += view[:take]
            view = view[take:]
            if len(held) < INFLATE_BLOCK:
                return
            self._inflate_block(bytes(held))
            held.clear()
        while len(view) >= INFLATE_BLOCK and not self._unchecked:
            self._inflate_block(view[:INFLATE_BLOCK])
            view = view[INFLATE_BLOCK:]
        if not self._unchecked:  # else the rest is not inflated (nothing is held)
            held += view

    def _inflate_block(self, block: bytes | memoryview) -> None:
        inflater = self._inflater
        assert inflater is not None
        pending: bytes | memoryview = block
        self._given += len(block)
        allowed = (
            -1 if self._rest == "checked" else INFLATE_ALLOWANCE + MAX_INFLATE_RATIO * self._given
        )
        try:
            while not inflater.eof:
                # max_length bounds the output of one call, so a deflate bomb costs
                # neither memory nor (past the allowed) time; the input not yet
                # inflated waits in unconsumed_tail. One byte past the allowed
                # tells a bomb.
                most = (
                    INFLATE_CHUNK
                    if allowed < 0
                    else min(INFLATE_CHUNK, allowed - self._inflated + 1)
                )
                out = inflater.decompress(pending, most)
                if out:
                    self._inflated += len(out)
                    if not self._done:  # once done, only inflated: the stream checked
                        error = _walk(self, memoryview(out))
                        if error is not None:
                            raise _cannot_understand(error)
                        if self._done and self._rest == "skipped":
                            self._unchecked = True
                            return
                if 0 <= allowed < self._inflated:
                    if not self._done:
                        raise _cannot_understand(
                            f"deflated data set inflates past {MAX_INFLATE_RATIO}:1 in its header"
                        )
                    self._unchecked = True  # past the header: stored as received
                    return
                pending = inflater.unconsumed_tail
                if not pending and not out:
                    return
        except zlib.error as exc:
            raise _cannot_understand(f"deflated data set is corrupt: {exc}") from None

    def cut_short(self) -> str | None:
        """Fed a whole data set in a native transfer syntax: why it is cut short
        (:meth:`finish`'s message), or None, without decoding any value (what a
        sender checks before its last fragment goes out: ``archive store``)."""
        if self._error is not None or self._inflater is not None:
            return None
        if self._buf or self._skip or self._want or self._depth:
            return f"data set truncated {'after' if self._done else 'in'} its header"
        return None

    def finish(self, *, whole: bool = True) -> InstanceAttributes:
        """The attributes found; call when :attr:`done` or at the end of the data set.

        Raises :class:`HeaderError` (C000) if the data set ended inside an element
        header, a value or a sequence before the reader was done. ``whole=False``:
        the caller stopped feeding once :attr:`done` (it wants the header only, as
        ``archive reindex`` does), so the rest of the data set is not checked; a
        reader that is not done then raises as a data set cut in its header. Past its
        header a Deflated data set is checked for a whole deflate stream only (the
        module docstring says why).
        """
        if self._error is not None:
            raise self._again()
        if whole and self._rest == "skipped" and not self._done:
            # Fed to its end before the header was: what is held is all there is,
            # and the stream must end as in a whole read.
            self._rest = "checked"
        if whole and self._inflater is not None and not self._unchecked:
            try:
                self._inflate_block(bytes(self._deflated))
            except HeaderError as exc:
                self._keep(exc)
                raise
            self._deflated.clear()
        if not whole or self._unchecked:
            # Not fed to the end, or Deflated and too compressible to check: the
            # rest is unread.
            if not self._done:
                raise self._keep(_cannot_understand("data set truncated in its header"))
            return self._attributes()
        if self._inflater is not None and self._done:
            # Inflated, not walked, past the header: the stream must have ended.
            truncated = not self._inflater.eof
        else:
            truncated = bool(self._buf or self._skip or self._want or self._depth)
            truncated = truncated or (self._inflater is not None and not self._inflater.eof)
        if truncated:
            where = "after its header" if self._done else "in its header"
            raise self._keep(_cannot_understand(f"data set truncated {where}"))
        return self._attributes()

    def _keep(self, exc: HeaderError) -> HeaderError:
        """Remember ``exc`` as the verdict on the data set; ``exc``, to raise now.

        A copy is kept, and every later raise is of a fresh one (:meth:`_again`):
        a raised exception's traceback holds the frames it went through, this
        reader among their locals, so keeping the raised one made a reference
        cycle that held the fragment being read (a PDU buffer, ~256 KiB) after
        its association had ended, until the garbage collector's next full pass
        (100 MB after 400 refused data sets).
        """
        self._error = _fresh(exc)
        return exc

    def _again(self) -> HeaderError:
        assert self._error is not None
        return _fresh(self._error)

    # --- parsing -------------------------------------------------------------------

    def _parse(self, data: memoryview) -> str | None:
        """Walk one fragment from the reader's state; the message of the
        :class:`HeaderError` to raise, or None. The twin of
        ``archive._native.header_walk`` (:data:`_walk` is the one in use)."""
        end = len(data)
        pos = 0
        buf = self._buf
        values = self._values
        wanted_tags = _WANTED
        short_vrs = SHORT_VR_BYTES
        skip = self._skip
        want = self._want
        depth = self._depth
        un_depth = self._un_depth
        held = self._held
        base = self._mode
        mode = IMPLICIT_LE if un_depth and depth >= un_depth else base
        tag_length, tag_vr_length, long_length = _STRUCTS[mode]
        capture_from = 0  # where this fragment's part of a gathered sequence starts
        try:
            while pos < end:
                if skip:
                    if skip >= end - pos:
                        skip -= end - pos
                        pos = end
                        return None
                    pos += skip
                    skip = 0
                if want:
                    take = min(want - len(buf), end - pos)
                    buf += data[pos : pos + take]
                    pos += take
                    if len(buf) < want:
                        return None
                    values[self._pending] = bytes(buf)
                    buf.clear()
                    want = 0
                    continue

                # An element header: in place when the fragment holds 12 bytes,
                # else gathered in buf (at most 12 bytes) across fragments.
                src: memoryview | bytearray
                if buf or end - pos < 12:
                    take = min(12 - len(buf), end - pos)
                    buf += data[pos : pos + take]
                    pos += take
                    src, at, avail = buf, 0, len(buf)
                    if avail < 8:
                        return None
                else:
                    src, at, avail = data, pos, end - pos
                size = 8
                if mode:
                    group, elem, vr, length = tag_vr_length.unpack_from(src, at)
                    if group == 0xFFFE:  # items and delimiters have no VR, PS3.5 7.5
                        length = long_length.unpack_from(src, at + 4)[0]
                        vr = b""
                    elif vr not in short_vrs:
                        if (
                            not (vr.isalpha() and vr.isupper())  # the common case first
                            and not self._done
                            and (depth or (group << 16 | elem) <= _LAST_WANTED)
                        ):
                            # A VR not yet defined is two capitals (PS3.5 6.2);
                            # anything else in the header (an element in Implicit
                            # VR, say) would be walked with a length from its
                            # value. Past the header it is judged as before.
                            return _no_vr(group, elem, vr)
                        if avail < 12:
                            if not depth and (group << 16 | elem) > _LAST_WANTED:
                                self._done = True  # e.g. Pixel Data: its length is moot
                            return None  # buf holds all we have; wait for more
                        length = long_length.unpack_from(src, at + 8)[0]
                        size = 12
                else:
                    group, elem, length = tag_length.unpack_from(src, at)
                    vr = b""
                    if group == 2 and bytes(src[at + 4 : at + 6]) in ALL_VR_BYTES:
                        # File Meta (PS3.10 7.1) is always Explicit VR LE; some
                        # senders leave it in front of an Implicit VR data set.
                        group, elem, vr, length = _LE_TAG_VR_LENGTH.unpack_from(src, at)
                        if vr not in short_vrs:
                            if avail < 12:
                                return None
                            length = _LE_LONG_LENGTH.unpack_from(src, at + 8)[0]
                            size = 12
                if src is buf:
                    pos -= avail - size  # hand back what we took past the header
                    buf.clear()
                else:
                    pos += size

                if not depth:
                    if group == 0xFFFE:
                        # A zero-length delimiter outside any sequence is a stray
                        # (a sender's miscount): stepped over, so that it neither
                        # ends the header (its tag is past all we want) nor drops
                        # the values after it. Any other item tag here is garbage.
                        if length or elem not in (_ITEM_DELIMITATION, _SEQUENCE_DELIMITATION):
                            return f"(FFFE,{elem:04X}) outside any sequence"
                        continue
                    tag = group << 16 | elem
                    if (
                        tag == _PIXEL_DATA
                        and self._pixels
                        and (length == UNDEFINED_LENGTH) != (self._pixels == PIXELS_ENCAPSULATED)
                    ):
                        return _PIXELS_MESSAGES[self._pixels]
                    if tag > _LAST_WANTED:
                        # Pixel Data, or past all we want: from here on every
                        # value is stepped over, but element headers are still
                        # walked to the end, so a data set cut short (or bytes
                        # that are no data set at all) is caught in finish().
                        # Not so when Deflated: bytes received would cost up to
                        # 1032 times their size to walk.
                        self._done = True
                        if self._inflater is not None:
                            return None
                    if length == UNDEFINED_LENGTH:
                        depth = 1
                        if vr == b"UN":
                            un_depth = 1
                            mode = IMPLICIT_LE
                            tag_length, tag_vr_length, long_length = _STRUCTS[mode]
                        # The first copy of a repeated tag is the one kept.
                        if (
                            not self._done
                            and wanted_tags.get(tag, _NOT_WANTED)[1] == _SQ
                            and tag not in self._sequences
                        ):
                            self._sequences[tag] = (mode, True)  # undefined length
                            self._capture, self._capture_tag = bytearray(), tag
                            capture_from = pos
                        continue
                    if self._done or tag not in wanted_tags:
                        pos += length  # past end: the loop turns the excess into skip
                        continue
                    if wanted_tags[tag][1] == _SQ:
                        if length > MAX_SEQUENCE_LENGTH or tag in self._sequences:
                            pos += length  # too long to index, or a repeated tag
                            continue
                        # Items of an UN are Implicit VR LE, PS3.5 6.2.2.
                        items_mode = IMPLICIT_LE if vr == b"UN" else mode
                        self._sequences[tag] = (items_mode, False)
                    elif vr == b"SQ":
                        pos += length  # a sequence where a value belongs: not read
                        continue
                    else:
                        if length > MAX_VALUE_LENGTH:
                            return f"value of ({group:04X},{elem:04X}) is {length} bytes long"
                        held += length
                        if held > MAX_HELD:
                            return "header values too long in total"
                    if end - pos >= length:
                        values[tag] = bytes(data[pos : pos + length])
                        pos += length
                    else:
                        self._pending = tag
                        want = length
                    continue

                # Inside a sequence: step over it, PS3.5 7.5.
                if group == 0xFFFE:
                    if elem == _ITEM:
                        if length == UNDEFINED_LENGTH:
                            depth += 1
                        else:
                            pos += length
                    elif elem in (_ITEM_DELIMITATION, _SEQUENCE_DELIMITATION):
                        depth -= 1
                        if un_depth > depth:
                            un_depth = 0
                            mode = base
                            tag_length, tag_vr_length, long_length = _STRUCTS[mode]
                        if not depth and self._capture is not None:
                            self._captured(data[capture_from:pos])
                    elif length == UNDEFINED_LENGTH:
                        return f"(FFFE,{elem:04X}) of undefined length"
                    else:
                        pos += length
                elif length == UNDEFINED_LENGTH:
                    depth += 1
                    if vr == b"UN" and not un_depth:
                        un_depth = depth
                        mode = IMPLICIT_LE
                        tag_length, tag_vr_length, long_length = _STRUCTS[mode]
                else:
                    pos += length
            if pos > end:  # a value skipped runs on into the next fragments
                skip = pos - end
            return None
        finally:
            if self._capture is not None:  # the sequence runs on past this fragment
                self._gather(data[capture_from : min(pos, end)])
            self._skip = skip
            self._want = want
            self._depth = depth
            self._un_depth = un_depth
            self._held = held

    def _gather(self, part: memoryview) -> None:
        """Add ``part`` to the sequence being gathered, or give it up (too long to
        index: walked, not gathered) before holding more than the bound."""
        capture = self._capture
        assert capture is not None
        if len(capture) + len(part) > MAX_SEQUENCE_LENGTH:
            self._capture = None
            del self._sequences[self._capture_tag]
        else:
            capture += part

    def _captured(self, tail: memoryview) -> None:
        """The gathered sequence ends with ``tail``: keep it as the tag's value."""
        self._gather(tail)
        if self._capture is not None:
            self._values[self._capture_tag] = bytes(self._capture)
            self._capture = None

    # --- decoding ------------------------------------------------------------------

    def _attributes(self) -> InstanceAttributes:
        return decode_values(self._values, self._sequences, self._mode)


#: The element walk in use: ``archive._native.header_walk`` when the C extension is
#: there (and ``ARCHIVE_NATIVE=0`` is not set), else its twin,
#: :meth:`HeaderReader._parse`. Both give the same results (the C one, a few
#: microseconds per data set instead of ~40); the tests hold them to it.
_walk: Callable[[HeaderReader, memoryview], str | None] = choose("header_walk", HeaderReader._parse)
if EXTENSION is not None and hasattr(EXTENSION, "header_setup"):
    # Even when not chosen: the tests compare the two.
    EXTENSION.header_setup(
        {tag: kind == _SQ for tag, (_, kind) in _WANTED.items()},
        SHORT_VR_BYTES,
        ALL_VR_BYTES,
        MAX_VALUE_LENGTH,
        MAX_HELD,
        MAX_SEQUENCE_LENGTH,
    )
