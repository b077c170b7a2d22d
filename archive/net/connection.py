"""One TCP connection carrying one association: the thin transport driver.

An asyncio ``BufferedProtocol`` (not streams): reads go where
:class:`~archive.dicom.ul.framing.FrameReader` says, so a large PDU arrives in a
buffer of its own, straight from the kernel, and is handed to the upper-layer
machine whole (no copy on the loop, no join). The association task
waits on :meth:`Connection.wait_readable` with a timeout; no polling. Reading
pauses when the machine holds more than a few PDUs' worth of unconsumed bytes
(backpressure: TCP then slows the peer) and resumes when it has drained.

Every socket gets TCP_NODELAY. On Linux TCP_QUICKACK is re-armed after each read
while a data set is streaming in (see :meth:`Connection.quickack`), because the
kernel drops back to delayed ACKs on its own: a peer that leaves Nagle's
algorithm on (pynetdicom, DCMTK by default) would otherwise wait ~40 ms for our
ACK before sending its next small PDU.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from typing import Any, cast

from archive.dicom.ul.framing import FrameReader, scratch_buffer
from archive.dicom.ul.machine import UpperLayer

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)

#: Seconds a closed connection may take to hand the peer what is still queued
#: (an A-ABORT, an A-RELEASE-RP) before it is cut.
CLOSE_GRACE = 10.0

# Where reads go between large PDUs: one buffer per thread (per event loop), as a
# read into it and its report (buffer_updated) never interleave with another's.
_scratches = threading.local()


def _scratch() -> memoryview:
    view: memoryview | None = getattr(_scratches, "view", None)
    if view is None:
        view = _scratches.view = scratch_buffer()
    return view


def tune_socket(sock: Any) -> None:
    """TCP_NODELAY on, and QUICKACK where the platform has it."""
    if sock is None:
        return
    with contextlib.suppress(OSError):  # the socket already gone
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if _QUICKACK is not None:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


def quickack_socket(sock: Any) -> socket.socket | None:
    """A socket object of our own on a duplicate of ``sock``'s descriptor, for
    re-arming QUICKACK after every read: uvloop's stand-in socket builds a new
    ``socket.socket`` on each ``setsockopt``, which costs more than the system
    call itself on the per-read path. Made when first needed (a data set
    streaming in), as it costs a descriptor: associations that only query, or
    requests rejected and left open, hold one each instead of two.
    """
    if sock is None or _QUICKACK is None:
        return None
    try:
        return socket.socket(fileno=os.dup(sock.fileno()))
    except OSError:  # the socket already gone, or no descriptor left
        return None


class Connection(asyncio.BufferedProtocol):
    """Transport adaptor between asyncio and one :class:`UpperLayer` machine."""

    def __init__(self, ul: UpperLayer, *, high_water: int) -> None:
        self.ul = ul
        self._reader = FrameReader(ul.max_pdu_length, lambda: ul.receiving_data, _scratch())
        self._loop = asyncio.get_running_loop()
        # loop.time() of the last read that handed the machine nothing (part of
        # a PDU): it moves the current wait's deadline (see _on_timer).
        self._partial_read_at = 0.0
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.closed = False
        self.opened: asyncio.Future[None] = self._loop.create_future()
        self._high_water = high_water
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._deadline = 0.0
        self._timeout = 0.0
        self._per_read = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._sock: socket.socket | None = None
        # The transport's socket, whose duplicate _sock becomes when first needed.
        self._transport_sock: Any = None
        self._close_timer: asyncio.TimerHandle | None = None
        #: Re-arm QUICKACK after every read (while a data set streams in).
        self.quickack_on_read = False

    # ---- asyncio.Protocol callbacks ---------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses but behave alike.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = (str(peer[0]), int(peer[1]))
        self._transport_sock = self.transport.get_extra_info("socket")
        tune_socket(self._transport_sock)
        if not self.opened.done():
            self.opened.set_result(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._reader.buffer()

    def buffer_updated(self, nbytes: int) -> None:
        chunks = self._reader.updated(nbytes)
        if self.quickack_on_read:
            self.quickack()
        if not chunks:
            # Part of a PDU, read into its buffer: nothing for the machine yet,
            # but the peer is alive, which the waits' timeouts count (_on_timer).
            if self._waiter is not None:
                self._partial_read_at = self._loop.time()
            return
        for chunk in chunks:
            self.ul.receive_data(chunk)
        if not self._reading_paused and self.ul.buffered > self._high_water:
            self._reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()
        self._wake()

    def _received_pending(self) -> None:
        """The stream ended: what was read of an unfinished PDU goes to the machine."""
        pending = self._reader.take_pending()
        if pending:
            self.ul.receive_data(pending)

    def eof_received(self) -> bool:
        self._received_pending()
        self.ul.receive_data(b"")
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._transport_sock = None
        self._received_pending()
        self.ul.receive_data(b"")
        self._wake()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection lost"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # ---- used by the association task -----------------------------------------

    def quickack(self) -> None:
        """Send any delayed ACK now and leave delayed-ACK mode (Linux).

        Needed while the peer streams a data set: a peer with Nagle's algorithm
        on holds its next small segment until our ACK, which the kernel would
        otherwise delay ~40 ms. Request/response traffic needs none of this (the
        response carries the ACK), so the driver turns it on only while a data
        set is expected; each call is a system call.
        """
        if self._sock is None:
            if self.closed or self._transport_sock is None:
                return
            self._sock = quickack_socket(self._transport_sock)
            if self._sock is None:
                self._transport_sock = None  # not to be tried again on every read
                return
        with contextlib.suppress(OSError):
            self._sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)  # type: ignore[arg-type]

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def consumed(self, *, starved: bool = False) -> None:
        """The machine has taken what it holds; resume reading if we had paused.

        ``starved``: it needs more bytes to go on, so what it holds is part of one
        PDU only. Reading then resumes whatever that part weighs: a control PDU
        (up to 1 MiB, an A-ASSOCIATE-RQ of many contexts) can outgrow a mark
        set for a small Maximum Length Received, and a pause would wait for good.
        """
        if self._reading_paused and (starved or self.ul.buffered <= self._high_water // 2):
            self._reading_paused = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()

    async def wait_readable(self, timeout: float, *, per_read: bool = False) -> bool:
        """Wait until data or end of stream arrives; False if ``timeout`` passed first.

        Data means something for the machine: a read into an unfinished PDU's
        buffer does not end the wait. With ``per_read`` (an idle timeout) such a
        read moves the deadline to ``timeout`` after it; without (ARTIM, and other
        deadlines from entering a state, which bytes must not extend) it does not.

        One timer per connection, re-armed lazily: each wait only moves the
        deadline, and the timer, when it fires early, re-arms itself for the
        current deadline. A chatty association therefore schedules almost no
        timers, yet every wait is bounded.
        """
        if self.closed:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        self._timeout = timeout
        self._per_read = per_read
        self._deadline = deadline = loop.time() + timeout
        if self._timer is None or self._timer_when > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._on_timer)
            self._timer_when = deadline
        try:
            await waiter
        except TimeoutError:
            return False
        finally:
            self._waiter = None
        return True

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._per_read and self._partial_read_at > self._deadline - self._timeout:
            # Bytes arrived meanwhile, into an unfinished PDU: the wait goes on,
            # its timeout counted from that read, as from any other.
            self._deadline = self._partial_read_at + self._timeout
        if now >= self._deadline:
            waiter.set_exception(TimeoutError())
        else:
            self._timer = loop.call_at(self._deadline, self._on_timer)
            self._timer_when = self._deadline

    def write(self, chunks: list[bytes | memoryview]) -> None:
        if self.closed or self.transport is None:
            return
        if len(chunks) == 1:
            self.transport.write(chunks[0])
        else:
            self.transport.writelines(chunks)

    async def drain(self, timeout: float) -> None:
        """Wait while the transport's write buffer is over its high-water mark.

        Raises TimeoutError if the peer has not read for ``timeout`` seconds.
        """
        if not self._write_paused or self.closed:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        async with asyncio.timeout(timeout):
            await waiter

    def close(self) -> None:
        """Close once what is queued is written; cut after :data:`CLOSE_GRACE`.

        A peer that reads nothing would otherwise keep the socket (and its
        queued bytes) open for good: the transport closes only once its write
        buffer has drained.
        """
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        if not self.closed and transport.get_write_buffer_size():
            self._close_timer = self._loop.call_later(CLOSE_GRACE, self.abort)

    def abort(self) -> None:
        """Close at once, dropping whatever is still queued (the kernel sends RST)."""
        if self.transport is not None and not self.closed:
            self.transport.abort()
