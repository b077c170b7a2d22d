"""Where received bytes land: each large PDU read straight into a buffer of its own.

A driver using :class:`asyncio.BufferedProtocol` asks :meth:`FrameReader.buffer`
where the next read should go and reports with :meth:`FrameReader.updated` how
many bytes arrived; it hands what ``updated`` returns to
:meth:`UpperLayer.receive_data`, in order. The byte stream the machine sees is
exactly the one read; only the chunks differ. Each chunk holds whole PDUs when it
can, so the machine never joins parts.

Why: with a plain ``Protocol``, each read becomes a new ``bytes`` (a copy) and a
PDU spread over several reads is joined (a second copy). Here, once a PDU's header
has arrived and its body does not fit the read that brought it, the body goes
straight from the kernel into a ``bytearray`` of the PDU's size, handed over whole
once full. A 0.5 MB data set arrives with no copy on the event loop but the
kernel's. Smaller PDUs, and those that arrive whole in one read, are copied out of
a scratch buffer (one copy, as before).

Nothing here decides what is valid: a PDU of unknown type, or longer than the
machine accepts (its limits are passed in), is passed on as it comes, and the
machine refuses it as before. A buffer is allocated only for a length the machine
would accept, and at most :data:`DIRECT_MAX` (longer PDUs, allowed when the maximum
length is 0, go on in pieces).

A chunk handed over is never written again (a new buffer is made for every PDU), so
the machine and everything downstream may keep views of it.
"""

from __future__ import annotations

import struct

__all__ = ["DIRECT_MAX", "SCRATCH", "FrameReader"]

HEADER_LENGTH = 6
_HEADER = struct.Struct(">BxL")
#: Size of the scratch buffer that reads go to between large PDUs.
SCRATCH = 64 << 10
#: The largest PDU given a buffer of its own; a longer one is passed on in pieces.
DIRECT_MAX = 4 << 20
_P_DATA_TF = 0x04
_KNOWN_TYPES = range(0x01, 0x08)


class FrameReader:
    """Splits a PDU stream at PDU boundaries while it is read (pure: no I/O).

    ``max_pdu_length`` is the machine's limit for P-DATA-TF (0: none) and
    ``max_control_length`` its limit for every other PDU type.
    """

    def __init__(self, max_pdu_length: int, max_control_length: int) -> None:
        self._max_data = max_pdu_length
        self._max_control = max_control_length
        self._scratch = bytearray(SCRATCH)
        self._scratch_view = memoryview(self._scratch)
        # A PDU being read into its own buffer: the buffer and how much is in it.
        self._frame: bytearray | None = None
        self._frame_view = memoryview(b"")
        self._filled = 0
        # Bytes of a header split between reads.
        self._head = bytearray()
        # Bytes still to come of a PDU passed on in pieces.
        self._passing = 0

    @property
    def pending(self) -> int:
        """Bytes received but not yet handed over (a PDU or header being read)."""
        return self._filled + len(self._head)

    def buffer(self) -> memoryview:
        """Where the next read should go (never empty)."""
        if self._frame is not None:
            return self._frame_view[self._filled :]
        return self._scratch_view

    def updated(self, n: int) -> list[bytes | bytearray]:
        """``n`` bytes were read into :meth:`buffer`; the chunks now ready, in order."""
        if self._frame is not None:
            self._filled += n
            if self._filled < len(self._frame):
                return []
            frame = self._frame
            self._frame = None
            self._frame_view = memoryview(b"")
            self._filled = 0
            return [frame]
        return self._split(self._scratch_view[:n])

    def take_pending(self) -> bytes:
        """What was received but not handed over (the stream ended mid-PDU)."""
        pending = bytes(self._head)
        if self._frame is not None:
            pending += self._frame_view[: self._filled]
        self._head.clear()
        self._frame = None
        self._frame_view = memoryview(b"")
        self._filled = 0
        return pending

    def _split(self, data: memoryview) -> list[bytes | bytearray]:
        out: list[bytes | bytearray] = []
        end = len(data)
        i = 0
        run = 0  # start of whole PDUs not yet copied out: one copy for all of them
        while i < end:
            if self._passing:
                take = min(self._passing, end - i)
                self._passing -= take
                i += take
                continue
            if self._head or end - i < HEADER_LENGTH:
                if i > run:
                    out.append(bytes(data[run:i]))
                take = min(HEADER_LENGTH - len(self._head), end - i)
                self._head += data[i : i + take]
                i += take
                run = i
                if len(self._head) < HEADER_LENGTH:
                    break
                header = bytes(self._head)
                self._head.clear()
                i = run = self._start(header, data, i, out)
                continue
            _, length = _parse(data, i)
            total = HEADER_LENGTH + length
            if end - i >= total:
                i += total  # whole in this read: joins the run
                continue
            if i > run:
                out.append(bytes(data[run:i]))
            header = bytes(data[i : i + HEADER_LENGTH])
            i = run = self._start(header, data, i + HEADER_LENGTH, out)
        if i > run:
            out.append(bytes(data[run:i]))
        return out

    def _start(self, header: bytes, data: memoryview, i: int, out: list[bytes | bytearray]) -> int:
        """A PDU whose header is ``header`` starts; its body from ``data[i:]``.

        Returns where reading ``data`` goes on: the end when the body does not fit
        (it is now being read into a buffer, or passed on in pieces).
        """
        pdu_type, length = _parse(header)
        available = len(data) - i
        if available >= length:
            out.append(header + data[i : i + length])
            return i + length
        if not self._direct(pdu_type, length):
            # Passed on as it comes; the machine judges it (and may refuse it).
            out.append(header + data[i:])
            self._passing = length - available
            return len(data)
        frame = bytearray(HEADER_LENGTH + length)
        frame[:HEADER_LENGTH] = header
        frame[HEADER_LENGTH : HEADER_LENGTH + available] = data[i:]
        self._frame = frame
        self._frame_view = memoryview(frame)
        self._filled = HEADER_LENGTH + available
        return len(data)

    def _direct(self, pdu_type: int, length: int) -> bool:
        """Whether a PDU gets a buffer of its own: a known type, within the limit."""
        if pdu_type not in _KNOWN_TYPES or length > DIRECT_MAX:
            return False
        limit = self._max_data if pdu_type == _P_DATA_TF else self._max_control
        return not limit or length <= limit


def _parse(buf: bytes | memoryview, offset: int = 0) -> tuple[int, int]:
    """(type, length) of the PDU header at ``offset``."""
    pdu_type, length = _HEADER.unpack_from(buf, offset)
    return int(pdu_type), int(length)
