"""Association negotiation, acceptor side (negotiate): rejections and presentation contexts.

Association-level rejections, the result of each proposed presentation context,
the default policy, a storescu-like request of 120 contexts, and pynetdicom as an
oracle for the context results. User information (maximum length, asynchronous
operations window, user identity), role selection and extended negotiation are in
``test_negotiation_user_info``; the requestor side (build_request, accepted) in
``test_negotiation_requestor``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.config import AssociationConfig, Config, NodeConfig, Peer
from archive.dicom import uids
from archive.dicom.errors import (
    AbortReason,
    AbortSource,
    RejectReason,
    RejectResult,
    RejectSource,
    RemoteProtocolError,
)
from archive.dicom.ul.negotiation import (
    REJECT_LOCAL_LIMIT,
    AcceptedContext,
    AcceptorPolicy,
    default_acceptor_policy,
    negotiate,
)
from archive.dicom.ul.pdu import (
    AAssociateRj,
    AAssociateRq,
    ContextResult,
    PresentationContextAc,
)
from tests.dicom.negotiation_helpers import (
    _TRANSFER,
    BE,
    CT,
    ELE,
    ILE,
    J2K,
    JPEG,
    MR,
    ONE_CT,
    POLICY,
    UNSERVED,
    WORKLIST_FIND,
    accept,
    proposals,
    rq_for,
)

# --- association-level rejections (PS3.8 9.3.4) ---------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"version": 0}, (1, 2, 2)),  # permanent, ACSE, protocol-version-not-supported
        ({"version": 2}, (1, 2, 2)),
        ({"app": "1.2.840.10008.3.1.1.2"}, (1, 1, 2)),  # app context not supported
        ({"called": "ARCHIV"}, (1, 1, 7)),  # called AE not recognized
        ({"called": "archive"}, (1, 1, 7)),  # AE titles are case-sensitive
        ({"calling": "INTRUDER"}, (1, 1, 3)),  # calling AE not recognized
        ({"calling": " " * 16}, (1, 1, 3)),  # no calling AE at all (PS3.5 6.2)
        # the order of the checks: version first, then context, called, calling
        ({"version": 0, "app": "1.2.3", "called": "X", "calling": "Y"}, (1, 2, 2)),
        ({"app": "1.2.3", "called": "X", "calling": "Y"}, (1, 1, 2)),
        ({"called": "X", "calling": "Y"}, (1, 1, 7)),
    ],
)
def test_association_rejections(kwargs: dict[str, object], expected: tuple[int, int, int]) -> None:
    result = negotiate(rq_for(ONE_CT, **kwargs), POLICY)  # type: ignore[arg-type]
    assert result == AAssociateRj(*expected)


def test_reject_values_are_the_standard_ones() -> None:
    assert negotiate(rq_for(ONE_CT, version=0), POLICY) == AAssociateRj(
        RejectResult.PERMANENT,
        RejectSource.SERVICE_PROVIDER_ACSE,
        RejectReason.PROTOCOL_VERSION_NOT_SUPPORTED,
    )
    assert AAssociateRj(2, 3, 2) == REJECT_LOCAL_LIMIT


def test_protocol_version_tests_only_bit_0() -> None:
    accept(rq_for(ONE_CT, version=0x0003))


@pytest.mark.parametrize("calling", [" " * 16, "", " "])
def test_a_calling_ae_of_spaces_is_refused_whoever_may_call(calling: str) -> None:
    """PS3.5 6.2: an AE title made of spaces alone shall not be used; with no list
    of callers the request was accepted, the sender nameless in index and logs."""
    policy = default_acceptor_policy(Config())
    assert not policy.accepted_calling_aes
    assert negotiate(rq_for(ONE_CT, calling=calling), policy) == AAssociateRj(1, 1, 3)
    accept(rq_for(ONE_CT, calling=" MODALITY "), policy)  # spaces around a title are fine


def test_called_ae_not_checked_when_disabled() -> None:
    policy = default_acceptor_policy(Config(association=AssociationConfig(check_called_ae=False)))
    ac, negotiated = accept(rq_for(ONE_CT, called="ANYTHING"), policy)
    assert ac.called_ae == "ANYTHING"
    assert negotiated.called_ae == "ANYTHING"


def test_any_calling_ae_when_list_empty() -> None:
    policy = default_acceptor_policy(Config())
    accept(rq_for(ONE_CT, calling="WHOEVER"), policy)


def test_ae_title_padding_is_not_significant() -> None:
    ac, negotiated = accept(rq_for(ONE_CT, called=" ARCHIVE  ", calling="STORESCU "))
    assert (negotiated.called_ae, negotiated.calling_ae) == ("ARCHIVE", "STORESCU")
    # the reserved AE fields of the AC echo the request (PS3.8 9.3.3)
    assert (ac.called_ae, ac.calling_ae) == (" ARCHIVE  ", "STORESCU ")


def test_calling_host_check() -> None:
    config = Config(
        association=AssociationConfig(check_calling_host=True),
        peers=(Peer(ae_title="PACS2", host="10.0.0.5"), Peer(ae_title="CT1", host="10.0.0.9")),
    )
    policy = default_acceptor_policy(config)
    assert policy.calling_hosts == {
        "PACS2": frozenset({"10.0.0.5"}),
        "CT1": frozenset({"10.0.0.9"}),
    }
    rq = rq_for(ONE_CT, calling="PACS2")
    assert not isinstance(negotiate(rq, policy, peer_host="10.0.0.5"), AAssociateRj)
    assert negotiate(rq, policy, peer_host="10.0.0.9") == AAssociateRj(1, 1, 3)
    assert negotiate(rq, policy) == AAssociateRj(1, 1, 3)
    assert negotiate(rq_for(ONE_CT, calling="STRANGER"), policy, peer_host="10.0.0.5") == (
        AAssociateRj(1, 1, 3)
    )


@pytest.mark.parametrize(
    ("contexts", "problem"),
    [
        ([], "A-ASSOCIATE-RQ proposes no presentation context"),
        (
            [(2, CT, (ELE,))],
            "A-ASSOCIATE-RQ presentation context ID 2 is not an odd number in 1..255",
        ),
        (
            [(257, CT, (ELE,))],
            "A-ASSOCIATE-RQ presentation context ID 257 is not an odd number in 1..255",
        ),
        (
            [(1, CT, (ELE,)), (1, MR, (ELE,))],
            "A-ASSOCIATE-RQ presentation context ID 1 is repeated",
        ),
    ],
)
def test_malformed_context_list(
    contexts: Sequence[tuple[int, str, Sequence[str]]], problem: str
) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        negotiate(rq_for(contexts), POLICY)
    assert str(info.value) == problem
    assert info.value.reject == (1, 1, 1)
    assert info.value.abort == (AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER)


# --- presentation contexts ------------------------------------------------------------


def test_context_results_and_requestor_order() -> None:
    rq = rq_for(
        [
            (1, CT, (J2K, ELE, ILE)),  # we accept all three: the requestor's first wins
            (3, MR, (ILE, ELE)),
            (5, WORKLIST_FIND, (ELE, ILE)),  # not served: abstract syntax not supported
            (7, CT, ("1.2.3.4.5", "1.2.3.4.6")),  # unknown transfer syntaxes only
            (9, uids.VERIFICATION, (ILE,)),
        ]
    )
    ac, negotiated = accept(rq)
    assert ac.contexts == (
        PresentationContextAc(1, ContextResult.ACCEPTANCE, J2K),
        PresentationContextAc(3, ContextResult.ACCEPTANCE, ILE),
        PresentationContextAc(5, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),
        PresentationContextAc(7, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, ""),
        PresentationContextAc(9, ContextResult.ACCEPTANCE, ILE),
    )
    assert [int(c.result) for c in ac.contexts] == [0, 0, 3, 4, 0]
    assert negotiated.contexts == {
        1: AcceptedContext(1, CT, J2K, True, False),
        3: AcceptedContext(3, MR, ILE, True, False),
        9: AcceptedContext(9, uids.VERIFICATION, ILE, True, False),
    }
    assert ac.user_info.roles == ()


def test_transfer_syntax_restricted_by_config() -> None:
    config = Config(
        association=AssociationConfig(accept_all_transfer_syntaxes=False, transfer_syntaxes=(ELE,))
    )
    policy = default_acceptor_policy(config)
    ac, _ = accept(rq_for([(1, CT, (J2K, ILE, ELE)), (3, CT, (J2K, ILE))]), policy)
    assert ac.contexts == (
        PresentationContextAc(1, ContextResult.ACCEPTANCE, ELE),
        PresentationContextAc(3, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED),
    )


def test_per_abstract_syntax_transfer_syntaxes() -> None:
    policy = AcceptorPolicy(
        ae_title="ARCHIVE",
        abstract_syntaxes={CT: frozenset({ELE, J2K}), MR: frozenset({ILE})},
        max_pdu_length=32768,
    )
    ac, _ = accept(rq_for([(1, CT, (ILE, J2K)), (3, MR, (J2K, ELE)), (5, MR, (ELE, ILE))]), policy)
    assert [(c.result, c.transfer_syntax) for c in ac.contexts] == [(0, J2K), (4, ""), (0, ILE)]


def test_nothing_accepted_still_gives_an_ac() -> None:
    ac, negotiated = accept(rq_for([(1, WORKLIST_FIND, (ELE,)), (3, CT, ("1.2.3",))]))
    assert [c.result for c in ac.contexts] == [3, 4]
    assert negotiated.contexts == {}


def test_same_abstract_syntax_in_several_contexts() -> None:
    ac, negotiated = accept(rq_for([(1, CT, (JPEG,)), (3, CT, (ELE,)), (5, CT, (ILE,))]))
    assert [c.transfer_syntax for c in ac.contexts] == [JPEG, ELE, ILE]
    assert negotiated.context_for(CT) == AcceptedContext(1, CT, JPEG)
    assert negotiated.context_for(CT, ILE) == AcceptedContext(5, CT, ILE)
    assert negotiated.context_for(CT, BE) is None
    assert negotiated.context_for(MR) is None


def test_retired_ultrasound_storage_is_accepted() -> None:
    """Older ultrasound modalities still send the retired class (PS3.6 A, retired)."""
    rq = rq_for([(1, "1.2.840.10008.5.1.4.1.1.6", [ELE])])
    ac, negotiated = accept(rq)
    assert ac.contexts[0].result == ContextResult.ACCEPTANCE
    assert negotiated.context_for("1.2.840.10008.5.1.4.1.1.6") is not None


# --- default policy ---------------------------------------------------------------------


def test_default_acceptor_policy() -> None:
    config = Config(
        node=NodeConfig(ae_title="NODE1"),
        association=AssociationConfig(max_pdu_length=131072, check_called_ae=False),
    )
    policy = default_acceptor_policy(config)
    assert policy.ae_title == "NODE1"
    assert policy.max_pdu_length == 131072
    assert policy.check_called_ae is False
    assert policy.accepted_calling_aes == frozenset()
    assert policy.check_calling_host is False
    assert set(policy.abstract_syntaxes) == (
        uids.ACCEPTED_STORAGE_SOP_CLASSES | {uids.VERIFICATION} | uids.QR_CLASSES
    )
    assert all(
        policy.abstract_syntaxes[uid] == frozenset(uids.ALL_TRANSFER_SYNTAXES)
        for uid in uids.ACCEPTED_STORAGE_SOP_CLASSES | {uids.VERIFICATION}
    )
    # Identifiers carry no pixel data: the native encodings only.
    assert all(
        policy.abstract_syntaxes[uid]
        == {ILE, ELE, uids.EXPLICIT_VR_BE, uids.DEFLATED_EXPLICIT_VR_LE}
        for uid in uids.QR_CLASSES
    )
    # FIND: combined date-time matching, not relational queries (the SCP would
    # have to match keys below the level); MOVE, GET: relational retrieval.
    finds = {uids.PATIENT_ROOT_QR_FIND, uids.STUDY_ROOT_QR_FIND}
    assert policy.extended == {
        uid: b"\x00\x01" if uid in finds else b"\x01" for uid in uids.QR_CLASSES
    }
    assert policy.scp_role_classes == uids.ACCEPTED_STORAGE_SOP_CLASSES
    assert policy.implementation_class_uid == uids.IMPLEMENTATION_CLASS_UID
    assert policy.implementation_version_name == uids.IMPLEMENTATION_VERSION_NAME


# --- a storescu-like request ------------------------------------------------------------


def dcmtk_like_request() -> AAssociateRq:
    """Like DCMTK storescu's default: ~120 storage classes, each offering Explicit VR LE,
    Explicit VR BE and Implicit VR LE, plus a few classes we do not serve."""
    classes = [
        *sorted(uids.STORAGE_SOP_CLASSES)[:116],
        UNSERVED,
        "1.2.840.10008.5.1.4.1.1.501.1",  # DICOS CT Image Storage (not medical)
        "1.2.840.10008.5.1.4.1.1.601.1",  # Eddy Current Image Storage (DICONDE)
        "1.2.826.0.1.3680043.10.99.1",  # a private SOP class
    ]
    return rq_for(
        [(2 * i + 1, uid, (ELE, BE, ILE)) for i, uid in enumerate(classes)],
        max_length=16384,
    )


def test_120_context_request() -> None:
    rq = dcmtk_like_request()
    assert len(rq.contexts) == 120
    ac, negotiated = accept(rq)
    assert [c.id for c in ac.contexts] == list(range(1, 241, 2))
    assert all(c.result == 0 and c.transfer_syntax == ELE for c in ac.contexts[:116])
    assert all(c.result == 3 for c in ac.contexts[116:])
    assert len(negotiated.contexts) == 116


def test_120_context_request_is_fast() -> None:
    rq = dcmtk_like_request()
    best = float("inf")
    for _ in range(50):
        start = time.perf_counter()
        negotiate(rq, POLICY)
        best = min(best, time.perf_counter() - start)
    assert best < 1e-3, f"negotiating 120 contexts took {best * 1e6:.0f} us"


# --- pynetdicom as an oracle for the context results -------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    proposals=proposals(8),
    accepted_ts=st.sets(_TRANSFER, min_size=1),
)
def test_results_agree_with_pynetdicom(
    proposals: list[tuple[str, list[str]]], accepted_ts: set[str]
) -> None:
    from pynetdicom.presentation import build_context, negotiate_as_acceptor

    served = [CT, MR, uids.VERIFICATION]
    policy = AcceptorPolicy(
        ae_title="ARCHIVE",
        abstract_syntaxes={uid: frozenset(accepted_ts) for uid in served},
        max_pdu_length=16384,
    )
    rq = rq_for([(2 * i + 1, a, tuple(t)) for i, (a, t) in enumerate(proposals)])
    ac, _ = accept(rq, policy)

    rq_contexts = []
    for context in rq.contexts:
        pcx = build_context(context.abstract_syntax, list(context.transfer_syntaxes))
        pcx.context_id = context.id
        rq_contexts.append(pcx)
    ours_ts = sorted(accepted_ts)
    theirs, _ = negotiate_as_acceptor(rq_contexts, [build_context(uid, ours_ts) for uid in served])
    assert [(c.context_id, c.result) for c in theirs] == [
        (c.id, int(c.result)) for c in ac.contexts
    ]
    for mine, proposal in zip(ac.contexts, rq.contexts, strict=True):
        if mine.result == 0:
            # pynetdicom takes the acceptor's order; we take the requestor's first match
            assert mine.transfer_syntax == next(
                t for t in proposal.transfer_syntaxes if t in accepted_ts
            )
