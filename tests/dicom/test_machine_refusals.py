"""Local primitives the upper-layer machine refuses, and regressions (PS3.8 9.2).

A primitive the state table has no cell for raises ``LocalProtocolError`` and
changes nothing: no state, ARTIM or outbox change. The "regression" tests at the
end pin down disagreements with PS3.8 or with the machine's own contract found
while writing the machine tests (since fixed).
"""

from __future__ import annotations

import pytest

from archive.dicom.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
)
from archive.dicom.ul.machine import (
    Closed,
    Role,
    State,
    UpperLayer,
)
from archive.dicom.ul.pdata import Pdv, encode_p_data
from archive.dicom.ul.pdu import (
    AAbort,
    AReleaseRp,
    AReleaseRq,
    PDataTf,
    Pdu,
)
from tests.dicom.machine_helpers import (
    AC,
    MAX_PDU,
    RJ,
    RQ,
    RQ_BYTES,
    acceptor_in,
    drain,
    feed,
    machine_in,
    requestor_in,
    sent,
    wire,
)

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
