"""The DICOM Upper Layer protocol machine, sans-IO (PS3.8 9.2, Table 9-10).

Theory of operation. One :class:`UpperLayer` object is one association, in either
role. The driver feeds it what happened on the transport (``connection_made``,
``receive_data``, ``artim_expired``) and the local user's primitives (``send``),
and pulls indications and confirmations out with ``next_event``. The machine never
touches a socket or a clock: bytes it must put on the wire collect in an outbox
(``data_to_send``); whether ARTIM runs is a flag (``artim_running``) whose deadline
the driver keeps; ``should_close`` says the transport is to be closed.

Events out are the received PDU records themselves (an ``AAssociateRq`` is the
A-ASSOCIATE indication, a ``PDataTf`` the P-DATA indication, and so on) plus
:class:`ProviderAbort` (A-P-ABORT indication) and :class:`Closed` (the transport
is gone and the association with it). The transition table below is Table 9-10
as data: one row per event, one action per state.

Framing keeps received chunks as they come and joins them only when a PDU spans
chunks, so a read that holds whole PDUs is decoded without any copy; P-DATA
values are memoryviews into those chunks, which the driver never writes again
(``bytes``, or read-only views of a buffer made for one PDU: ``framing.py``), and
stay valid after the machine moves on.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import msgspec

from archive.dicom.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RemoteProtocolError,
)
from archive.dicom.ul import codec
from archive.dicom.ul.pdata import P_DATA_TF, decode_p_data
from archive.dicom.ul.pdu import (
    AAbort,
    AAssociateAc,
    AAssociateRj,
    AAssociateRq,
    AReleaseRp,
    AReleaseRq,
    PDataTf,
    Pdu,
    PduType,
)

#: Bound on the variable field of PDUs other than P-DATA-TF. An A-ASSOCIATE-RQ
#: with 128 contexts of many transfer syntaxes and a user identity fits easily.
MAX_CONTROL_PDU_LENGTH = 1 << 20


class Role(enum.Enum):
    REQUESTOR = "requestor"
    ACCEPTOR = "acceptor"


class State(enum.IntEnum):
    """States of PS3.8 Table 9-10."""

    STA1_IDLE = 1
    STA2_TRANSPORT_OPEN = 2
    STA3_AWAITING_LOCAL_ASSOCIATE_RESPONSE = 3
    STA4_AWAITING_TRANSPORT_OPEN = 4
    STA5_AWAITING_ASSOCIATE_RESPONSE = 5
    STA6_ESTABLISHED = 6
    STA7_AWAITING_RELEASE_RP = 7
    STA8_AWAITING_LOCAL_RELEASE_RESPONSE = 8
    STA9_COLLISION_REQUESTOR_AWAITING_LOCAL_RESPONSE = 9
    STA10_COLLISION_ACCEPTOR_AWAITING_RELEASE_RP = 10
    STA11_COLLISION_REQUESTOR_AWAITING_RELEASE_RP = 11
    STA12_COLLISION_ACCEPTOR_AWAITING_LOCAL_RESPONSE = 12
    STA13_AWAITING_TRANSPORT_CLOSE = 13


class Evt(enum.IntEnum):
    """Events of PS3.8 Table 9-10."""

    EVT1_ASSOCIATE_RQ_LOCAL = 1
    EVT2_TRANSPORT_CONFIRM = 2
    EVT3_ASSOCIATE_AC_PDU = 3
    EVT4_ASSOCIATE_RJ_PDU = 4
    EVT5_TRANSPORT_INDICATION = 5
    EVT6_ASSOCIATE_RQ_PDU = 6
    EVT7_ASSOCIATE_ACCEPT_LOCAL = 7
    EVT8_ASSOCIATE_REJECT_LOCAL = 8
    EVT9_P_DATA_LOCAL = 9
    EVT10_P_DATA_PDU = 10
    EVT11_RELEASE_RQ_LOCAL = 11
    EVT12_RELEASE_RQ_PDU = 12
    EVT13_RELEASE_RP_PDU = 13
    EVT14_RELEASE_RSP_LOCAL = 14
    EVT15_ABORT_LOCAL = 15
    EVT16_ABORT_PDU = 16
    EVT17_TRANSPORT_CLOSED = 17
    EVT18_ARTIM_EXPIRED = 18
    EVT19_INVALID_PDU = 19


class Action(enum.Enum):
    """Actions of PS3.8 Table 9-10 (9.2.2); values are the standard's names."""

    AE_1 = "AE-1"  # issue transport connect -> Sta4
    AE_2 = "AE-2"  # send A-ASSOCIATE-RQ -> Sta5
    AE_3 = "AE-3"  # A-ASSOCIATE confirmation (accept) -> Sta6
    AE_4 = "AE-4"  # A-ASSOCIATE confirmation (reject), close -> Sta1
    AE_5 = "AE-5"  # transport connection response, start ARTIM -> Sta2
    AE_6 = "AE-6"  # stop ARTIM, A-ASSOCIATE indication -> Sta3
    AE_7 = "AE-7"  # send A-ASSOCIATE-AC -> Sta6
    AE_8 = "AE-8"  # send A-ASSOCIATE-RJ, start ARTIM -> Sta13
    DT_1 = "DT-1"  # send P-DATA-TF -> Sta6
    DT_2 = "DT-2"  # P-DATA indication -> Sta6
    AR_1 = "AR-1"  # send A-RELEASE-RQ -> Sta7
    AR_2 = "AR-2"  # A-RELEASE indication -> Sta8
    AR_3 = "AR-3"  # A-RELEASE confirmation, close -> Sta1
    AR_4 = "AR-4"  # send A-RELEASE-RP, start ARTIM -> Sta13
    AR_5 = "AR-5"  # stop ARTIM -> Sta1
    AR_6 = "AR-6"  # P-DATA indication -> Sta7
    AR_7 = "AR-7"  # send P-DATA-TF -> Sta8
    AR_8 = "AR-8"  # A-RELEASE indication (collision) -> Sta9 or Sta10
    AR_9 = "AR-9"  # send A-RELEASE-RP -> Sta11
    AR_10 = "AR-10"  # A-RELEASE confirmation -> Sta12
    AA_1 = "AA-1"  # send A-ABORT, (re)start ARTIM -> Sta13
    AA_2 = "AA-2"  # stop ARTIM, close -> Sta1
    AA_3 = "AA-3"  # A-ABORT or A-P-ABORT indication, close -> Sta1
    AA_4 = "AA-4"  # A-P-ABORT indication -> Sta1
    AA_5 = "AA-5"  # stop ARTIM -> Sta1
    AA_6 = "AA-6"  # ignore PDU -> Sta13
    AA_7 = "AA-7"  # send A-ABORT -> Sta13
    AA_8 = "AA-8"  # send A-ABORT (provider), A-P-ABORT indication, start ARTIM -> Sta13


def _row(default: Action | None = None, **cells: Action) -> dict[State, Action]:
    """One event's row: ``sta2=AA_1`` style cells, ``default`` for Sta3 and Sta5-12."""
    row: dict[State, Action] = {}
    if default is not None:
        for state in State:
            if state is State.STA3_AWAITING_LOCAL_ASSOCIATE_RESPONSE or 5 <= state <= 12:
                row[state] = default
    for name, action in cells.items():
        row[State(int(name[3:]))] = action
    return row


A = Action
#: PS3.8 Table 9-10. A missing cell is an event that cannot happen in that state:
#: for a local primitive it is our bug (LocalProtocolError).
TRANSITIONS: dict[Evt, dict[State, Action]] = {
    Evt.EVT1_ASSOCIATE_RQ_LOCAL: _row(sta1=A.AE_1),
    Evt.EVT2_TRANSPORT_CONFIRM: _row(sta4=A.AE_2),
    Evt.EVT3_ASSOCIATE_AC_PDU: _row(A.AA_8, sta2=A.AA_1, sta5=A.AE_3, sta13=A.AA_6),
    Evt.EVT4_ASSOCIATE_RJ_PDU: _row(A.AA_8, sta2=A.AA_1, sta5=A.AE_4, sta13=A.AA_6),
    Evt.EVT5_TRANSPORT_INDICATION: _row(sta1=A.AE_5),
    Evt.EVT6_ASSOCIATE_RQ_PDU: _row(A.AA_8, sta2=A.AE_6, sta13=A.AA_7),
    Evt.EVT7_ASSOCIATE_ACCEPT_LOCAL: _row(sta3=A.AE_7),
    Evt.EVT8_ASSOCIATE_REJECT_LOCAL: _row(sta3=A.AE_8),
    Evt.EVT9_P_DATA_LOCAL: _row(sta6=A.DT_1, sta8=A.AR_7),
    Evt.EVT10_P_DATA_PDU: _row(A.AA_8, sta2=A.AA_1, sta6=A.DT_2, sta7=A.AR_6, sta13=A.AA_6),
    Evt.EVT11_RELEASE_RQ_LOCAL: _row(sta6=A.AR_1),
    Evt.EVT12_RELEASE_RQ_PDU: _row(A.AA_8, sta2=A.AA_1, sta6=A.AR_2, sta7=A.AR_8, sta13=A.AA_6),
    Evt.EVT13_RELEASE_RP_PDU: _row(
        A.AA_8, sta2=A.AA_1, sta7=A.AR_3, sta10=A.AR_10, sta11=A.AR_3, sta13=A.AA_6
    ),
    Evt.EVT14_RELEASE_RSP_LOCAL: _row(sta8=A.AR_4, sta9=A.AR_9, sta12=A.AR_4),
    Evt.EVT15_ABORT_LOCAL: _row(A.AA_1, sta4=A.AA_2),
    Evt.EVT16_ABORT_PDU: _row(A.AA_3, sta2=A.AA_2, sta13=A.AA_2),
    Evt.EVT17_TRANSPORT_CLOSED: _row(A.AA_4, sta2=A.AA_5, sta4=A.AA_4, sta13=A.AR_5),
    Evt.EVT18_ARTIM_EXPIRED: _row(sta2=A.AA_2, sta13=A.AA_2),
    Evt.EVT19_INVALID_PDU: _row(A.AA_8, sta2=A.AA_1, sta13=A.AA_7),
}
del A

_PDU_EVENTS: dict[int, Evt] = {
    PduType.A_ASSOCIATE_RQ: Evt.EVT6_ASSOCIATE_RQ_PDU,
    PduType.A_ASSOCIATE_AC: Evt.EVT3_ASSOCIATE_AC_PDU,
    PduType.A_ASSOCIATE_RJ: Evt.EVT4_ASSOCIATE_RJ_PDU,
    PduType.P_DATA_TF: Evt.EVT10_P_DATA_PDU,
    PduType.A_RELEASE_RQ: Evt.EVT12_RELEASE_RQ_PDU,
    PduType.A_RELEASE_RP: Evt.EVT13_RELEASE_RP_PDU,
    PduType.A_ABORT: Evt.EVT16_ABORT_PDU,
}

_LOCAL_EVENTS: dict[type, Evt] = {
    AAssociateRq: Evt.EVT1_ASSOCIATE_RQ_LOCAL,
    AAssociateAc: Evt.EVT7_ASSOCIATE_ACCEPT_LOCAL,
    AAssociateRj: Evt.EVT8_ASSOCIATE_REJECT_LOCAL,
    PDataTf: Evt.EVT9_P_DATA_LOCAL,
    AReleaseRq: Evt.EVT11_RELEASE_RQ_LOCAL,
    AReleaseRp: Evt.EVT14_RELEASE_RSP_LOCAL,
    AAbort: Evt.EVT15_ABORT_LOCAL,
}


_OPENING_EVENTS = frozenset({Evt.EVT1_ASSOCIATE_RQ_LOCAL, Evt.EVT5_TRANSPORT_INDICATION})


class ProviderAbort(msgspec.Struct, frozen=True):
    """A-P-ABORT indication (PS3.8 7.4): the provider ended the association.

    ``reason`` is the A-ABORT reason we sent (after a protocol error of the peer)
    or None when the transport closed under an open association.
    """

    reason: int | None = None
    detail: str = ""


class Closed(msgspec.Struct, frozen=True):
    """The transport connection is closed; the machine is back in Sta1."""


class _NeedData(enum.Enum):
    NEED_DATA = "NEED_DATA"


#: ``next_event`` returns this when it has no complete PDU to report.
NEED_DATA = _NeedData.NEED_DATA

Event = (
    AAssociateRq
    | AAssociateAc
    | AAssociateRj
    | PDataTf
    | AReleaseRq
    | AReleaseRp
    | AAbort
    | ProviderAbort
    | Closed
)


class UpperLayer:
    """One association's upper-layer state machine (PS3.8 9.2), either role.

    ``max_pdu_length`` is the Maximum Length Received we advertise: a P-DATA-TF
    whose variable field exceeds it is a protocol error (0 = no limit).
    """

    def __init__(self, role: Role, max_pdu_length: int) -> None:
        self.role = role
        self.state = State.STA1_IDLE
        self.max_pdu_length = max_pdu_length
        self.artim_running = False
        self.should_close = False
        self._outbox: list[bytes | memoryview] = []
        self._events: list[Event] = []
        self._parts: list[bytes | memoryview] = []
        self._pos = 0  # read offset into self._parts[0]
        self._have = 0  # unread bytes over all parts
        self._eof = False
        self._eof_reported = False
        self._framing_broken = False
        self._pending_rq: AAssociateRq | None = None
        self._used = False  # one machine is one association: Sta1 is not re-entered

    # ---- transport inputs -------------------------------------------------

    def connection_made(self) -> None:
        """Transport connection indication (acceptor, Evt5) or confirm (requestor, Evt2)."""
        if self.role is Role.ACCEPTOR:
            self._handle(Evt.EVT5_TRANSPORT_INDICATION, local=True)
        else:
            self._handle(Evt.EVT2_TRANSPORT_CONFIRM, local=True)

    def receive_data(self, data: bytes | memoryview) -> None:
        """Bytes from the transport; ``b""`` means the peer closed it (Evt17)."""
        if not data:
            self._eof = True
        elif not self._framing_broken:
            self._parts.append(data)
            self._have += len(data)

    def artim_expired(self) -> None:
        """The driver's ARTIM deadline passed (Evt18)."""
        if self.artim_running:
            self._handle(Evt.EVT18_ARTIM_EXPIRED, local=True)

    # ---- local user primitives ------------------------------------------------

    def send(self, primitive: Pdu) -> None:
        """Issue a local request/response primitive; its bytes join the outbox.

        A PDataTf goes through here too, but the hot path uses :meth:`send_data`
        with already framed P-DATA-TF PDUs.
        """
        evt = _LOCAL_EVENTS.get(type(primitive))
        if evt is None:
            raise LocalProtocolError(f"{type(primitive).__name__} is not a local primitive")
        self._handle(evt, local=True, pdu=primitive)

    def send_data(self, pdus: Sequence[bytes | memoryview]) -> None:
        """Queue framed P-DATA-TF PDUs (from the DIMSE fragmenter): Evt9 without re-encoding."""
        if self.state is State.STA6_ESTABLISHED or (
            self.state is State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE
        ):
            self._outbox.extend(pdus)
        else:
            raise LocalProtocolError(f"P-DATA request in {self.state.name}")

    @property
    def buffered(self) -> int:
        """Received bytes not yet framed into PDUs (the driver's backpressure gauge)."""
        return self._have

    @property
    def receiving_data(self) -> bool:
        """The peer may send P-DATA-TF now (established, or awaiting its release reply)."""
        return self.state in (State.STA6_ESTABLISHED, State.STA7_AWAITING_RELEASE_RP)

    @property
    def can_send_data(self) -> bool:
        return self.state in (State.STA6_ESTABLISHED, State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE)

    @property
    def has_output(self) -> bool:
        """Bytes are queued for the transport."""
        return bool(self._outbox)

    def data_to_send(self) -> list[bytes | memoryview]:
        """Take everything queued for the transport, in order."""
        out, self._outbox = self._outbox, []
        return out

    # ---- events out -------------------------------------------------------------

    def next_event(self) -> Event | _NeedData:
        """The next indication/confirmation, or NEED_DATA until more bytes arrive."""
        while not self._events:
            if not self._step():
                return NEED_DATA
        return self._events.pop(0)

    def _step(self) -> bool:
        """Consume one PDU (or the end of the stream). False if nothing could be done."""
        if self.state is State.STA1_IDLE:
            return False
        if self._framing_broken:
            self._drop_input()
        else:
            try:
                frame = self._next_frame()
            except RemoteProtocolError as exc:
                self._framing_broken = True
                self._drop_input()
                self._protocol_error(exc)
                return True
            if frame is not None:
                self._receive_pdu(*frame)
                return True
        if self._eof and not self._eof_reported:
            self._eof_reported = True
            self._handle(Evt.EVT17_TRANSPORT_CLOSED, local=False)
            return True
        return False

    def _receive_pdu(self, pdu_type: int, body: memoryview) -> None:
        if pdu_type == P_DATA_TF and self.state is State.STA6_ESTABLISHED:
            # The hot path, DT-2 without the table walk: same outcome as
            # decode_body + _handle(Evt10) in Sta6.
            try:
                pdvs = decode_p_data(body)
            except RemoteProtocolError as exc:
                self._protocol_error(exc)
                return
            self._events.append(PDataTf(tuple(pdvs)))
            return
        try:
            pdu = codec.decode_body(pdu_type, body)
        except RemoteProtocolError as exc:
            self._protocol_error(exc)
            return
        self._handle(_PDU_EVENTS[pdu_type], local=False, pdu=pdu)

    def _protocol_error(self, exc: RemoteProtocolError) -> None:
        if exc.reject is not None and self.state is State.STA2_TRANSPORT_OPEN:
            # AE-6, second branch: a request the provider cannot accept (e.g. an
            # AE title that is not ASCII) is answered with A-ASSOCIATE-RJ, not an
            # abort; then ARTIM runs until the peer closes (Sta13).
            result, source, reason = exc.reject
            self._queue(AAssociateRj(int(result), int(source), int(reason)))
            self.artim_running = True
            self._go(State.STA13_AWAITING_TRANSPORT_CLOSE)
            return
        self._handle(Evt.EVT19_INVALID_PDU, local=False, error=exc)

    # ---- framing ------------------------------------------------------------------

    def _next_frame(self) -> tuple[int, memoryview] | None:
        if self._have < codec.HEADER_LENGTH:
            return None
        self._contiguous(codec.HEADER_LENGTH)
        pdu_type, length = codec.parse_header(self._parts[0], self._pos)
        limit = self.max_pdu_length if pdu_type == P_DATA_TF else MAX_CONTROL_PDU_LENGTH
        if limit and length > limit:
            raise RemoteProtocolError(
                f"PDU type 0x{pdu_type:02x} of {length} bytes exceeds our maximum {limit}",
                abort=(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER),
            )
        total = codec.HEADER_LENGTH + length
        if self._have < total:
            return None
        self._contiguous(total)
        start = self._pos + codec.HEADER_LENGTH
        body = memoryview(self._parts[0])[start : self._pos + total]
        self._pos += total
        self._have -= total
        if self._pos == len(self._parts[0]):
            del self._parts[0]
            self._pos = 0
        return pdu_type, body

    def _contiguous(self, n: int) -> None:
        """Make the first part hold at least ``n`` unread bytes (joining only if needed)."""
        first = self._parts[0]
        if len(first) - self._pos >= n:
            return
        self._parts = [b"".join([memoryview(first)[self._pos :], *self._parts[1:]])]
        self._pos = 0

    def _drop_input(self) -> None:
        self._parts.clear()
        self._pos = 0
        self._have = 0

    # ---- transitions ------------------------------------------------------------

    def _handle(
        self,
        evt: Evt,
        *,
        local: bool,
        pdu: Pdu | None = None,
        error: RemoteProtocolError | None = None,
    ) -> None:
        if evt is Evt.EVT1_ASSOCIATE_RQ_LOCAL and self.role is not Role.REQUESTOR:
            raise LocalProtocolError("only a requestor issues an A-ASSOCIATE request")
        if evt in _OPENING_EVENTS:
            if self._used:
                raise LocalProtocolError("an UpperLayer serves one association; make a new one")
            self._used = True
        action = TRANSITIONS[evt].get(self.state)
        if action is None:
            if local:
                raise LocalProtocolError(f"{evt.name} is not allowed in {self.state.name}")
            # A PDU event the table has no cell for can only be one where there is
            # no association (Sta1, Sta4): nothing to answer.
            return
        getattr(self, "_" + action.name.lower())(pdu, error)

    def _go(self, state: State) -> None:
        self.state = state

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _queue(self, pdu: Pdu) -> None:
        self._outbox.append(codec.encode(pdu))

    def _close(self) -> None:
        self.should_close = True

    # Association establishment, PS3.8 9.2.2 Table 9-6.
    def _ae_1(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        assert isinstance(pdu, AAssociateRq)
        self._pending_rq = pdu
        self._go(State.STA4_AWAITING_TRANSPORT_OPEN)

    def _ae_2(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        if self._pending_rq is None:
            raise LocalProtocolError("transport confirmed without an A-ASSOCIATE request")
        self._queue(self._pending_rq)
        self._go(State.STA5_AWAITING_ASSOCIATE_RESPONSE)

    def _ae_3(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        assert isinstance(pdu, AAssociateAc)
        self._emit(pdu)
        self._go(State.STA6_ESTABLISHED)

    def _ae_4(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        assert isinstance(pdu, AAssociateRj)
        self._emit(pdu)
        self._close()
        self._go(State.STA1_IDLE)

    def _ae_5(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        self.artim_running = True
        self._go(State.STA2_TRANSPORT_OPEN)

    def _ae_6(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        # Whether the request is acceptable is the user's policy (negotiation): the
        # provider passes every well-formed request up as the indication.
        assert isinstance(pdu, AAssociateRq)
        self.artim_running = False
        self._emit(pdu)
        self._go(State.STA3_AWAITING_LOCAL_ASSOCIATE_RESPONSE)

    def _ae_7(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        assert pdu is not None
        self._queue(pdu)
        self._go(State.STA6_ESTABLISHED)

    def _ae_8(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        assert pdu is not None
        self._queue(pdu)
        self.artim_running = True
        self._go(State.STA13_AWAITING_TRANSPORT_CLOSE)

    # Data transfer, Table 9-7.
    def _dt_1(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        assert pdu is not None
        self._queue(pdu)
        self._go(State.STA6_ESTABLISHED)

    def _dt_2(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        assert isinstance(pdu, PDataTf)
        self._emit(pdu)

    # Release, Table 9-8.
    def _ar_1(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        self._queue(AReleaseRq())
        self._go(State.STA7_AWAITING_RELEASE_RP)

    def _ar_2(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        self._emit(AReleaseRq())
        self._go(State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE)

    def _ar_3(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        self._emit(AReleaseRp())
        self._close()
        self._go(State.STA1_IDLE)

    def _ar_4(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        self._queue(AReleaseRp())
        self.artim_running = True
        self._go(State.STA13_AWAITING_TRANSPORT_CLOSE)

    def _ar_5(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        self.artim_running = False
        self._emit(Closed())
        self._go(State.STA1_IDLE)

    def _ar_6(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        assert isinstance(pdu, PDataTf)
        self._emit(pdu)

    def _ar_7(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        assert pdu is not None
        self._queue(pdu)

    def _ar_8(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        self._emit(AReleaseRq())
        if self.role is Role.REQUESTOR:
            self._go(State.STA9_COLLISION_REQUESTOR_AWAITING_LOCAL_RESPONSE)
        else:
            self._go(State.STA10_COLLISION_ACCEPTOR_AWAITING_RELEASE_RP)

    def _ar_9(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        self._queue(AReleaseRp())
        self._go(State.STA11_COLLISION_REQUESTOR_AWAITING_RELEASE_RP)

    def _ar_10(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        self._emit(AReleaseRp())
        self._go(State.STA12_COLLISION_ACCEPTOR_AWAITING_LOCAL_RESPONSE)

    # Abort, Table 9-9.
    def _aa_1(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        if isinstance(pdu, AAbort):
            abort = pdu
        elif error is not None:
            abort = AAbort(int(error.abort[0]), int(error.abort[1]))
        else:
            # An unexpected PDU in Sta2: the standard sends the A-ABORT; the
            # reason is ours to state, and "unexpected PDU" is the true one.
            abort = AAbort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU)
        self._queue(abort)
        self.artim_running = True
        self._go(State.STA13_AWAITING_TRANSPORT_CLOSE)

    def _aa_2(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        self.artim_running = False
        self._close()
        if self.state is not State.STA4_AWAITING_TRANSPORT_OPEN:
            self._emit(Closed())
        self._go(State.STA1_IDLE)

    def _aa_3(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        assert isinstance(pdu, AAbort)
        if pdu.source == AbortSource.SERVICE_PROVIDER:
            self._emit(ProviderAbort(pdu.reason, "peer's provider aborted"))
        else:
            self._emit(pdu)
        self._close()
        self._go(State.STA1_IDLE)

    def _aa_4(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        self.artim_running = False
        self._emit(ProviderAbort(None, "transport connection closed"))
        self._go(State.STA1_IDLE)

    def _aa_5(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        self.artim_running = False
        self._emit(Closed())
        self._go(State.STA1_IDLE)

    def _aa_6(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        pass

    def _aa_7(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        if error is not None:
            self._queue(AAbort(int(error.abort[0]), int(error.abort[1])))
        else:
            self._queue(AAbort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU))

    def _aa_8(self, pdu: Pdu | None, error: RemoteProtocolError | None) -> None:
        if error is not None:
            reason = int(error.abort[1])
            detail = str(error)
        else:
            reason = AbortReason.UNEXPECTED_PDU
            detail = f"unexpected {type(pdu).__name__} in {self.state.name}"
        self._queue(AAbort(AbortSource.SERVICE_PROVIDER, reason))
        self._emit(ProviderAbort(reason, detail))
        self.artim_running = True
        self._go(State.STA13_AWAITING_TRANSPORT_CLOSE)
