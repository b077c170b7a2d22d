# mypy: disable-error-code="comparison-overlap"
"""PS3.8 Table 9-10 (the state transition table) checked twice.

1. As data, against an oracle: pynetdicom's ``fsm.TRANSITION_TABLE`` (used here
   only as a test oracle; archive/ never imports pynetdicom).
2. As behaviour: for every (event, state) cell and every role that can be in the
   state, the machine is driven into the state, the event is fired, and the
   result is checked against what the named action does (PS3.8 Tables 9-6 to 9-9):
   next state, PDUs on the wire, indications, ARTIM, closing. Cells the table
   leaves empty must refuse a local primitive (LocalProtocolError) and leave the
   machine untouched for anything from the transport.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import pytest
from pynetdicom.fsm import TRANSITION_TABLE as PYNETDICOM_TABLE

from archive.dicom.errors import AbortReason, AbortSource, LocalProtocolError
from archive.dicom.ul.machine import (
    TRANSITIONS,
    Action,
    Closed,
    Evt,
    ProviderAbort,
    Role,
    State,
    UpperLayer,
)
from archive.dicom.ul.pdata import encode_p_data
from archive.dicom.ul.pdu import (
    AAbort,
    AAssociateAc,
    AAssociateRj,
    AAssociateRq,
    AReleaseRp,
    AReleaseRq,
    PDataTf,
)
from tests.dicom.machine_helpers import (
    AC,
    AC_BYTES,
    GARBAGE,
    P_DATA_BYTES,
    REACHABLE,
    RELEASE_RP_BYTES,
    RELEASE_RQ_BYTES,
    RJ,
    RJ_BYTES,
    RQ,
    RQ_BYTES,
    abort_bytes,
    drain,
    machine_in,
    sent,
    wire,
)

# ---- 1. the table as data, against pynetdicom -------------------------------------------

#: Cells where pynetdicom disagrees with PS3.8 Table 9-10 and we follow the standard:
#: (event, state) -> (our action, pynetdicom's action, why). None found: pynetdicom 3's
#: table agrees with ours cell for cell (123 cells). Where pynetdicom deviates from
#: the standard it is in what its actions send, not in the table: its AA-8 always
#: sends reason 0 and its AA-1 (Sta2) sends source 0 reason 0; those are checked
#: against our own expectations in test_machine_abort.py, not against pynetdicom.
KNOWN_DEVIATIONS: dict[tuple[str, str], tuple[str | None, str | None, str]] = {}


def _ours() -> dict[tuple[str, str], str]:
    return {
        (f"Evt{evt.value}", f"Sta{state.value}"): action.value
        for evt, row in TRANSITIONS.items()
        for state, action in row.items()
    }


def test_table_has_every_event_and_only_known_actions() -> None:
    assert set(TRANSITIONS) == set(Evt)
    assert len(Evt) == 19
    assert len(State) == 13
    for row in TRANSITIONS.values():
        assert all(isinstance(state, State) for state in row)
        assert all(isinstance(action, Action) for action in row.values())


def test_every_action_has_a_handler() -> None:
    for action in Action:
        assert callable(getattr(UpperLayer, "_" + action.name.lower()))


def test_action_names_are_the_standards() -> None:
    # PS3.8 9.2.2: AE-1..8, DT-1..2, AR-1..10, AA-1..8.
    expected = {
        *(f"AE-{i}" for i in range(1, 9)),
        *(f"DT-{i}" for i in range(1, 3)),
        *(f"AR-{i}" for i in range(1, 11)),
        *(f"AA-{i}" for i in range(1, 9)),
    }
    assert {action.value for action in Action} == expected


@pytest.mark.parametrize("cell", sorted(set(_ours()) | set(PYNETDICOM_TABLE)))
def test_cell_matches_pynetdicom(cell: tuple[str, str]) -> None:
    ours = _ours().get(cell)
    theirs = PYNETDICOM_TABLE.get(cell)
    if cell in KNOWN_DEVIATIONS:
        expected_ours, expected_theirs, _why = KNOWN_DEVIATIONS[cell]
        assert (ours, theirs) == (expected_ours, expected_theirs)
    else:
        assert ours == theirs, f"{cell}: ours {ours}, pynetdicom {theirs}"


def test_table_size_matches_pynetdicom() -> None:
    assert len(_ours()) == len(PYNETDICOM_TABLE) == 123


# ---- 2. the table as behaviour ---------------------------------------------------------


class Effect(NamedTuple):
    """What an action does, from its definition in PS3.8 Tables 9-6 to 9-9."""

    next_state: State | None  # None: depends on role (AR-8)
    wire: tuple[type, ...] = ()  # PDUs sent
    events: tuple[type, ...] = ()  # indications/confirmations issued
    artim: bool | None = None  # ARTIM running afterwards; None: unchanged
    closes: bool = False  # "close transport connection"


S = State
EFFECTS: dict[Action, Effect] = {
    Action.AE_1: Effect(S.STA4_AWAITING_TRANSPORT_OPEN),
    Action.AE_2: Effect(S.STA5_AWAITING_ASSOCIATE_RESPONSE, wire=(AAssociateRq,)),
    Action.AE_3: Effect(S.STA6_ESTABLISHED, events=(AAssociateAc,)),
    Action.AE_4: Effect(S.STA1_IDLE, events=(AAssociateRj,), closes=True),
    Action.AE_5: Effect(S.STA2_TRANSPORT_OPEN, artim=True),
    Action.AE_6: Effect(
        S.STA3_AWAITING_LOCAL_ASSOCIATE_RESPONSE, events=(AAssociateRq,), artim=False
    ),
    Action.AE_7: Effect(S.STA6_ESTABLISHED, wire=(AAssociateAc,)),
    Action.AE_8: Effect(S.STA13_AWAITING_TRANSPORT_CLOSE, wire=(AAssociateRj,), artim=True),
    Action.DT_1: Effect(S.STA6_ESTABLISHED, wire=(PDataTf,)),
    Action.DT_2: Effect(S.STA6_ESTABLISHED, events=(PDataTf,)),
    Action.AR_1: Effect(S.STA7_AWAITING_RELEASE_RP, wire=(AReleaseRq,)),
    Action.AR_2: Effect(S.STA8_AWAITING_LOCAL_RELEASE_RESPONSE, events=(AReleaseRq,)),
    Action.AR_3: Effect(S.STA1_IDLE, events=(AReleaseRp,), closes=True),
    Action.AR_4: Effect(S.STA13_AWAITING_TRANSPORT_CLOSE, wire=(AReleaseRp,), artim=True),
    Action.AR_5: Effect(S.STA1_IDLE, events=(Closed,), artim=False),
    Action.AR_6: Effect(S.STA7_AWAITING_RELEASE_RP, events=(PDataTf,)),
    Action.AR_7: Effect(S.STA8_AWAITING_LOCAL_RELEASE_RESPONSE, wire=(PDataTf,)),
    Action.AR_8: Effect(None, events=(AReleaseRq,)),
    Action.AR_9: Effect(S.STA11_COLLISION_REQUESTOR_AWAITING_RELEASE_RP, wire=(AReleaseRp,)),
    Action.AR_10: Effect(S.STA12_COLLISION_ACCEPTOR_AWAITING_LOCAL_RESPONSE, events=(AReleaseRp,)),
    Action.AA_1: Effect(S.STA13_AWAITING_TRANSPORT_CLOSE, wire=(AAbort,), artim=True),
    # AA-2 closes the transport; the Closed event reports it (none from Sta4, where
    # no connection was ever made: see _aa_2).
    Action.AA_2: Effect(S.STA1_IDLE, events=(Closed,), artim=False, closes=True),
    # The peer's A-ABORT here is source 0 (service user): an A-ABORT indication.
    Action.AA_3: Effect(S.STA1_IDLE, events=(AAbort,), closes=True),
    Action.AA_4: Effect(S.STA1_IDLE, events=(ProviderAbort,), artim=False),
    Action.AA_5: Effect(S.STA1_IDLE, events=(Closed,), artim=False),
    Action.AA_6: Effect(S.STA13_AWAITING_TRANSPORT_CLOSE, artim=True),
    Action.AA_7: Effect(S.STA13_AWAITING_TRANSPORT_CLOSE, wire=(AAbort,), artim=True),
    Action.AA_8: Effect(
        S.STA13_AWAITING_TRANSPORT_CLOSE, wire=(AAbort,), events=(ProviderAbort,), artim=True
    ),
}
del S


def test_every_action_has_an_effect() -> None:
    assert set(EFFECTS) == set(Action)


#: How each event is fired. Evt2 and Evt5 are both ``connection_made``; which one
#: it is depends on the role, so each is only fired for its own role.
FIRE: dict[Evt, Callable[[UpperLayer], None]] = {
    Evt.EVT1_ASSOCIATE_RQ_LOCAL: lambda ul: ul.send(RQ),
    Evt.EVT2_TRANSPORT_CONFIRM: lambda ul: ul.connection_made(),
    Evt.EVT3_ASSOCIATE_AC_PDU: lambda ul: ul.receive_data(AC_BYTES),
    Evt.EVT4_ASSOCIATE_RJ_PDU: lambda ul: ul.receive_data(RJ_BYTES),
    Evt.EVT5_TRANSPORT_INDICATION: lambda ul: ul.connection_made(),
    Evt.EVT6_ASSOCIATE_RQ_PDU: lambda ul: ul.receive_data(RQ_BYTES),
    Evt.EVT7_ASSOCIATE_ACCEPT_LOCAL: lambda ul: ul.send(AC),
    Evt.EVT8_ASSOCIATE_REJECT_LOCAL: lambda ul: ul.send(RJ),
    Evt.EVT9_P_DATA_LOCAL: lambda ul: ul.send_data([encode_p_data(1, 3, b"\x00\x01")]),
    Evt.EVT10_P_DATA_PDU: lambda ul: ul.receive_data(P_DATA_BYTES),
    Evt.EVT11_RELEASE_RQ_LOCAL: lambda ul: ul.send(AReleaseRq()),
    Evt.EVT12_RELEASE_RQ_PDU: lambda ul: ul.receive_data(RELEASE_RQ_BYTES),
    Evt.EVT13_RELEASE_RP_PDU: lambda ul: ul.receive_data(RELEASE_RP_BYTES),
    Evt.EVT14_RELEASE_RSP_LOCAL: lambda ul: ul.send(AReleaseRp()),
    Evt.EVT15_ABORT_LOCAL: lambda ul: ul.send(AAbort(AbortSource.SERVICE_USER, 0)),
    Evt.EVT16_ABORT_PDU: lambda ul: ul.receive_data(abort_bytes(AbortSource.SERVICE_USER, 0)),
    Evt.EVT17_TRANSPORT_CLOSED: lambda ul: ul.receive_data(b""),
    Evt.EVT18_ARTIM_EXPIRED: lambda ul: ul.artim_expired(),
    Evt.EVT19_INVALID_PDU: lambda ul: ul.receive_data(GARBAGE),
}

LOCAL_EVENTS = frozenset(
    {
        Evt.EVT1_ASSOCIATE_RQ_LOCAL,
        Evt.EVT2_TRANSPORT_CONFIRM,
        Evt.EVT5_TRANSPORT_INDICATION,
        Evt.EVT7_ASSOCIATE_ACCEPT_LOCAL,
        Evt.EVT8_ASSOCIATE_REJECT_LOCAL,
        Evt.EVT9_P_DATA_LOCAL,
        Evt.EVT11_RELEASE_RQ_LOCAL,
        Evt.EVT14_RELEASE_RSP_LOCAL,
        Evt.EVT15_ABORT_LOCAL,
    }
)


def _cases() -> list[tuple[Role, State, Evt]]:
    cases = []
    for role, state in REACHABLE:
        for evt in Evt:
            if evt is Evt.EVT2_TRANSPORT_CONFIRM and role is Role.ACCEPTOR:
                continue
            if evt is Evt.EVT5_TRANSPORT_INDICATION and role is Role.REQUESTOR:
                continue
            if evt is Evt.EVT1_ASSOCIATE_RQ_LOCAL and role is Role.ACCEPTOR:
                continue  # refused by role: test_acceptor_cannot_request_association
            cases.append((role, state, evt))
    return cases


def _id(case: tuple[Role, State, Evt]) -> str:
    role, state, evt = case
    return f"{role.value}-Sta{state.value}-Evt{evt.value}"


def test_every_filled_cell_is_exercised() -> None:
    exercised = {(evt, state) for _role, state, evt in _cases()}
    for evt, row in TRANSITIONS.items():
        for state in row:
            assert (evt, state) in exercised, f"Evt{evt.value}/Sta{state.value} not reachable"


@pytest.mark.parametrize("case", _cases(), ids=_id)
def test_cell_behaviour(case: tuple[Role, State, Evt]) -> None:
    role, state, evt = case
    ul = machine_in(role, state)
    artim_before = ul.artim_running
    action = TRANSITIONS[evt].get(state)
    if action is None:
        _check_empty_cell(ul, evt, state, artim_before)
        return
    FIRE[evt](ul)
    events = drain(ul)
    pdus = sent(ul)
    effect = EFFECTS[action]

    if action is Action.AR_8:
        expected_state = (
            State.STA9_COLLISION_REQUESTOR_AWAITING_LOCAL_RESPONSE
            if role is Role.REQUESTOR
            else State.STA10_COLLISION_ACCEPTOR_AWAITING_RELEASE_RP
        )
    else:
        assert effect.next_state is not None
        expected_state = effect.next_state
    assert ul.state is expected_state

    expected_events = effect.events
    if action is Action.AA_2 and state is State.STA4_AWAITING_TRANSPORT_OPEN:
        expected_events = ()
    assert tuple(type(e) for e in events) == expected_events
    assert tuple(type(p) for p in pdus) == effect.wire

    expected_artim = artim_before if effect.artim is None else effect.artim
    assert ul.artim_running is expected_artim
    if effect.closes:
        assert ul.should_close
    elif expected_state is not State.STA1_IDLE:
        assert not ul.should_close
    _check_abort_values(action, evt, pdus)


def _check_empty_cell(ul: UpperLayer, evt: Evt, state: State, artim_before: bool) -> None:
    """An empty cell: a local primitive is our bug; a transport event changes nothing."""
    if evt in LOCAL_EVENTS:
        with pytest.raises(LocalProtocolError):
            FIRE[evt](ul)
    else:
        # Evt18 cannot happen where ARTIM does not run; transport input where there
        # is no association (Sta1, Sta4) has no one to answer.
        FIRE[evt](ul)
    assert drain(ul) == []
    assert wire(ul) == b""
    assert ul.state is state
    assert ul.artim_running is artim_before
    assert not ul.should_close


def _check_abort_values(action: Action, evt: Evt, pdus: Sequence[object]) -> None:
    """The source/reason of each A-ABORT the table makes us send (PS3.8 Table 9-26)."""
    if action is Action.AA_1 and evt is Evt.EVT15_ABORT_LOCAL:
        # The user's own A-ABORT, as given.
        assert pdus == [AAbort(AbortSource.SERVICE_USER, 0)]
    elif action in (Action.AA_1, Action.AA_7, Action.AA_8):
        reason = (
            AbortReason.UNRECOGNIZED_PDU
            if evt is Evt.EVT19_INVALID_PDU
            else AbortReason.UNEXPECTED_PDU
        )
        assert pdus == [AAbort(AbortSource.SERVICE_PROVIDER, reason)]


def test_acceptor_cannot_request_association() -> None:
    """Only the requestor issues A-ASSOCIATE requests (PS3.8 7.1.1): an acceptor
    machine refuses Evt1 and is left untouched."""
    ul = UpperLayer(Role.ACCEPTOR, 16384)
    with pytest.raises(LocalProtocolError, match="only a requestor"):
        ul.send(RQ)
    assert ul.state is State.STA1_IDLE
    ul.connection_made()
    assert ul.state is State.STA2_TRANSPORT_OPEN
