"""Where received bytes land: a large P-DATA PDU is read straight into a buffer of its own.

A driver using :class:`asyncio.BufferedProtocol` asks :meth:`FrameReader.buffer`
where the next read should go and reports with :meth:`FrameReader.updated` how
many bytes arrived; it hands what ``updated`` returns to
:meth:`UpperLayer.receive_data`, in order. The byte stream the machine sees is
exactly the one read; only the chunks differ.

Why: with a plain ``Protocol``, each read becomes a new ``bytes`` (a copy) and a
PDU spread over several reads is joined (a second copy). Here, once the header of
a P-DATA-TF PDU has arrived and more than :data:`DIRECT_MIN` of its body is still
to come, the rest goes straight from the kernel into a buffer of the PDU's size,
handed over whole once full. A 0.5 MB data set then costs the event loop one copy
of the first part of each PDU (what came with its header, at most
:data:`SCRATCH`), not two copies of everything. Other PDUs, and the bytes read
between large ones, are copied out of a scratch buffer (the driver's, shared by
the connections of one event loop, whose reads never interleave), as before.

What a peer can make us allocate: a PDU buffer only for P-DATA-TF, only while
``receiving_data()`` says the association is established and no release, abort
or unknown PDU has gone by (so not for whatever an unassociated or aborted peer
sends, even in the read that carried the abort), and only for a length the machine accepts,
at most :data:`DIRECT_MAX`; anything else is passed on as it comes and the machine
judges it, as before. That is one PDU per association, which the machine would
also hold once received.

A chunk handed over is a read-only view of a buffer never written again (a new
one is made for every PDU), so the machine and everything downstream may keep
views of it, on any thread.
"""

from __future__ import annotations

from collections.abc import Callable

from archive.dicom.errors import RemoteProtocolError
from archive.dicom.ul.codec import HEADER_LENGTH, parse_header
from archive.dicom.ul.pdu import PduType

__all__ = ["DIRECT_MAX", "DIRECT_MIN", "SCRATCH", "FrameReader", "scratch_buffer"]

#: Size of the scratch buffer that reads go to between large PDUs.
SCRATCH = 64 << 10
#: A P-DATA-TF PDU gets a buffer of its own when more than this is still to come.
DIRECT_MIN = 16 << 10
#: The largest PDU given a buffer of its own; a longer one is passed on in pieces.
DIRECT_MAX = 4 << 20
#: PDU types that leave an association going (or not yet begun): any other one
#: (a release, an abort, an unknown type) means it is ending.
_GOING = frozenset(
    {PduType.A_ASSOCIATE_RQ, PduType.A_ASSOCIATE_AC, PduType.A_ASSOCIATE_RJ, PduType.P_DATA_TF}
)


class FrameReader:
    """Splits a PDU stream at PDU boundaries while it is read (pure: no I/O).

    ``max_pdu_length`` is the machine's limit for P-DATA-TF (0: none);
    ``receiving_data`` says whether the association is established (P-DATA-TF
    PDUs may get buffers of their own). ``scratch`` is where other reads go (never
    handed over: may be shared by readers whose reads never interleave, such as
    those of one event loop); :func:`scratch_buffer` makes one.
    """

    def __init__(
        self,
        max_pdu_length: int,
        receiving_data: Callable[[], bool],
        scratch: memoryview | None = None,
    ) -> None:
        self._max_data = max_pdu_length
        self._receiving_data = receiving_data
        self._scratch = scratch_buffer() if scratch is None else scratch
        # A PDU being read into its own buffer: the buffer and how much is in it.
        self._frame: memoryview | None = None
        self._filled = 0
        # Bytes of a header split between reads.
        self._head = bytearray()
        # Bytes still to come of a PDU passed on as it comes.
        self._passing = 0
        # A release, abort or unknown PDU has gone by: the association is ending,
        # whatever the machine (which may not have read it yet) says.
        self._ending = False

    @property
    def pending(self) -> int:
        """Bytes received but not yet handed over (the PDU being read into its buffer)."""
        return self._filled

    def buffer(self) -> memoryview:
        """Where the next read should go (never empty)."""
        if self._frame is not None:
            return self._frame[self._filled :]
        return self._scratch

    def updated(self, n: int) -> list[bytes | memoryview]:
        """``n`` bytes were read into :meth:`buffer`; the chunks now ready, in order.

        Empty only while a PDU is being read into its own buffer.
        """
        frame = self._frame
        if frame is not None:
            self._filled += n
            if self._filled < len(frame):
                return []
            self._frame = None
            self._filled = 0
            return [frame.toreadonly()]
        return self._split(self._scratch[:n])

    def take_pending(self) -> bytes:
        """What was received but not handed over (the stream ended mid-PDU)."""
        pending = b"" if self._frame is None else bytes(self._frame[: self._filled])
        self._head.clear()
        self._frame = None
        self._filled = 0
        self._passing = 0
        return pending

    def _split(self, data: memoryview) -> list[bytes | memoryview]:
        """Copy a scratch read out, in one piece up to where a PDU buffer takes over.

        Every byte read here is handed over: a header split between reads too
        (the reader keeps a copy in ``_head`` to parse it once whole). Only the
        rest of a large P-DATA-TF PDU goes into a buffer of its own, with its
        header when that header came whole in this read.
        """
        end = len(data)
        i = 0
        while i < end:
            if self._passing:
                take = min(self._passing, end - i)
                self._passing -= take
                i += take
                continue
            if self._head or end - i < HEADER_LENGTH:
                take = min(HEADER_LENGTH - len(self._head), end - i)
                self._head += data[i : i + take]
                i += take
                if len(self._head) < HEADER_LENGTH:
                    break
                pdu_type, length = _parse(bytes(self._head))
                self._head.clear()
                frame_start = body = i  # the header went out with earlier bytes
            else:
                pdu_type, length = _parse(data, i)
                frame_start, body = i, i + HEADER_LENGTH
            if pdu_type not in _GOING:
                self._ending = True
            still_to_come = length - (end - body)
            if still_to_come <= 0 or not self._direct(pdu_type, length, still_to_come):
                # Whole in this read, or passed on as it comes.
                self._passing = length
                i = body
                continue
            frame = bytearray(body - frame_start + length)
            frame[: end - frame_start] = data[frame_start:]
            self._frame = memoryview(frame)
            self._filled = end - frame_start
            return [bytes(data[:frame_start])] if frame_start else []
        return [bytes(data)]

    def _direct(self, pdu_type: int, length: int, still_to_come: int) -> bool:
        """Whether the rest of a PDU goes into a buffer of its own (see the module doc)."""
        if pdu_type != PduType.P_DATA_TF or still_to_come <= DIRECT_MIN or self._ending:
            return False
        return length <= min(self._max_data or DIRECT_MAX, DIRECT_MAX) and self._receiving_data()


def scratch_buffer() -> memoryview:
    """A scratch buffer for :class:`FrameReader`."""
    return memoryview(bytearray(SCRATCH))


def _parse(buf: bytes | memoryview, offset: int = 0) -> tuple[int, int]:
    """(type, length) of the PDU header at ``offset`` (any type: the machine judges)."""
    try:
        return parse_header(buf, offset)
    except RemoteProtocolError:
        return -1, int.from_bytes(buf[offset + 2 : offset + HEADER_LENGTH], "big")
