# mypy: disable-error-code="comparison-overlap"
# (the machine's methods change ul.state behind mypy's narrowing of it)
"""Aborts, bad input from the peer and framing of the upper-layer machine (PS3.8 9.2).

Driven event by event as in ``test_machine``: A-ABORT both ways, transport closes
and ARTIM expiry (Table 9-9 AA-1..AA-8), malformed, oversized or unexpected PDUs,
and how received bytes are framed and viewed without copies.
"""

from __future__ import annotations

import struct

import pytest

from archive.dicom.errors import (
    AbortReason,
    AbortSource,
)
from archive.dicom.ul import codec
from archive.dicom.ul.machine import (
    MAX_CONTROL_PDU_LENGTH,
    NEED_DATA,
    Closed,
    ProviderAbort,
    Role,
    State,
    UpperLayer,
)
from archive.dicom.ul.pdata import MCH_LAST, encode_p_data
from archive.dicom.ul.pdu import (
    AAbort,
    AReleaseRq,
    PDataTf,
)
from tests.dicom.machine_helpers import (
    AC,
    AC_BYTES,
    GARBAGE,
    MAX_PDU,
    P_DATA_BYTES,
    RELEASE_RP_BYTES,
    RELEASE_RQ_BYTES,
    RJ_BYTES,
    RQ_BYTES,
    abort_bytes,
    acceptor_in,
    comparable,
    drain,
    feed,
    machine_in,
    requestor_in,
    wire,
)

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
