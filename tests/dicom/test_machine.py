# mypy: disable-error-code="comparison-overlap"
# (the machine's methods change ul.state behind mypy's narrowing of it)
"""The upper-layer machine (PS3.8 9.2) driven event by event: no sockets, no sleeps.

Every test feeds the machine what a driver would (transport events, bytes, local
primitives) and checks what comes out: the events, the state, the ARTIM flag,
``should_close`` and the exact PDUs in the outbox. The helpers here are shared
with ``test_machine_table`` and ``test_machine_properties``.

The "regression" tests at the end pin down disagreements with PS3.8 or with the
machine's own contract found while writing these tests (since fixed).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import pytest

from archive.dicom.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RejectReason,
    RejectResult,
    RejectSource,
)
from archive.dicom.ul import codec
from archive.dicom.ul.machine import (
    MAX_CONTROL_PDU_LENGTH,
    NEED_DATA,
    Closed,
    Event,
    ProviderAbort,
    Role,
    State,
    UpperLayer,
)
from archive.dicom.ul.pdata import MCH_COMMAND, MCH_LAST, Pdv, encode_p_data, p_data_header
from archive.dicom.ul.pdu import (
    AAbort,
    AAssociateAc,
    AAssociateRj,
    AAssociateRq,
    AReleaseRp,
    AReleaseRq,
    ContextResult,
    PDataTf,
    Pdu,
    PresentationContextAc,
    PresentationContextRq,
    UserInformation,
)

# ---- fixtures shared with the other machine tests ------------------------------------

MAX_PDU = 16384
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.9.9999.1"

RQ = AAssociateRq(
    called_ae="ARCHIVE",
    calling_ae="MODALITY",
    contexts=(PresentationContextRq(1, VERIFICATION, (IMPLICIT_VR_LE,)),),
    user_info=UserInformation(max_length=MAX_PDU, implementation_class_uid=IMPLEMENTATION_UID),
)
AC = AAssociateAc(
    called_ae="ARCHIVE",
    calling_ae="MODALITY",
    contexts=(PresentationContextAc(1, ContextResult.ACCEPTANCE, IMPLICIT_VR_LE),),
    user_info=UserInformation(max_length=MAX_PDU, implementation_class_uid=IMPLEMENTATION_UID),
)
RJ = AAssociateRj(RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.NO_REASON_GIVEN)

RQ_BYTES = codec.encode(RQ)
AC_BYTES = codec.encode(AC)
# A-ASSOCIATE-RJ, PS3.8 Table 9-21: type 03, reserved, length 4, reserved, result 1
# (permanent), source 1 (service user), reason 1 (no reason given).
RJ_BYTES = bytes.fromhex("03 00 00000004 00 01 01 01")
# A-RELEASE-RQ / A-RELEASE-RP, PS3.8 Tables 9-24/9-25: type, reserved, length 4, 4 reserved.
RELEASE_RQ_BYTES = bytes.fromhex("05 00 00000004 00000000")
RELEASE_RP_BYTES = bytes.fromhex("06 00 00000004 00000000")
# One P-DATA-TF with two PDVs on context 1: a last command fragment, then a first
# dataset fragment (PS3.8 9.3.5 and Annex E.2).
P_DATA_BYTES = bytes.fromhex(
    "04 00 00000014"  # P-DATA-TF, length 20
    "00000006 01 03 01020304"  # PDV length 6, context 1, command+last, 4 bytes
    "00000006 01 00 05060708"  # PDV length 6, context 1, dataset, not last
)
# A PDU type no version of PS3.8 defines (Table 9-11 stops at 07H).
GARBAGE = bytes.fromhex("0a 00 00000002 ffff")


def abort_bytes(source: int, reason: int) -> bytes:
    """A-ABORT PDU, PS3.8 Table 9-26: type 07, reserved, length 4, 2 reserved, source, reason."""
    return bytes((0x07, 0, 0, 0, 0, 4, 0, 0, source, reason))


def split_pdus(data: bytes) -> list[bytes]:
    """Cut a byte stream into whole PDUs by their headers (PS3.8 9.3.1)."""
    pdus = []
    offset = 0
    while offset < len(data):
        assert len(data) - offset >= 6, f"truncated PDU header at {offset}"
        (length,) = struct.unpack_from(">L", data, offset + 2)
        end = offset + 6 + length
        assert end <= len(data), f"truncated PDU at {offset}"
        pdus.append(data[offset:end])
        offset = end
    return pdus


def wire(ul: UpperLayer) -> bytes:
    """Everything queued for the transport, joined, and the outbox emptied."""
    return b"".join(bytes(part) for part in ul.data_to_send())


def sent(ul: UpperLayer) -> list[Pdu]:
    """The PDUs queued for the transport, decoded with the codec."""
    return [codec.decode(pdu) for pdu in split_pdus(wire(ul))]


def drain(ul: UpperLayer) -> list[Event]:
    """Every event the machine can report now."""
    events: list[Event] = []
    while (event := ul.next_event()) is not NEED_DATA:
        assert not isinstance(event, type(NEED_DATA))
        events.append(event)
    return events


def feed(ul: UpperLayer, *chunks: bytes) -> list[Event]:
    """Receive ``chunks`` one by one and return the events they raised."""
    events: list[Event] = []
    for chunk in chunks:
        ul.receive_data(chunk)
        events.extend(drain(ul))
    return events


def comparable(events: Iterable[object]) -> list[object]:
    """Events with P-DATA values as bytes, so equality does not hinge on memoryviews."""
    out: list[object] = []
    for event in events:
        if isinstance(event, PDataTf):
            out.append(("P-DATA", [(p.context_id, p.control, bytes(p.data)) for p in event.pdvs]))
        else:
            out.append(event)
    return out


def acceptor_in(state: State) -> UpperLayer:
    """A fresh acceptor driven into ``state`` (Sta1-3, 6-8, 10, 12, 13), outbox and events taken."""
    ul = UpperLayer(Role.ACCEPTOR, MAX_PDU)
    if state is State.STA1_IDLE:
        return ul
    ul.connection_made()
    if state is not State.STA2_TRANSPORT_OPEN:
        assert feed(ul, RQ_BYTES) == [RQ]
    if state in (State.STA2_TRANSPORT_OPEN, State.STA3_AWAITING_LOCAL_ASSOCIATE_RESPONSE):
        return _settled(ul, state)
    ul.send(AC)
    if state is State.STA13_AWAITING_TRANSPORT_CLOSE:
        assert feed(ul, RELEASE_RQ_BYTES) == [AReleaseRq()]
        ul.send(AReleaseRp())
    elif state is State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE:
        assert feed(ul, RELEASE_RQ_BYTES) == [AReleaseRq()]
    elif state is not State.STA6_ESTABLISHED:
        ul.send(AReleaseRq())
        if state is not State.STA7_AWAITING_RELEASE_RP:
            assert feed(ul, RELEASE_RQ_BYTES) == [AReleaseRq()]  # collision: Sta10
            if state is State.STA12_COLLISION_ACCEPTOR_AWAITING_LOCAL_RESPONSE:
                assert feed(ul, RELEASE_RP_BYTES) == [AReleaseRp()]
    return _settled(ul, state)


def requestor_in(state: State) -> UpperLayer:
    """A fresh requestor driven into ``state`` (Sta1, 4-7, 9, 11, 13), outbox and events taken."""
    ul = UpperLayer(Role.REQUESTOR, MAX_PDU)
    if state is State.STA1_IDLE:
        return ul
    ul.send(RQ)
    if state is State.STA4_AWAITING_TRANSPORT_OPEN:
        return _settled(ul, state)
    ul.connection_made()
    if state is State.STA5_AWAITING_ASSOCIATE_RESPONSE:
        return _settled(ul, state)
    assert feed(ul, AC_BYTES) == [AC]
    if state is State.STA13_AWAITING_TRANSPORT_CLOSE:
        ul.send(AAbort(AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED))
    elif state is State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE:
        assert feed(ul, RELEASE_RQ_BYTES) == [AReleaseRq()]
    elif state is not State.STA6_ESTABLISHED:
        ul.send(AReleaseRq())
        if state is not State.STA7_AWAITING_RELEASE_RP:
            assert feed(ul, RELEASE_RQ_BYTES) == [AReleaseRq()]  # collision: Sta9
            if state is State.STA11_COLLISION_REQUESTOR_AWAITING_RELEASE_RP:
                ul.send(AReleaseRp())
    return _settled(ul, state)


def _settled(ul: UpperLayer, state: State) -> UpperLayer:
    assert ul.state is state, (ul.state, state)
    ul.data_to_send()
    assert drain(ul) == []
    return ul


#: Which role can be in which state: Sta2/3 are the acceptor's, Sta4/5 the
#: requestor's, Sta9/11 and Sta10/12 the two sides of a release collision (AR-8).
REACHABLE: list[tuple[Role, State]] = [
    *((Role.ACCEPTOR, s) for s in State if s.value in (1, 2, 3, 6, 7, 8, 10, 12, 13)),
    *((Role.REQUESTOR, s) for s in State if s.value in (1, 4, 5, 6, 7, 8, 9, 11, 13)),
]


def machine_in(role: Role, state: State) -> UpperLayer:
    return acceptor_in(state) if role is Role.ACCEPTOR else requestor_in(state)


# ---- whole lives --------------------------------------------------------------------


def test_acceptor_full_life() -> None:
    ul = UpperLayer(Role.ACCEPTOR, MAX_PDU)
    assert ul.state is State.STA1_IDLE
    assert not ul.artim_running
    assert not ul.should_close

    ul.connection_made()  # Evt5 -> AE-5
    assert ul.state is State.STA2_TRANSPORT_OPEN
    assert ul.artim_running
    assert ul.next_event() is NEED_DATA
    assert wire(ul) == b""

    ul.receive_data(RQ_BYTES)  # Evt6 -> AE-6
    assert ul.buffered == len(RQ_BYTES)
    assert ul.next_event() == RQ
    assert ul.next_event() is NEED_DATA
    assert ul.buffered == 0
    assert ul.state is State.STA3_AWAITING_LOCAL_ASSOCIATE_RESPONSE
    assert not ul.artim_running
    assert not ul.can_send_data

    ul.send(AC)  # Evt7 -> AE-7
    assert ul.state is State.STA6_ESTABLISHED
    assert wire(ul) == AC_BYTES
    assert codec.decode(AC_BYTES) == AC
    assert ul.can_send_data

    ul.receive_data(P_DATA_BYTES)  # Evt10 -> DT-2
    event = ul.next_event()
    assert isinstance(event, PDataTf)
    assert [(p.context_id, p.control) for p in event.pdvs] == [(1, MCH_COMMAND | MCH_LAST), (1, 0)]
    assert all(isinstance(p.data, memoryview) for p in event.pdvs)
    assert [bytes(p.data) for p in event.pdvs] == [b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"]
    assert event.pdvs[0].is_command
    assert event.pdvs[0].is_last
    assert ul.state is State.STA6_ESTABLISHED

    reply = encode_p_data(1, MCH_COMMAND | MCH_LAST, b"\xaa\xbb")
    ul.send_data([reply])  # Evt9 -> DT-1, already framed
    assert wire(ul) == reply

    ul.receive_data(RELEASE_RQ_BYTES)  # Evt12 -> AR-2
    assert drain(ul) == [AReleaseRq()]
    assert ul.state is State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE
    assert ul.can_send_data  # AR-7: a pending response may still go out

    ul.send(AReleaseRp())  # Evt14 -> AR-4
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert ul.artim_running
    assert wire(ul) == RELEASE_RP_BYTES
    assert not ul.should_close  # the requestor closes (PS3.8 9.1.4 a)

    ul.receive_data(b"")  # Evt17 -> AR-5
    assert drain(ul) == [Closed()]
    assert ul.state is State.STA1_IDLE
    assert not ul.artim_running
    assert ul.next_event() is NEED_DATA


def test_requestor_full_life() -> None:
    ul = UpperLayer(Role.REQUESTOR, MAX_PDU)
    ul.send(RQ)  # Evt1 -> AE-1: nothing to send until the transport is open
    assert ul.state is State.STA4_AWAITING_TRANSPORT_OPEN
    assert wire(ul) == b""

    ul.connection_made()  # Evt2 -> AE-2
    assert ul.state is State.STA5_AWAITING_ASSOCIATE_RESPONSE
    assert wire(ul) == RQ_BYTES
    assert not ul.artim_running

    assert feed(ul, AC_BYTES) == [AC]  # Evt3 -> AE-3
    assert ul.state is State.STA6_ESTABLISHED

    ul.send(PDataTf((Pdv(1, MCH_COMMAND | MCH_LAST, memoryview(b"\x01\x02")),)))  # DT-1
    assert wire(ul) == encode_p_data(1, MCH_COMMAND | MCH_LAST, b"\x01\x02")

    ul.send(AReleaseRq())  # Evt11 -> AR-1
    assert ul.state is State.STA7_AWAITING_RELEASE_RP
    assert wire(ul) == RELEASE_RQ_BYTES
    assert not ul.can_send_data

    # The peer may still be finishing a response: AR-6 passes it up.
    events = feed(ul, P_DATA_BYTES)
    assert comparable(events) == comparable([codec.decode(P_DATA_BYTES)])
    assert ul.state is State.STA7_AWAITING_RELEASE_RP

    assert feed(ul, RELEASE_RP_BYTES) == [AReleaseRp()]  # Evt13 -> AR-3
    assert ul.should_close
    assert ul.state is State.STA1_IDLE
    assert not ul.artim_running
    assert wire(ul) == b""


def test_acceptor_sends_p_data_while_release_pending() -> None:
    """AR-7: in Sta8 the acceptor may finish its responses before the A-RELEASE-RP."""
    ul = acceptor_in(State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE)
    ul.send(PDataTf((Pdv(1, MCH_LAST, memoryview(b"\x09")),)))
    ul.send_data([p_data_header(1, MCH_LAST, 1), b"\x0a"])
    assert wire(ul) == encode_p_data(1, MCH_LAST, b"\x09") + encode_p_data(1, MCH_LAST, b"\x0a")
    assert ul.state is State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE


def _pump(a: UpperLayer, b: UpperLayer) -> tuple[list[Event], list[Event]]:
    """Carry bytes both ways until neither side has anything to send."""
    got_a: list[Event] = []
    got_b: list[Event] = []
    while True:
        to_b, to_a = wire(a), wire(b)
        if not to_a and not to_b:
            return got_a, got_b
        if to_b:
            got_b += feed(b, to_b)
        if to_a:
            got_a += feed(a, to_a)


def test_two_machines_associate_exchange_and_release() -> None:
    scu = UpperLayer(Role.REQUESTOR, MAX_PDU)
    scp = UpperLayer(Role.ACCEPTOR, MAX_PDU)
    scu.send(RQ)
    scp.connection_made()
    scu.connection_made()
    assert _pump(scu, scp) == ([], [RQ])
    scp.send(AC)
    assert _pump(scu, scp) == ([AC], [])
    scu.send_data([encode_p_data(1, MCH_COMMAND | MCH_LAST, b"echo")])
    got_scu, got_scp = _pump(scu, scp)
    assert got_scu == []
    assert comparable(got_scp) == [("P-DATA", [(1, 3, b"echo")])]
    scu.send(AReleaseRq())
    assert _pump(scu, scp) == ([], [AReleaseRq()])
    scp.send(AReleaseRp())
    assert _pump(scu, scp) == ([AReleaseRp()], [])
    assert scu.should_close
    assert scu.state is State.STA1_IDLE
    assert scp.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert feed(scp, b"") == [Closed()]  # the requestor closed its end


# ---- rejection ----------------------------------------------------------------------


def test_acceptor_rejects_ae_8() -> None:
    ul = acceptor_in(State.STA3_AWAITING_LOCAL_ASSOCIATE_RESPONSE)
    ul.send(RJ)  # Evt8 -> AE-8
    assert wire(ul) == RJ_BYTES
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert ul.artim_running
    assert not ul.should_close  # the requestor closes on AE-4; ARTIM covers it not doing so
    ul.artim_expired()  # Evt18 -> AA-2
    assert drain(ul) == [Closed()]
    assert ul.should_close
    assert ul.state is State.STA1_IDLE
    assert not ul.artim_running


def test_acceptor_rejects_then_peer_closes() -> None:
    ul = acceptor_in(State.STA3_AWAITING_LOCAL_ASSOCIATE_RESPONSE)
    ul.send(AAssociateRj(RejectResult.TRANSIENT, RejectSource.SERVICE_PROVIDER_PRESENTATION, 2))
    assert wire(ul) == bytes.fromhex("03 00 00000004 00 02 03 02")
    assert feed(ul, b"") == [Closed()]  # Evt17 in Sta13 -> AR-5
    assert ul.state is State.STA1_IDLE
    assert not ul.artim_running


def test_requestor_is_rejected_ae_4() -> None:
    ul = requestor_in(State.STA5_AWAITING_ASSOCIATE_RESPONSE)
    assert feed(ul, RJ_BYTES[:3], RJ_BYTES[3:]) == [RJ]  # Evt4 -> AE-4
    assert ul.should_close
    assert ul.state is State.STA1_IDLE
    assert wire(ul) == b""


# ---- release collisions (PS3.8 9.2.3, Table 9-8 AR-8..AR-10) -------------------------


def test_release_collision_requestor_side() -> None:
    ul = requestor_in(State.STA6_ESTABLISHED)
    ul.send(AReleaseRq())  # AR-1
    assert ul.state is State.STA7_AWAITING_RELEASE_RP
    assert feed(ul, RELEASE_RQ_BYTES) == [AReleaseRq()]  # Evt12 in Sta7 -> AR-8
    assert ul.state is State.STA9_COLLISION_REQUESTOR_AWAITING_LOCAL_RESPONSE
    ul.send(AReleaseRp())  # Evt14 in Sta9 -> AR-9
    assert ul.state is State.STA11_COLLISION_REQUESTOR_AWAITING_RELEASE_RP
    assert feed(ul, RELEASE_RP_BYTES) == [AReleaseRp()]  # Evt13 in Sta11 -> AR-3
    assert ul.state is State.STA1_IDLE
    assert ul.should_close
    assert not ul.artim_running


def test_release_collision_requestor_side_wire() -> None:
    ul = requestor_in(State.STA6_ESTABLISHED)
    ul.send(AReleaseRq())
    feed(ul, RELEASE_RQ_BYTES)
    ul.send(AReleaseRp())
    feed(ul, RELEASE_RP_BYTES)
    assert wire(ul) == RELEASE_RQ_BYTES + RELEASE_RP_BYTES  # AR-1 then AR-9


def test_release_collision_acceptor_side() -> None:
    ul = acceptor_in(State.STA6_ESTABLISHED)
    ul.send(AReleaseRq())  # AR-1
    assert wire(ul) == RELEASE_RQ_BYTES
    assert feed(ul, RELEASE_RQ_BYTES) == [AReleaseRq()]  # AR-8
    assert ul.state is State.STA10_COLLISION_ACCEPTOR_AWAITING_RELEASE_RP
    assert wire(ul) == b""
    assert feed(ul, RELEASE_RP_BYTES) == [AReleaseRp()]  # Evt13 in Sta10 -> AR-10
    assert ul.state is State.STA12_COLLISION_ACCEPTOR_AWAITING_LOCAL_RESPONSE
    assert not ul.should_close
    ul.send(AReleaseRp())  # Evt14 in Sta12 -> AR-4
    assert wire(ul) == RELEASE_RP_BYTES
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert ul.artim_running
    assert feed(ul, b"") == [Closed()]  # AR-5
    assert ul.state is State.STA1_IDLE


def test_release_collision_two_machines() -> None:
    """Both sides ask to release at once and both end with the transport closed."""
    scu = requestor_in(State.STA6_ESTABLISHED)
    scp = acceptor_in(State.STA6_ESTABLISHED)
    scu.send(AReleaseRq())
    scp.send(AReleaseRq())
    scu_bytes, scp_bytes = wire(scu), wire(scp)
    assert scu_bytes == scp_bytes == RELEASE_RQ_BYTES
    assert feed(scu, scp_bytes) == [AReleaseRq()]
    assert feed(scp, scu_bytes) == [AReleaseRq()]
    assert scu.state is State.STA9_COLLISION_REQUESTOR_AWAITING_LOCAL_RESPONSE
    assert scp.state is State.STA10_COLLISION_ACCEPTOR_AWAITING_RELEASE_RP
    with pytest.raises(LocalProtocolError):
        scp.send(AReleaseRp())  # Sta10 waits for the requestor's RP first
    scu.send(AReleaseRp())
    assert feed(scp, wire(scu)) == [AReleaseRp()]
    scp.send(AReleaseRp())
    assert feed(scu, wire(scp)) == [AReleaseRp()]
    assert scu.should_close
    assert scu.state is State.STA1_IDLE
    assert scp.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert feed(scp, b"") == [Closed()]


# ---- aborts -------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_peer_user_abort_in_sta6(role: Role) -> None:
    ul = machine_in(role, State.STA6_ESTABLISHED)
    events = feed(ul, abort_bytes(AbortSource.SERVICE_USER, 0))  # Evt16 -> AA-3
    assert events == [AAbort(AbortSource.SERVICE_USER, 0)]
    assert ul.should_close
    assert ul.state is State.STA1_IDLE
    assert wire(ul) == b""


@pytest.mark.parametrize("role", list(Role))
def test_peer_provider_abort_in_sta6(role: Role) -> None:
    ul = machine_in(role, State.STA6_ESTABLISHED)
    events = feed(ul, abort_bytes(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU))
    assert len(events) == 1
    assert isinstance(events[0], ProviderAbort)  # AA-3 "otherwise": A-P-ABORT indication
    assert events[0].reason == AbortReason.UNEXPECTED_PDU
    assert ul.should_close
    assert ul.state is State.STA1_IDLE


@pytest.mark.parametrize("role", list(Role))
def test_local_abort_in_sta6(role: Role) -> None:
    ul = machine_in(role, State.STA6_ESTABLISHED)
    ul.send(AAbort(AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED))  # Evt15 -> AA-1
    assert wire(ul) == abort_bytes(0, 0)
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert ul.artim_running
    assert drain(ul) == []
    ul.artim_expired()  # Evt18 in Sta13 -> AA-2
    assert drain(ul) == [Closed()]
    assert ul.should_close
    assert ul.state is State.STA1_IDLE
    assert not ul.artim_running


def test_local_abort_before_transport_open_aa_2() -> None:
    ul = requestor_in(State.STA4_AWAITING_TRANSPORT_OPEN)
    ul.send(AAbort(AbortSource.SERVICE_USER, 0))  # Evt15 in Sta4 -> AA-2
    assert wire(ul) == b""  # nothing can be sent: there is no connection
    assert ul.should_close
    assert ul.state is State.STA1_IDLE
    assert drain(ul) == []


@pytest.mark.parametrize("role", list(Role))
def test_transport_closed_in_sta6_is_provider_abort(role: Role) -> None:
    ul = machine_in(role, State.STA6_ESTABLISHED)
    events = feed(ul, b"")  # Evt17 -> AA-4
    assert len(events) == 1
    assert isinstance(events[0], ProviderAbort)
    assert events[0].reason is None
    assert ul.state is State.STA1_IDLE
    assert not ul.artim_running
    assert ul.next_event() is NEED_DATA


def test_transport_closed_in_sta2_aa_5() -> None:
    ul = acceptor_in(State.STA2_TRANSPORT_OPEN)
    assert feed(ul, b"") == [Closed()]
    assert ul.state is State.STA1_IDLE
    assert not ul.artim_running


def test_artim_expiry_in_sta2() -> None:
    ul = acceptor_in(State.STA2_TRANSPORT_OPEN)
    ul.artim_expired()  # Evt18 -> AA-2
    assert drain(ul) == [Closed()]
    assert ul.should_close
    assert ul.state is State.STA1_IDLE
    assert not ul.artim_running
    assert wire(ul) == b""


def test_artim_expiry_in_sta13_after_release() -> None:
    ul = acceptor_in(State.STA13_AWAITING_TRANSPORT_CLOSE)
    assert ul.artim_running
    ul.artim_expired()
    assert drain(ul) == [Closed()]
    assert ul.should_close
    assert ul.state is State.STA1_IDLE


@pytest.mark.parametrize("role", list(Role))
def test_artim_expiry_when_not_running_is_ignored(role: Role) -> None:
    ul = machine_in(role, State.STA6_ESTABLISHED)
    ul.artim_expired()
    assert drain(ul) == []
    assert ul.state is State.STA6_ESTABLISHED
    assert not ul.should_close


def test_peer_abort_in_sta2_and_sta13_aa_2() -> None:
    for ul in (
        acceptor_in(State.STA2_TRANSPORT_OPEN),
        acceptor_in(State.STA13_AWAITING_TRANSPORT_CLOSE),
    ):
        assert feed(ul, abort_bytes(0, 0)) == [Closed()]
        assert ul.should_close
        assert ul.state is State.STA1_IDLE
        assert not ul.artim_running


# ---- bad input from the peer ---------------------------------------------------------


def test_unknown_pdu_type_in_sta2() -> None:
    ul = acceptor_in(State.STA2_TRANSPORT_OPEN)
    assert feed(ul, GARBAGE) == []  # Evt19 in Sta2 -> AA-1: no indication
    assert wire(ul) == abort_bytes(AbortSource.SERVICE_PROVIDER, AbortReason.UNRECOGNIZED_PDU)
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert ul.artim_running
    # The stream has no PDU boundaries any more: what follows is dropped unread.
    assert feed(ul, RQ_BYTES) == []
    assert wire(ul) == b""
    assert ul.buffered == 0


def test_p_data_in_sta2_aa_1() -> None:
    ul = acceptor_in(State.STA2_TRANSPORT_OPEN)
    assert feed(ul, P_DATA_BYTES) == []
    # AA-1's text says "service-user source"; the machine states the true cause,
    # an unexpected PDU, from the provider (see _aa_1 in machine.py).
    assert wire(ul) == abort_bytes(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU)
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert ul.artim_running


def test_p_data_over_max_length_in_sta6() -> None:
    ul = acceptor_in(State.STA6_ESTABLISHED)
    # Only the header: the machine must refuse before buffering MAX_PDU + 1 bytes.
    events = feed(ul, struct.pack(">BxL", 0x04, MAX_PDU + 1))
    assert len(events) == 1
    assert isinstance(events[0], ProviderAbort)  # AA-8
    assert events[0].reason == AbortReason.INVALID_PDU_PARAMETER
    assert wire(ul) == abort_bytes(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER)
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert ul.artim_running
    assert ul.buffered == 0


def test_p_data_of_exactly_max_length_is_accepted() -> None:
    ul = acceptor_in(State.STA6_ESTABLISHED)
    data = bytes(range(256)) * ((MAX_PDU - 6) // 256) + b"\x00" * ((MAX_PDU - 6) % 256)
    pdu = encode_p_data(3, 0, data)
    assert len(pdu) == 6 + MAX_PDU
    events = feed(ul, pdu)
    assert comparable(events) == [("P-DATA", [(3, 0, data)])]
    assert ul.state is State.STA6_ESTABLISHED


def test_max_pdu_length_zero_means_no_limit() -> None:
    ul = UpperLayer(Role.ACCEPTOR, 0)
    ul.connection_made()
    feed(ul, RQ_BYTES)
    ul.send(AC)
    data = b"\x5a" * (4 * MAX_PDU)
    assert comparable(feed(ul, encode_p_data(1, MCH_LAST, data))) == [
        ("P-DATA", [(1, MCH_LAST, data)])
    ]


def test_control_pdu_over_bound_in_sta2() -> None:
    ul = acceptor_in(State.STA2_TRANSPORT_OPEN)
    assert feed(ul, struct.pack(">BxL", 0x01, MAX_CONTROL_PDU_LENGTH + 1)) == []
    assert wire(ul) == abort_bytes(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER)
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE


@pytest.mark.parametrize("role", list(Role))
def test_associate_ac_in_sta6_aa_8(role: Role) -> None:
    ul = machine_in(role, State.STA6_ESTABLISHED)
    events = feed(ul, AC_BYTES)
    assert len(events) == 1
    assert isinstance(events[0], ProviderAbort)
    assert events[0].reason == AbortReason.UNEXPECTED_PDU
    assert wire(ul) == abort_bytes(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU)
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert ul.artim_running
    assert not ul.should_close


def test_malformed_body_in_sta6_keeps_framing() -> None:
    ul = acceptor_in(State.STA6_ESTABLISHED)
    bad_release = bytes.fromhex("05 00 00000005 0000000000")  # the field is 4 bytes, not 5
    events = feed(ul, bad_release + abort_bytes(0, 0))
    assert isinstance(events[0], ProviderAbort)  # Evt19 -> AA-8
    assert events[0].reason == AbortReason.INVALID_PDU_PARAMETER
    assert wire(ul) == abort_bytes(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER)
    # The bad PDU's length was sound, so the next PDU is still read: A-ABORT in Sta13 -> AA-2.
    assert events[1:] == [Closed()]
    assert ul.should_close
    assert ul.state is State.STA1_IDLE


def test_p_data_with_even_context_id_in_sta6() -> None:
    ul = acceptor_in(State.STA6_ESTABLISHED)
    events = feed(ul, encode_p_data(2, MCH_LAST, b"x"))
    assert [type(e) for e in events] == [ProviderAbort]
    assert wire(ul) == abort_bytes(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER)


@pytest.mark.parametrize("role", list(Role))
def test_truncated_pdu_then_close_in_sta6(role: Role) -> None:
    ul = machine_in(role, State.STA6_ESTABLISHED)
    assert feed(ul, P_DATA_BYTES[:10]) == []
    assert ul.buffered == 10
    events = feed(ul, b"")
    assert len(events) == 1
    assert isinstance(events[0], ProviderAbort)
    assert events[0].reason is None
    assert ul.state is State.STA1_IDLE
    assert wire(ul) == b""


def test_truncated_header_then_close_in_sta2() -> None:
    ul = acceptor_in(State.STA2_TRANSPORT_OPEN)
    assert feed(ul, RQ_BYTES[:3], b"") == [Closed()]
    assert ul.state is State.STA1_IDLE
    assert not ul.artim_running


def test_sta13_ignores_pdus_but_answers_associate_rq_aa_7() -> None:
    ul = acceptor_in(State.STA13_AWAITING_TRANSPORT_CLOSE)
    for pdu in (AC_BYTES, RJ_BYTES, P_DATA_BYTES, RELEASE_RQ_BYTES, RELEASE_RP_BYTES):
        assert feed(ul, pdu) == []  # AA-6
        assert wire(ul) == b""
        assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert feed(ul, RQ_BYTES) == []  # AA-7
    assert wire(ul) == abort_bytes(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU)
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert ul.artim_running


def test_sta13_answers_invalid_pdu_aa_7() -> None:
    ul = acceptor_in(State.STA13_AWAITING_TRANSPORT_CLOSE)
    assert feed(ul, GARBAGE) == []
    assert wire(ul) == abort_bytes(AbortSource.SERVICE_PROVIDER, AbortReason.UNRECOGNIZED_PDU)
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE


# ---- framing and buffers --------------------------------------------------------------


def test_whole_pdus_in_one_chunk_are_not_copied() -> None:
    ul = acceptor_in(State.STA6_ESTABLISHED)
    chunk = P_DATA_BYTES + encode_p_data(1, MCH_LAST, b"tail")
    ul.receive_data(chunk)
    first, second = drain(ul)
    assert isinstance(first, PDataTf)
    assert isinstance(second, PDataTf)
    assert first.pdvs[0].data.obj is chunk
    assert second.pdvs[0].data.obj is chunk


def test_pdv_views_stay_valid_after_the_machine_moves_on() -> None:
    ul = acceptor_in(State.STA6_ESTABLISHED)
    events = feed(ul, P_DATA_BYTES[:9], P_DATA_BYTES[9:] + P_DATA_BYTES[:4])
    events += feed(ul, P_DATA_BYTES[4:], RELEASE_RQ_BYTES)
    assert comparable(events) == comparable(
        [codec.decode(P_DATA_BYTES), codec.decode(P_DATA_BYTES), AReleaseRq()]
    )


def test_next_event_is_need_data_in_sta1() -> None:
    ul = UpperLayer(Role.ACCEPTOR, MAX_PDU)
    ul.receive_data(RQ_BYTES)  # before any transport event: nothing is framed
    assert ul.next_event() is NEED_DATA
    assert ul.state is State.STA1_IDLE


# ---- local primitives the state forbids ------------------------------------------------


def _unchanged_after_refusal(ul: UpperLayer, call: object) -> None:
    state, artim, close = ul.state, ul.artim_running, ul.should_close
    with pytest.raises(LocalProtocolError):
        call()  # type: ignore[operator]
    assert (ul.state, ul.artim_running, ul.should_close) == (state, artim, close)
    assert wire(ul) == b""
    assert drain(ul) == []


def test_send_data_in_sta2_is_refused() -> None:
    ul = acceptor_in(State.STA2_TRANSPORT_OPEN)
    assert not ul.can_send_data
    _unchanged_after_refusal(ul, lambda: ul.send_data([encode_p_data(1, 3, b"x")]))


def test_release_response_in_sta6_is_refused() -> None:
    ul = acceptor_in(State.STA6_ESTABLISHED)
    _unchanged_after_refusal(ul, lambda: ul.send(AReleaseRp()))


@pytest.mark.parametrize(
    ("role", "state", "primitive"),
    [
        (Role.ACCEPTOR, State.STA2_TRANSPORT_OPEN, AC),
        (Role.ACCEPTOR, State.STA6_ESTABLISHED, AC),
        (Role.ACCEPTOR, State.STA6_ESTABLISHED, RJ),
        (Role.REQUESTOR, State.STA5_AWAITING_ASSOCIATE_RESPONSE, RQ),
        (Role.REQUESTOR, State.STA5_AWAITING_ASSOCIATE_RESPONSE, AReleaseRq()),
        (Role.REQUESTOR, State.STA7_AWAITING_RELEASE_RP, AReleaseRq()),
        (Role.REQUESTOR, State.STA7_AWAITING_RELEASE_RP, PDataTf((Pdv(1, 3, memoryview(b"")),))),
        (Role.ACCEPTOR, State.STA13_AWAITING_TRANSPORT_CLOSE, AAbort(0, 0)),
        (Role.ACCEPTOR, State.STA1_IDLE, AAbort(0, 0)),
        (Role.ACCEPTOR, State.STA2_TRANSPORT_OPEN, AAbort(0, 0)),
    ],
)
def test_primitive_the_state_forbids(role: Role, state: State, primitive: Pdu) -> None:
    ul = machine_in(role, state)
    _unchanged_after_refusal(ul, lambda: ul.send(primitive))


def test_connection_made_twice_is_refused() -> None:
    ul = acceptor_in(State.STA2_TRANSPORT_OPEN)
    _unchanged_after_refusal(ul, ul.connection_made)
    requestor = requestor_in(State.STA5_AWAITING_ASSOCIATE_RESPONSE)
    _unchanged_after_refusal(requestor, requestor.connection_made)


def test_requestor_transport_confirm_without_request_is_refused() -> None:
    ul = UpperLayer(Role.REQUESTOR, MAX_PDU)
    _unchanged_after_refusal(ul, ul.connection_made)  # Evt2 has no cell in Sta1


def test_non_primitive_is_refused() -> None:
    ul = acceptor_in(State.STA6_ESTABLISHED)
    _unchanged_after_refusal(ul, lambda: ul.send(Closed()))  # type: ignore[arg-type]


def test_unencodable_abort_changes_nothing() -> None:
    ul = acceptor_in(State.STA6_ESTABLISHED)
    # Source 1 is reserved (PS3.8 Table 9-26): the codec refuses it before AA-1 runs.
    _unchanged_after_refusal(ul, lambda: ul.send(AAbort(1, 0)))


# ---- regressions: disagreements found while writing these tests, since fixed ----------


def test_bad_ae_title_in_sta2_is_rejected_not_aborted() -> None:
    # Regression (was a BUG): an A-ASSOCIATE-RQ in Sta2 whose Called-AE-title the codec
    # refuses raises RemoteProtocolError with reject=(1, 1, 7). PS3.8 Table 9-6 AE-6:
    # if the request is not acceptable by the service-provider, "issue
    # A-ASSOCIATE-RJ-PDU and start ARTIM timer; next state is Sta13". The machine
    # used to ignore ``reject`` and send A-ABORT (2, 6) through Evt19/AA-1.
    ul = acceptor_in(State.STA2_TRANSPORT_OPEN)
    bad = bytearray(RQ_BYTES)
    bad[10] = 0xE9  # first byte of the Called-AE-title field: not ISO 646
    assert feed(ul, bytes(bad)) == []  # no indication: the user never sees the request
    assert wire(ul) == bytes.fromhex("03 00 00000004 00 01 01 07")
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
    assert ul.artim_running
    assert feed(ul, b"") == [Closed()]


def test_bad_ae_title_after_sta2_is_still_an_abort() -> None:
    """The RJ answer is AE-6's: in Sta13 the same PDU gets AA-7's A-ABORT."""
    ul = acceptor_in(State.STA13_AWAITING_TRANSPORT_CLOSE)
    bad = bytearray(RQ_BYTES)
    bad[10] = 0xE9
    assert feed(ul, bytes(bad)) == []
    assert sent(ul) == [AAbort(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER)]
    assert ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE


@pytest.mark.parametrize("role", list(Role))
def test_machine_is_not_reused_after_the_association_ended(role: Role) -> None:
    # Regression (was a BUG): back in Sta1 after an association, the machine kept
    # should_close (and the old connection's end-of-stream and framing flags) yet
    # accepted Evt5 (acceptor: AE-5 -> Sta2) or Evt1 (requestor: AE-1 -> Sta4), so a
    # driver reusing it would have been told to close the new connection at once.
    # One UpperLayer is one association (module docstring): reuse is refused.
    if role is Role.ACCEPTOR:
        ul = acceptor_in(State.STA2_TRANSPORT_OPEN)
        ul.artim_expired()
        assert drain(ul) == [Closed()]
        reopen = ul.connection_made
    else:
        ul = requestor_in(State.STA4_AWAITING_TRANSPORT_OPEN)
        ul.send(AAbort(0, 0))

        def reopen() -> None:
            ul.send(RQ)

    assert ul.should_close
    assert ul.state is State.STA1_IDLE
    _unchanged_after_refusal(ul, reopen)
