"""An association in progress: the upper-layer machine driven over a connection.

This is the part of the driver shared by both roles. It carries out what the
machine asks (write its outbox, close or half-close the transport, honour ARTIM),
turns P-DATA indications into DIMSE message events through the assembler, and
sends DIMSE messages fragmented to the peer's maximum PDU length. Timeouts: the
ARTIM value while the machine runs ARTIM or awaits an association or release
answer, the caller's (DIMSE) timeout while waiting for a response, and the network
idle timeout on an established association.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import ClassVar

import msgspec

from archive.dicom.dimse import (
    Command,
    CommandReceived,
    DatasetFragment,
    MessageAssembler,
    command_pdus,
    dataset_pdus,
    message_pdus,
)
from archive.dicom.errors import AbortReason, AbortSource, RemoteProtocolError
from archive.dicom.ul.machine import NEED_DATA, Closed, Event, ProviderAbort, State, UpperLayer
from archive.dicom.ul.negotiation import Negotiated
from archive.dicom.ul.pdata import Pdv
from archive.dicom.ul.pdu import AAbort, AAssociateRj, AReleaseRp, AReleaseRq, PDataTf
from archive.errors import ArchiveError
from archive.net.connection import Connection


class Timeouts(msgspec.Struct, frozen=True):
    """Seconds; see :class:`archive.config.TimeoutsConfig` for their meaning."""

    artim: float = 30.0
    network: float = 60.0
    dimse: float = 30.0
    connect: float = 10.0


class AssociationError(ArchiveError):
    code: ClassVar[str] = "net.association"


class AssociationRejected(AssociationError):
    """The acceptor answered A-ASSOCIATE-RJ (PS3.8 9.3.4)."""

    code: ClassVar[str] = "net.association.rejected"

    def __init__(self, rj: AAssociateRj) -> None:
        super().__init__(describe_reject(rj))
        self.rj = rj


class AssociationAborted(AssociationError):
    """The association ended by A-ABORT, A-P-ABORT or a lost connection."""

    code: ClassVar[str] = "net.association.aborted"


class DatasetEnded(AssociationAborted):
    """The association ended before the last fragment of a data set arrived."""

    code: ClassVar[str] = "net.association.dataset_ended"


class DatasetTooLarge(AssociationError):
    """A data set read whole was over its limit (the rest of it was read and dropped)."""

    code: ClassVar[str] = "net.association.dataset_too_large"


class AssociationTimeout(AssociationError):
    """A timer ran out (connect, ARTIM, DIMSE or network)."""

    code: ClassVar[str] = "net.association.timeout"


class MessageIds:
    """Message IDs for the requests we send on one association (PS3.7 9.1.1.1.1).

    1..65535, wrapping: Message ID is a US (PS3.7 E.1), and 0 is avoided.
    """

    __slots__ = ("last",)

    def __init__(self, last: int = 0) -> None:
        self.last = last

    def next(self) -> int:
        self.last = self.last % 0xFFFF + 1
        return self.last


#: Coalesced messages are written at the latest once this many bytes are queued.
COALESCE_BYTES = 64 * 1024
#: Messages and fragments :meth:`Association.receive` hands out from what was
#: read already before it lets the loop run others: a peer that sends requests
#: without waiting for their answers (breaking the operations window it agreed)
#: has a read-ahead of ~1 MiB buffered, ~13,000 C-ECHOs, which were served in
#: one go while every other association waited (1.3 s measured).
FAIR_TURN = 32


class Outcome(enum.Enum):
    OPEN = "open"
    RELEASED = "released"
    REJECTED = "rejected"
    ABORTED_BY_PEER = "aborted by peer"
    ABORTED_LOCALLY = "aborted"
    PROVIDER_ABORT = "provider abort"
    CONNECTION_LOST = "connection lost"
    TIMEOUT = "timed out"


#: What a DIMSE-level read can return besides a command or a data set fragment:
#: the peer asked to release (AReleaseRq) or the association is gone.
MessageEvent = CommandReceived | DatasetFragment | AReleaseRq | AAbort | ProviderAbort | Closed


class Association:
    """One association on one connection, in either role."""

    def __init__(self, conn: Connection, ul: UpperLayer, timeouts: Timeouts) -> None:
        self.conn = conn
        self.ul = ul
        self.timeouts = timeouts
        self.negotiated: Negotiated | None = None
        self.outcome = Outcome.OPEN
        self.detail = ""
        self.started = time.monotonic()
        self._assembler = MessageAssembler()
        self._pdvs: deque[Pdv] = deque()
        self._half_closed = False
        self._deadline_state: State | None = None
        self._deadline = 0.0
        #: Re-arm TCP_QUICKACK while a data set streams in (C-STORE, C-GET
        #: sub-operations). An SCU reading C-FIND matches turns it off: a
        #: setsockopt per small response was a tenth of its time.
        self.quickack_datasets = True
        #: Data set PDUs written to an open transport by :meth:`send_streaming`,
        #: ever: whether any of a message's data set went out (``scu/store.py``
        #: judges an abort by it; a chunk read is held back until the next arrives).
        self.dataset_writes = 0
        # One message at a time on the wire: PS3.8 9.3.5 lets no other message's
        # PDVs come between the fragments of one. Only C-GET has two senders
        # (responses and sub-operations), but the lock costs nothing uncontended.
        self._sending = asyncio.Lock()
        #: Bytes of coalesced messages not yet written, and the pending write.
        self._coalesced = 0
        self._flush_soon: asyncio.Handle | None = None
        #: Items received since this task last let the loop run others
        #: (FAIR_TURN); counted whether or not a read suspended meanwhile.
        self._turn = 0

    # ---- upper layer ---------------------------------------------------------------

    def _flush_coalesced(self) -> None:
        self._flush_soon = None
        self.flush()

    def flush(self) -> None:
        """Write what the machine queued, and carry out its close requests."""
        self._coalesced = 0
        if self.ul.has_output:
            self.conn.write(self.ul.data_to_send())
        if self.ul.should_close:
            self.conn.close()
        elif self.ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE and not self._half_closed:
            # Half-close rather than close: a close with unread input makes the
            # kernel send RST, which can destroy the A-ABORT/RJ/RP just written.
            self._half_closed = True
            transport = self.conn.transport
            if transport is not None and transport.can_write_eof() and not transport.is_closing():
                transport.write_eof()

    async def next_event(self, timeout: float | None = None) -> Event:
        """The next upper-layer indication, waiting as the state requires.

        Returns :class:`Closed` once the association no longer exists. ``timeout``
        overrides the established-state wait (the DIMSE timeout of an SCU).
        """
        ul = self.ul
        while True:
            event = ul.next_event()
            self.flush()
            self.conn.consumed(starved=event is NEED_DATA)
            if event is not NEED_DATA:
                self._note(event)
                return event
            if ul.state is State.STA1_IDLE:
                self.conn.close()
                return Closed()
            # Sta8 (the peer asked to release) runs no ARTIM (PS3.8 9.2): our
            # operation may still answer, and a C-GET's peer still sends its
            # C-STORE-RSPs (AR-7), so it waits as an established one does.
            idle = ul.state in _IDLE_STATES and not ul.artim_running
            if idle:
                # Idle timeout: restarts with every read (one into an unfinished
                # PDU's buffer too: Connection.wait_readable's per_read).
                wait = timeout if timeout is not None else self.timeouts.network
                self._deadline_state = None
            else:
                # ARTIM, or awaiting an association/release answer: a deadline
                # from entering the state, so a peer trickling bytes cannot
                # extend it.
                now = time.monotonic()
                if self._deadline_state is not ul.state:
                    self._deadline_state = ul.state
                    self._deadline = now + self.timeouts.artim
                wait = max(0.0, self._deadline - now)
            if wait > 0 and await self.conn.wait_readable(wait, per_read=idle):
                continue
            if ul.artim_running:
                ul.artim_expired()
            elif ul.state is State.STA5_AWAITING_ASSOCIATE_RESPONSE:
                # A peer that never answered our A-ASSOCIATE-RQ will not close
                # for us either: the A-ABORT goes out and the connection is
                # closed behind it, instead of ARTIM's wait in Sta13 doubling
                # the time a C-MOVE (or its C-CANCEL) waits for a dead peer.
                self.timed_out(f"no PDU within {wait:g} s")
                self.conn.close()
            else:
                self.timed_out(f"no PDU within {wait:g} s")

    def _note(self, event: Event) -> None:
        if type(event) is PDataTf:
            return
        if isinstance(event, AAbort):
            self._set_outcome(Outcome.ABORTED_BY_PEER, f"A-ABORT source {event.source}")
        elif isinstance(event, ProviderAbort):
            kind = Outcome.CONNECTION_LOST if event.reason is None else Outcome.PROVIDER_ABORT
            self._set_outcome(kind, event.detail)
        elif isinstance(event, AAssociateRj):
            self._set_outcome(Outcome.REJECTED, describe_reject(event))
        elif isinstance(event, AReleaseRp):
            self._set_outcome(Outcome.RELEASED)

    def _set_outcome(self, outcome: Outcome, detail: str = "") -> None:
        if self.outcome is Outcome.OPEN:
            self.outcome = outcome
            self.detail = detail

    # ---- DIMSE ----------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> MessageEvent:
        """The next command or data set fragment, or the end of the association."""
        if self._turn >= FAIR_TURN:
            # The others' turn (FAIR_TURN), before an item is taken: a read
            # cancelled here (the operation it raced ended) loses nothing.
            self._turn = 0
            await asyncio.sleep(0)
        while True:
            while self._pdvs:
                try:
                    item = self._assembler.receive(self._pdvs.popleft())
                except RemoteProtocolError as exc:
                    self._pdvs.clear()
                    self.abort_for(exc)
                    continue
                if item is not None:
                    if type(item) is CommandReceived:
                        if item.command.has_dataset and self.quickack_datasets:
                            self.conn.quickack()
                            self.conn.quickack_on_read = True
                    elif item.last:  # type: ignore[union-attr]
                        self.conn.quickack_on_read = False
                    self._turn += 1
                    return item
            event = await self.next_event(timeout)
            if isinstance(event, PDataTf):
                self._pdvs.extend(event.pdvs)
            elif isinstance(event, AReleaseRq | AAbort | ProviderAbort | Closed):
                return event
            # An AReleaseRp or association PDU here was already dealt with by the
            # machine (it aborts on anything unexpected); keep reading.

    async def fragments(self, timeout: float | None = None) -> AsyncIterator[memoryview]:
        """The fragments of the data set that follows the command just received.

        Raises :class:`DatasetEnded` if the association ends first.
        """
        while True:
            item = await self.receive(timeout)
            if type(item) is not DatasetFragment:
                raise DatasetEnded("the association ended in the middle of a data set")
            yield item.data
            if item.last:
                return

    async def read_dataset(self, limit: int, timeout: float | None = None) -> bytes:
        """That data set read whole: for small ones (identifiers, C-FIND matches).

        Past ``limit`` bytes the rest is read and dropped, then
        :class:`DatasetTooLarge` is raised, so the association stays usable.
        """
        parts: list[bytes] = []
        size = 0
        async for data in self.fragments(timeout):
            size += len(data)
            if size <= limit:
                parts.append(bytes(data))
        if size > limit:
            raise DatasetTooLarge(f"data set of {size} bytes, over {limit}")
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def abort_for(self, exc: RemoteProtocolError) -> None:
        """Abort because the peer broke PS3.7/PS3.8 above the PDU codec."""
        self._set_outcome(Outcome.PROVIDER_ABORT, str(exc))
        if self.ul.can_send_data or self.ul.state in _ABORTABLE:
            self.ul.send(AAbort(int(exc.abort[0]), int(exc.abort[1])))
        self.flush()

    async def send(
        self,
        context_id: int,
        command: Command,
        dataset: bytes | memoryview | None = None,
        *,
        coalesce: bool = False,
    ) -> None:
        """Send one DIMSE message on ``context_id``.

        ``coalesce``: leave the message queued until the sending task next yields
        to the event loop (or ``COALESCE_BYTES`` are queued), so that a burst of
        small messages, such as a page of C-FIND matches, goes out in one system
        call instead of one each. Order on the wire is unchanged.
        """
        assert self.negotiated is not None
        pdus = message_pdus(context_id, command, dataset, self.negotiated.peer_max_pdu)
        if coalesce and not self._sending.locked():
            self.ul.send_data(pdus)
            self._coalesced += sum(map(len, pdus))
            if self._coalesced >= COALESCE_BYTES:
                self.flush()
                await self._drain()  # flow control: a peer that reads nothing holds us
            elif self._flush_soon is None:
                self._flush_soon = asyncio.get_running_loop().call_soon(self._flush_coalesced)
            return
        if self._sending.locked():
            async with self._sending:
                self.ul.send_data(pdus)
                self.flush()
                await self._drain()
            return
        self.ul.send_data(pdus)
        self.flush()
        await self._drain()

    async def send_streaming(
        self,
        context_id: int,
        command: Command,
        chunks: AsyncIterator[bytes | memoryview],
    ) -> None:
        """Send a message whose data set comes as ``chunks`` (e.g. read from a file).

        One chunk of lookahead tells which is the last, so memory stays at two
        chunks whatever the data set's size; the transport's flow control
        (``drain``) paces the reads.
        """
        assert self.negotiated is not None
        max_pdu = self.negotiated.peer_max_pdu
        async with self._sending:
            # The command set goes out with the first data set PDUs: one write less.
            self.ul.send_data(command_pdus(context_id, command, max_pdu))
            pending: bytes | memoryview | None = None
            async for chunk in chunks:
                if pending is not None:
                    self.ul.send_data(dataset_pdus(context_id, pending, False, max_pdu))
                    self._write_dataset()
                    await self._drain()
                pending = chunk
            self.ul.send_data(dataset_pdus(context_id, pending or b"", True, max_pdu))
            self._write_dataset()
            await self._drain()

    def _write_dataset(self) -> None:
        # Counted only when it can reach the peer: a close seen meanwhile (the
        # peer's A-ABORT still unread) makes the write a no-op.
        if not self.conn.closed:
            self.dataset_writes += 1
        self.flush()

    async def _drain(self) -> None:
        """Flow control with the network timeout: a peer that stops reading is aborted."""
        try:
            await self.conn.drain(self.timeouts.network)
        except TimeoutError:
            self.timed_out("peer stopped reading")
            # Cut now: the A-ABORT cannot reach a peer that reads nothing, and
            # a close would wait for it to read what is queued.
            self.conn.abort()
            raise AssociationTimeout(f"peer read nothing for {self.timeouts.network:g} s") from None

    # ---- ending -----------------------------------------------------------------------

    async def release(self) -> None:
        """Requestor's A-RELEASE (PS3.8 7.2), release collisions included."""
        self.ul.send(AReleaseRq())
        while True:
            event = await self.next_event()
            if isinstance(event, AReleaseRp | Closed | AAbort | ProviderAbort):
                break
            if isinstance(event, AReleaseRq):
                # Release collision (AR-8): as requestor we answer first (AR-9).
                self.ul.send(AReleaseRp())
        self._set_outcome(Outcome.RELEASED)
        self.conn.close()

    def reject(self, rj: AAssociateRj) -> None:
        """Acceptor's A-ASSOCIATE-RJ (AE-8); the caller then waits for the close."""
        self.ul.send(rj)
        self._set_outcome(Outcome.REJECTED, describe_reject(rj))

    @property
    def release_requested(self) -> bool:
        """The peer asked to release (A-RELEASE indication) and awaits our answer."""
        return self.ul.state is State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE

    async def answer_release(self) -> None:
        """Acceptor's A-RELEASE response, then wait (ARTIM) for the peer to close."""
        self.ul.send(AReleaseRp())
        self._set_outcome(Outcome.RELEASED)
        await self.wait_closed()

    def abort(self, detail: str = "") -> None:
        """A-ABORT from the service user (AA-1), if the association still exists."""
        if self.ul.state in _ABORTABLE:
            self._set_outcome(Outcome.ABORTED_LOCALLY, detail)
            self.ul.send(AAbort(AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED))
        self.flush()

    def timed_out(self, detail: str) -> None:
        """A timer ran out (network, DIMSE): record it and send A-ABORT (AA-1).

        The outcome is set first so the association is logged as timed out, not
        as aborted.
        """
        self._set_outcome(Outcome.TIMEOUT, detail)
        self.abort(detail)

    async def wait_closed(self) -> None:
        """Run the machine until the transport is closed (bounded by ARTIM)."""
        while not isinstance(await self.next_event(), Closed):
            pass

    @property
    def duration(self) -> float:
        return time.monotonic() - self.started


#: States whose wait for the peer is an idle timeout (restarted by every read),
#: not a deadline from entering the state.
_IDLE_STATES = frozenset({State.STA6_ESTABLISHED, State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE})
_ABORTABLE = frozenset(State) - {
    State.STA1_IDLE,
    State.STA2_TRANSPORT_OPEN,
    State.STA13_AWAITING_TRANSPORT_CLOSE,
}

_RJ_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}
_RJ_SOURCES = {
    1: "service user",
    2: "service provider (ACSE)",
    3: "service provider (presentation)",
}


def describe_reject(rj: AAssociateRj) -> str:
    """Words for an A-ASSOCIATE-RJ, PS3.8 Table 9-21."""
    result = {1: "rejected-permanent", 2: "rejected-transient"}.get(
        rj.result, f"result {rj.result}"
    )
    source = _RJ_SOURCES.get(rj.source, f"source {rj.source}")
    reason = _RJ_REASONS.get((rj.source, rj.reason), f"reason {rj.reason}")
    return f"{result}, {source}: {reason}"
