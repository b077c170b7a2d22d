# mypy: disable-error-code="comparison-overlap"
# (the machine's methods change ul.state behind mypy's narrowing of it)
"""Properties of the upper-layer machine (PS3.8 9.2), with hypothesis.

(a) How the transport cuts the byte stream does not matter: a stream of PDUs fed
    whole, byte by byte, or in random splits gives the same events and the same
    answers on the wire.
(b) A rule-based machine fires every local primitive, every incoming PDU type,
    random bytes, transport close and ARTIM expiry in any order, for either role,
    and checks the invariants of Table 9-10 after each step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from archive.dicom.errors import LocalProtocolError
from archive.dicom.ul import codec
from archive.dicom.ul.machine import (
    TRANSITIONS,
    Closed,
    Evt,
    ProviderAbort,
    Role,
    State,
    UpperLayer,
)
from archive.dicom.ul.pdata import encode_p_data
from archive.dicom.ul.pdu import AAbort, AReleaseRp, AReleaseRq, Pdu
from tests.dicom.machine_helpers import (
    AC,
    AC_BYTES,
    EVENT_TYPES,
    GARBAGE,
    MAX_PDU,
    P_DATA_BYTES,
    RELEASE_RP_BYTES,
    RELEASE_RQ_BYTES,
    RJ,
    RJ_BYTES,
    RQ,
    RQ_BYTES,
    abort_bytes,
    comparable,
    drain,
    machine_in,
    split_pdus,
    wire,
)
from tests.dicom.strategies import p_data_tf, pdus

# ---- (a) chunking does not matter --------------------------------------------------------


def _run(role: Role, established: bool, stream: bytes, cuts: Sequence[int]) -> tuple[object, ...]:
    """Feed ``stream`` cut at ``cuts``; return events, wire bytes and the final flags.

    The machine starts established (Sta6), or else with the transport open and no
    association yet: the acceptor awaiting the A-ASSOCIATE-RQ (Sta2), the requestor
    the A-ASSOCIATE-AC (Sta5).
    """
    if established:
        start_state = State.STA6_ESTABLISHED
    elif role is Role.ACCEPTOR:
        start_state = State.STA2_TRANSPORT_OPEN
    else:
        start_state = State.STA5_AWAITING_ASSOCIATE_RESPONSE
    ul = machine_in(role, start_state)
    events: list[object] = []
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        if cut > start:
            ul.receive_data(stream[start:cut])
            events.extend(comparable(drain(ul)))
            start = cut
    ul.receive_data(b"")
    events.extend(comparable(drain(ul)))
    return events, wire(ul), ul.state, ul.should_close, ul.artim_running


def _cuts_for(stream: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(stream)), max_size=12)


_p_data_pdus = st.lists(p_data_tf, min_size=1, max_size=6).map(
    lambda items: b"".join(codec.encode(pdu) for pdu in items)
)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), role=st.sampled_from(Role), body=_p_data_pdus, release=st.booleans())
def test_p_data_stream_independent_of_chunking(
    data: st.DataObject, role: Role, body: bytes, release: bool
) -> None:
    stream = body + (RELEASE_RQ_BYTES if release else b"")
    whole = _run(role, True, stream, [])
    byte_by_byte = _run(role, True, stream, list(range(len(stream))))
    split = _run(role, True, stream, data.draw(_cuts_for(stream)))
    assert whole == byte_by_byte == split
    events = whole[0]
    assert isinstance(events, list)
    expected = comparable(codec.decode(pdu) for pdu in split_pdus(body))
    # Then the release indication (AR-2) if asked for, and the closed transport: AA-4.
    tail = [AReleaseRq()] if release else []
    assert events[:-1] == [*expected, *tail]
    assert isinstance(events[-1], ProviderAbort)
    assert events[-1].reason is None


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=st.data(),
    role=st.sampled_from(Role),
    established=st.booleans(),
    items=st.lists(pdus, max_size=5),
    tail=st.binary(max_size=12),
)
def test_any_pdu_stream_independent_of_chunking(
    data: st.DataObject,
    role: Role,
    established: bool,
    items: list[Pdu],
    tail: bytes,
) -> None:
    """Whatever the PDUs (unexpected ones, aborts, trailing junk), only their order counts."""
    stream = b"".join(codec.encode(pdu) for pdu in items) + tail
    whole = _run(role, established, stream, [])
    assert _run(role, established, stream, list(range(len(stream)))) == whole
    assert _run(role, established, stream, data.draw(_cuts_for(stream))) == whole


# ---- (b) the rule-based machine ---------------------------------------------------------

#: Whole PDUs the peer may send, by event of Table 9-10.
_INCOMING: dict[Evt, bytes] = {
    Evt.EVT3_ASSOCIATE_AC_PDU: AC_BYTES,
    Evt.EVT4_ASSOCIATE_RJ_PDU: RJ_BYTES,
    Evt.EVT6_ASSOCIATE_RQ_PDU: RQ_BYTES,
    Evt.EVT10_P_DATA_PDU: P_DATA_BYTES,
    Evt.EVT12_RELEASE_RQ_PDU: RELEASE_RQ_BYTES,
    Evt.EVT13_RELEASE_RP_PDU: RELEASE_RP_BYTES,
    Evt.EVT16_ABORT_PDU: abort_bytes(0, 0),
    # A body the codec refuses but whose length is sound: framing survives it.
    Evt.EVT19_INVALID_PDU: bytes.fromhex("06 00 00000005 0000000000"),
}

_OPENING = frozenset({Evt.EVT1_ASSOCIATE_RQ_LOCAL, Evt.EVT5_TRANSPORT_INDICATION})

_LOCAL: dict[Evt, Pdu] = {
    Evt.EVT1_ASSOCIATE_RQ_LOCAL: RQ,
    Evt.EVT7_ASSOCIATE_ACCEPT_LOCAL: AC,
    Evt.EVT8_ASSOCIATE_REJECT_LOCAL: RJ,
    Evt.EVT9_P_DATA_LOCAL: codec.decode(encode_p_data(1, 3, b"\x01")),
    Evt.EVT11_RELEASE_RQ_LOCAL: AReleaseRq(),
    Evt.EVT14_RELEASE_RSP_LOCAL: AReleaseRp(),
    Evt.EVT15_ABORT_LOCAL: AAbort(0, 0),
}


class UpperLayerRules(RuleBasedStateMachine):
    """A driver and a peer that do anything at all, in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.ul = UpperLayer(Role.ACCEPTOR, MAX_PDU)
        # The stream is cut at PDU boundaries as far as the machine knows; random
        # bytes or a truncated PDU may end that, and then no PDU can be told apart.
        self.aligned = True
        self.used = False  # an opening event (Evt1 or Evt5) has been accepted
        self.left_sta1 = False
        self.peer_closed = False

    @initialize(role=st.sampled_from(Role), warm_up=st.lists(st.integers(0, 5), max_size=10))
    def start(self, role: Role, warm_up: list[int]) -> None:
        self.ul = UpperLayer(role, MAX_PDU)
        self.progress(warm_up)  # start anywhere along the normal path

    # Whether the association can still go on: one machine is one association, so
    # back in Sta1 it refuses a new one (test_machine_is_not_reused_...).
    def _open(self) -> bool:
        return not (self.left_sta1 and self.ul.state is State.STA1_IDLE)

    # ---- transport and timer ----

    @rule()
    def connection_made(self) -> None:
        evt = (
            Evt.EVT5_TRANSPORT_INDICATION
            if self.ul.role is Role.ACCEPTOR
            else Evt.EVT2_TRANSPORT_CONFIRM
        )
        self._local(self.ul.connection_made, evt=evt)

    @rule()
    def artim_expired(self) -> None:
        running = self.ul.artim_running
        before = self.ul.state
        self.ul.artim_expired()
        events = drain(self.ul)
        if running:
            assert self.ul.state is State.STA1_IDLE
            assert self.ul.should_close
            assert events == [Closed()]
        else:
            assert self.ul.state is before
            assert events == []

    # ---- the peer ----

    @precondition(lambda self: not self.peer_closed)
    @rule(evt=st.sampled_from(sorted(_INCOMING)), cuts=st.lists(st.integers(0, 64), max_size=3))
    def incoming_pdu(self, evt: Evt, cuts: list[int]) -> None:
        pdu = _INCOMING[evt]
        before = self.ul.state
        check = self.aligned and before is State.STA13_AWAITING_TRANSPORT_CLOSE
        events: list[object] = []
        start = 0
        for cut in [*sorted(c for c in cuts if c < len(pdu)), len(pdu)]:
            if cut > start:
                events += self._receive(pdu[start:cut])
                start = cut
        if check:
            self._check_sta13(evt, events)

    @precondition(lambda self: not self.peer_closed)
    @rule(
        kind=st.sampled_from(["close", "random", "truncated", "unknown-type"]),
        data=st.binary(min_size=1, max_size=40),
        cut=st.integers(1, 9),
    )
    def peer_misbehaves(self, kind: str, data: bytes, cut: int) -> None:
        """The transport closes, or bytes come that break the framing for good."""
        if kind == "close":
            self.peer_closed = True
            self._receive(b"")
            return
        self.aligned = False  # the machine can no longer find PDU boundaries
        if kind == "random":
            self._receive(data)
        elif kind == "truncated":
            self._receive(RQ_BYTES[:cut])
        else:
            self._receive(GARBAGE)

    @precondition(lambda self: not self.peer_closed and self._open())
    @rule(choices=st.lists(st.integers(0, 5), min_size=1, max_size=8))
    def progress(self, choices: list[int]) -> None:
        """Both sides behaving: one normal step per choice, so deep states are reached."""
        for choice in choices:
            step = self._normal_step(choice) if self._open() else None
            if step is None:
                return
            step()

    def _normal_step(self, choice: int) -> Callable[[], object] | None:
        ul = self.ul
        state = ul.state
        incoming = {
            State.STA2_TRANSPORT_OPEN: RQ_BYTES,
            State.STA5_AWAITING_ASSOCIATE_RESPONSE: AC_BYTES,
            # A-RELEASE-RQ too: a release collision (AR-8).
            State.STA7_AWAITING_RELEASE_RP: (RELEASE_RQ_BYTES, RELEASE_RP_BYTES, P_DATA_BYTES)[
                choice % 3
            ],
            State.STA10_COLLISION_ACCEPTOR_AWAITING_RELEASE_RP: RELEASE_RP_BYTES,
            State.STA11_COLLISION_REQUESTOR_AWAITING_RELEASE_RP: RELEASE_RP_BYTES,
        }
        local: dict[State, Pdu] = {
            State.STA3_AWAITING_LOCAL_ASSOCIATE_RESPONSE: (AC, AC, RJ)[choice % 3],
            State.STA8_AWAITING_LOCAL_RELEASE_RESPONSE: AReleaseRp(),
            State.STA9_COLLISION_REQUESTOR_AWAITING_LOCAL_RESPONSE: AReleaseRp(),
            State.STA12_COLLISION_ACCEPTOR_AWAITING_LOCAL_RESPONSE: AReleaseRp(),
        }
        if state is State.STA1_IDLE:
            if ul.role is Role.ACCEPTOR:
                return lambda: self._local(ul.connection_made, evt=Evt.EVT5_TRANSPORT_INDICATION)
            return lambda: self._local(lambda: ul.send(RQ), evt=Evt.EVT1_ASSOCIATE_RQ_LOCAL)
        if state is State.STA4_AWAITING_TRANSPORT_OPEN:
            evt = (
                Evt.EVT5_TRANSPORT_INDICATION
                if ul.role is Role.ACCEPTOR
                else Evt.EVT2_TRANSPORT_CONFIRM
            )
            return lambda: self._local(ul.connection_made, evt=evt)
        if state in incoming:
            return lambda: self._receive(incoming[state])
        if state in local:
            return lambda: self._local(lambda: ul.send(local[state]), evt=None)
        if state is State.STA6_ESTABLISHED:
            return (
                lambda: self._receive(P_DATA_BYTES),
                lambda: self._local(lambda: ul.send_data([P_DATA_BYTES]), evt=None),
                lambda: self._receive(RELEASE_RQ_BYTES),
                lambda: self._local(lambda: ul.send(AReleaseRq()), evt=None),
            )[choice % 4]
        return None  # Sta13: up to the peer's close or ARTIM

    # ---- the local user ----

    @rule(evt=st.sampled_from(sorted(_LOCAL)))
    def local_primitive(self, evt: Evt) -> None:
        self._local(lambda: self.ul.send(_LOCAL[evt]), evt=evt)

    @rule()
    def send_framed_data(self) -> None:
        self._local(
            lambda: self.ul.send_data([encode_p_data(1, 3, b"\x02")]),
            evt=Evt.EVT9_P_DATA_LOCAL,
        )

    # ---- helpers ----

    def _receive(self, data: bytes) -> list[object]:
        self.ul.receive_data(data)
        events = drain(self.ul)
        self._after()
        return list(events)

    def _local(self, call: object, evt: Evt | None) -> None:
        before = (self.ul.state, self.ul.artim_running, self.ul.should_close)
        reuse = evt in _OPENING and self.used
        # Only a requestor issues A-ASSOCIATE requests (PS3.8 7.1): the acceptor
        # refuses Evt1 although the Sta1 cell is filled.
        wrong_role = evt is Evt.EVT1_ASSOCIATE_RQ_LOCAL and self.ul.role is Role.ACCEPTOR
        try:
            call()  # type: ignore[operator]
        except LocalProtocolError:
            # Refused: the cell is empty (or the machine is spent) and nothing changed.
            assert (self.ul.state, self.ul.artim_running, self.ul.should_close) == before
            if evt is not None:
                assert reuse or wrong_role or before[0] not in TRANSITIONS[evt]
            assert self.ul.data_to_send() == []
        else:
            if evt is not None:
                assert not reuse, f"{evt.name} accepted again in {before[0].name}"
                assert not wrong_role, "an acceptor issued an A-ASSOCIATE request"
                assert before[0] in TRANSITIONS[evt]
            if evt in _OPENING:
                self.used = True
        self._after()

    def _after(self) -> None:
        if self.ul.state is not State.STA1_IDLE:
            self.left_sta1 = True
        for event in drain(self.ul):
            assert isinstance(event, EVENT_TYPES)
        if self.ul.state is not State.STA1_IDLE:
            self.left_sta1 = True
        self.ul.data_to_send()

    def _check_sta13(self, evt: Evt, events: list[object]) -> None:
        """Sta13: AA-6 ignores PDUs, AA-7 answers an A-ASSOCIATE-RQ or invalid PDU, AA-2 ends."""
        # _after() emptied the outbox, so the check looks at the state and events.
        if evt is Evt.EVT16_ABORT_PDU:
            assert events == [Closed()]
            assert self.ul.state is State.STA1_IDLE
            assert self.ul.should_close
        else:
            assert events == []
            assert self.ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
            assert self.ul.artim_running

    # ---- invariants ----

    @invariant()
    def state_is_a_state(self) -> None:
        assert isinstance(self.ul.state, State)

    @invariant()
    def closing_only_when_done(self) -> None:
        if self.ul.should_close:
            assert self.ul.state in (State.STA1_IDLE, State.STA13_AWAITING_TRANSPORT_CLOSE)

    @invariant()
    def artim_runs_in_sta2_and_sta13_only(self) -> None:
        in_artim_state = self.ul.state in (
            State.STA2_TRANSPORT_OPEN,
            State.STA13_AWAITING_TRANSPORT_CLOSE,
        )
        assert self.ul.artim_running is in_artim_state

    @invariant()
    def can_send_data_matches_table(self) -> None:
        assert self.ul.can_send_data is (self.ul.state in TRANSITIONS[Evt.EVT9_P_DATA_LOCAL])


TestUpperLayerRules = UpperLayerRules.TestCase
TestUpperLayerRules.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


class _Sta13Outbox(RuleBasedStateMachine):
    """In Sta13 the outbox says exactly what AA-6/AA-7 did, PDU type by PDU type."""

    def __init__(self) -> None:
        super().__init__()
        self.ul = UpperLayer(Role.ACCEPTOR, MAX_PDU)
        self.ul.connection_made()
        self.ul.receive_data(RQ_BYTES)
        drain(self.ul)
        self.ul.send(RJ)  # AE-8 -> Sta13
        self.ul.data_to_send()

    @rule(evt=st.sampled_from(sorted(_INCOMING)), cut=st.integers(1, 80))
    def incoming(self, evt: Evt, cut: int) -> None:
        if self.ul.state is not State.STA13_AWAITING_TRANSPORT_CLOSE:
            return  # AA-2 ended it; nothing more to check
        pdu = _INCOMING[evt]
        for chunk in (pdu[:cut], pdu[cut:]):
            if chunk:  # b"" would mean the transport closed
                self.ul.receive_data(chunk)
        events = drain(self.ul)
        out = [codec.decode(bytes(p)) for p in self.ul.data_to_send()]
        if evt in (Evt.EVT6_ASSOCIATE_RQ_PDU, Evt.EVT19_INVALID_PDU):
            assert [type(p) for p in out] == [AAbort]  # AA-7
            assert events == []
        elif evt is Evt.EVT16_ABORT_PDU:
            assert out == []
            assert events == [Closed()]  # AA-2
            assert self.ul.state is State.STA1_IDLE
        else:
            assert out == []  # AA-6
            assert events == []
        if evt is not Evt.EVT16_ABORT_PDU:
            assert self.ul.state is State.STA13_AWAITING_TRANSPORT_CLOSE
            assert self.ul.artim_running


TestSta13Outbox = _Sta13Outbox.TestCase
TestSta13Outbox.settings = settings(max_examples=100, stateful_step_count=20, deadline=None)
