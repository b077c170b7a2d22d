# mypy: disable-error-code="comparison-overlap"
# (the machine's methods change ul.state behind mypy's narrowing of it)
"""The upper-layer machine (PS3.8 9.2) driven event by event: no sockets, no sleeps.

Every test feeds the machine what a driver would (transport events, bytes, local
primitives) and checks what comes out: the events, the state, the ARTIM flag,
``should_close`` and the exact PDUs in the outbox. This module holds whole
associations, rejection and release collisions; aborts and bad input from the peer
are in ``test_machine_abort``, refused local primitives and regressions in
``test_machine_refusals``; the shared fixtures live in ``machine_helpers``.
"""

from __future__ import annotations

import pytest

from archive.dicom.errors import (
    LocalProtocolError,
    RejectResult,
    RejectSource,
)
from archive.dicom.ul import codec
from archive.dicom.ul.machine import (
    NEED_DATA,
    Closed,
    Event,
    Role,
    State,
    UpperLayer,
)
from archive.dicom.ul.pdata import MCH_COMMAND, MCH_LAST, Pdv, encode_p_data, p_data_header
from archive.dicom.ul.pdu import (
    AAssociateRj,
    AReleaseRp,
    AReleaseRq,
    PDataTf,
)
from tests.dicom.machine_helpers import (
    AC,
    AC_BYTES,
    MAX_PDU,
    P_DATA_BYTES,
    RELEASE_RP_BYTES,
    RELEASE_RQ_BYTES,
    RJ,
    RJ_BYTES,
    RQ,
    RQ_BYTES,
    acceptor_in,
    comparable,
    drain,
    feed,
    requestor_in,
    wire,
)

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
