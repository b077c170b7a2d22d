"""Fixtures and drivers shared by the upper-layer machine tests (PS3.8 9.2).

The PDUs the tests exchange, as records and as bytes, and helpers that drive an
``UpperLayer`` event by event into a given state and read back what it sent and
raised. Used by ``test_machine``, ``test_machine_abort``, ``test_machine_refusals``,
``test_machine_table`` and ``test_machine_properties``; holds no tests itself.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from archive.dicom.errors import (
    AbortReason,
    AbortSource,
    RejectReason,
    RejectResult,
    RejectSource,
)
from archive.dicom.ul import codec, pdu
from archive.dicom.ul.machine import (
    NEED_DATA,
    Closed,
    Event,
    ProviderAbort,
    Role,
    State,
    UpperLayer,
)

# ---- fixtures shared with the other machine tests ------------------------------------

MAX_PDU = 16384
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.9.9999.1"

RQ = pdu.AAssociateRq(
    called_ae="ARCHIVE",
    calling_ae="MODALITY",
    contexts=(pdu.PresentationContextRq(1, VERIFICATION, (IMPLICIT_VR_LE,)),),
    user_info=pdu.UserInformation(max_length=MAX_PDU, implementation_class_uid=IMPLEMENTATION_UID),
)
AC = pdu.AAssociateAc(
    called_ae="ARCHIVE",
    calling_ae="MODALITY",
    contexts=(pdu.PresentationContextAc(1, pdu.ContextResult.ACCEPTANCE, IMPLICIT_VR_LE),),
    user_info=pdu.UserInformation(max_length=MAX_PDU, implementation_class_uid=IMPLEMENTATION_UID),
)
RJ = pdu.AAssociateRj(
    RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.NO_REASON_GIVEN
)

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


#: Every type of event ``next_event`` reports (the members of the machine's ``Event``).
EVENT_TYPES = (
    pdu.AAssociateRq,
    pdu.AAssociateAc,
    pdu.AAssociateRj,
    pdu.PDataTf,
    pdu.AReleaseRq,
    pdu.AReleaseRp,
    pdu.AAbort,
    ProviderAbort,
    Closed,
)


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


def sent(ul: UpperLayer) -> list[pdu.Pdu]:
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
        if isinstance(event, pdu.PDataTf):
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
        assert feed(ul, RELEASE_RQ_BYTES) == [pdu.AReleaseRq()]
        ul.send(pdu.AReleaseRp())
    elif state is State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE:
        assert feed(ul, RELEASE_RQ_BYTES) == [pdu.AReleaseRq()]
    elif state is not State.STA6_ESTABLISHED:
        ul.send(pdu.AReleaseRq())
        if state is not State.STA7_AWAITING_RELEASE_RP:
            assert feed(ul, RELEASE_RQ_BYTES) == [pdu.AReleaseRq()]  # collision: Sta10
            if state is State.STA12_COLLISION_ACCEPTOR_AWAITING_LOCAL_RESPONSE:
                assert feed(ul, RELEASE_RP_BYTES) == [pdu.AReleaseRp()]
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
        ul.send(pdu.AAbort(AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED))
    elif state is State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE:
        assert feed(ul, RELEASE_RQ_BYTES) == [pdu.AReleaseRq()]
    elif state is not State.STA6_ESTABLISHED:
        ul.send(pdu.AReleaseRq())
        if state is not State.STA7_AWAITING_RELEASE_RP:
            assert feed(ul, RELEASE_RQ_BYTES) == [pdu.AReleaseRq()]  # collision: Sta9
            if state is State.STA11_COLLISION_REQUESTOR_AWAITING_RELEASE_RP:
                ul.send(pdu.AReleaseRp())
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
