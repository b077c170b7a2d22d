"""Association negotiation: acceptor (negotiate) and requestor (build_request, accepted)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.config import AssociationConfig, Config, NodeConfig, Peer, RetrieveConfig
from archive.dicom import uids
from archive.dicom.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RejectReason,
    RejectResult,
    RejectSource,
    RemoteProtocolError,
)
from archive.dicom.ul.negotiation import (
    REJECT_LOCAL_LIMIT,
    AcceptedContext,
    AcceptorPolicy,
    Negotiated,
    accepted,
    build_request,
    default_acceptor_policy,
    negotiate,
)
from archive.dicom.ul.pdu import (
    APPLICATION_CONTEXT,
    AAssociateAc,
    AAssociateRj,
    AAssociateRq,
    AsyncOperationsWindow,
    ContextResult,
    PresentationContextAc,
    PresentationContextRq,
    RoleSelection,
    SopClassExtended,
    UserIdentityRq,
    UserInformation,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
UNSERVED = "1.2.840.10008.5.1.1.27"  # Stored Print Storage (Retired): not served
WORKLIST_FIND = "1.2.840.10008.5.1.4.31"  # Modality Worklist FIND: not served
ELE, ILE, BE = uids.EXPLICIT_VR_LE, uids.IMPLICIT_VR_LE, uids.EXPLICIT_VR_BE
J2K, JPEG = uids.JPEG_2000_LOSSLESS, uids.JPEG_BASELINE_8BIT
DCMTK_UID = "1.2.276.0.7230010.3.0.3.6.8"

POLICY = default_acceptor_policy(
    Config(association=AssociationConfig(accepted_calling_aes=("STORESCU", "PACS2")))
)


def rq_for(
    contexts: Sequence[tuple[int, str, Sequence[str]]],
    *,
    called: str = "ARCHIVE",
    calling: str = "STORESCU",
    roles: tuple[RoleSelection, ...] = (),
    async_ops: AsyncOperationsWindow | None = None,
    identity: UserIdentityRq | None = None,
    max_length: int | None = 16384,
    version: int = 1,
    app: str = APPLICATION_CONTEXT,
) -> AAssociateRq:
    return AAssociateRq(
        called_ae=called,
        calling_ae=calling,
        contexts=tuple(PresentationContextRq(i, a, tuple(t)) for i, a, t in contexts),
        user_info=UserInformation(
            max_length=max_length,
            implementation_class_uid=DCMTK_UID,
            implementation_version_name="OFFIS_DCMTK_368",
            async_ops=async_ops,
            roles=roles,
            user_identity_rq=identity,
        ),
        application_context=app,
        protocol_version=version,
    )


def accept(rq: AAssociateRq, policy: AcceptorPolicy = POLICY) -> tuple[AAssociateAc, Negotiated]:
    result = negotiate(rq, policy)
    assert not isinstance(result, AAssociateRj), result
    return result


ONE_CT = [(1, CT, (ELE, ILE))]


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


# --- user information ------------------------------------------------------------------


def test_user_information_reply() -> None:
    ac, negotiated = accept(rq_for(ONE_CT, max_length=28672))
    assert ac.user_info == UserInformation(
        max_length=Config().association.max_pdu_length,
        implementation_class_uid=uids.IMPLEMENTATION_CLASS_UID,
        implementation_version_name=uids.IMPLEMENTATION_VERSION_NAME,
    )
    assert (ac.application_context, ac.protocol_version) == (APPLICATION_CONTEXT, 1)
    assert negotiated.max_pdu_length == Config().association.max_pdu_length
    assert negotiated.peer_max_pdu == 28672
    assert negotiated.peer_implementation_class_uid == DCMTK_UID
    assert negotiated.peer_implementation_version_name == "OFFIS_DCMTK_368"
    assert negotiated.async_ops == (1, 1)
    assert negotiated.user_identity is None


@pytest.mark.parametrize("max_length", [0, None])
def test_peer_without_limit(max_length: int | None) -> None:
    _, negotiated = accept(rq_for(ONE_CT, max_length=max_length))
    assert negotiated.peer_max_pdu == 0


@pytest.mark.parametrize(
    ("proposed", "reply"),
    [
        # (requestor invokes, requestor performs) -> (we invoke, we perform):
        # we invoke at most what it performs (0 = no limit) and what
        # retrieve.get_window allows (4 by default); we perform one at a time.
        ((16, 0), (4, 1)),
        ((1, 8), (4, 1)),
        ((1, 2), (2, 1)),
        ((1, 1), (1, 1)),
        ((5, 1), (1, 1)),
    ],
)
def test_async_window_reply(proposed: tuple[int, int], reply: tuple[int, int]) -> None:
    ac, negotiated = accept(rq_for(ONE_CT, async_ops=AsyncOperationsWindow(*proposed)))
    assert ac.user_info.async_ops == AsyncOperationsWindow(*reply)
    assert negotiated.async_ops == reply


def test_async_window_answered_only_when_proposed() -> None:
    ac, negotiated = accept(rq_for(ONE_CT))
    assert ac.user_info.async_ops is None
    assert negotiated.async_ops == (1, 1)


def test_async_window_follows_the_config() -> None:
    policy = default_acceptor_policy(Config(retrieve=RetrieveConfig(get_window=1)))
    ac, _ = accept(rq_for(ONE_CT, async_ops=AsyncOperationsWindow(1, 8)), policy)
    assert ac.user_info.async_ops == AsyncOperationsWindow(1, 1)


def test_user_identity_is_not_answered_but_kept() -> None:
    identity = UserIdentityRq(2, True, b"alice", b"secret")
    ac, negotiated = accept(rq_for(ONE_CT, identity=identity))
    assert ac.user_info.user_identity_ac is None
    assert negotiated.user_identity == identity


# --- role selection (PS3.7 D.3.3.4) ------------------------------------------------------


def test_role_replies() -> None:
    rq = rq_for(
        [
            (1, CT, (ELE,)),
            (3, MR, (ELE,)),
            (5, uids.VERIFICATION, (ILE,)),
            (7, WORKLIST_FIND, (ELE,)),
            (9, CT, (ILE,)),
        ],
        roles=(
            RoleSelection(CT, scu_role=False, scp_role=True),  # C-GET style: requestor is SCP
            RoleSelection(CT, scu_role=True, scp_role=False),  # a second item: ignored
            RoleSelection(MR, scu_role=True, scp_role=True),
            RoleSelection(uids.VERIFICATION, scu_role=True, scp_role=True),
            RoleSelection(WORKLIST_FIND, scu_role=True, scp_role=False),  # rejected context
            RoleSelection("1.2.840.10008.5.1.4.1.1.7", True, True),  # never proposed
        ),
    )
    ac, negotiated = accept(rq)
    assert ac.user_info.roles == (
        RoleSelection(CT, scu_role=False, scp_role=True),
        RoleSelection(MR, scu_role=True, scp_role=True),
        # we never act as SCU for Verification: SCP role refused, SCU role kept
        RoleSelection(uids.VERIFICATION, scu_role=True, scp_role=False),
    )
    assert negotiated.contexts == {
        1: AcceptedContext(1, CT, ELE, scu_role=False, scp_role=True),
        3: AcceptedContext(3, MR, ELE, scu_role=True, scp_role=True),
        5: AcceptedContext(5, uids.VERIFICATION, ILE, scu_role=True, scp_role=False),
        9: AcceptedContext(9, CT, ILE, scu_role=False, scp_role=True),
    }
    assert [c.result for c in ac.contexts] == [0, 0, 0, 3, 0]


def test_role_leaving_no_usable_role_rejects_the_context() -> None:
    rq = rq_for(
        [(1, uids.VERIFICATION, (ILE,)), (3, CT, (ELE,))],
        roles=(
            RoleSelection(uids.VERIFICATION, scu_role=False, scp_role=True),
            RoleSelection(CT, scu_role=False, scp_role=False),
        ),
    )
    ac, negotiated = accept(rq)
    assert ac.contexts == (
        PresentationContextAc(1, ContextResult.USER_REJECTION),
        PresentationContextAc(3, ContextResult.USER_REJECTION),
    )
    assert ac.user_info.roles == ()
    assert negotiated.contexts == {}


def test_scp_role_only_for_scp_role_classes() -> None:
    policy = AcceptorPolicy(
        ae_title="ARCHIVE",
        abstract_syntaxes={CT: frozenset({ELE}), MR: frozenset({ELE})},
        max_pdu_length=16384,
        scp_role_classes=frozenset({MR}),
    )
    rq = rq_for(
        [(1, CT, (ELE,)), (3, MR, (ELE,))],
        roles=(RoleSelection(CT, True, True), RoleSelection(MR, True, True)),
    )
    ac, _ = accept(rq, policy)
    assert ac.user_info.roles == (RoleSelection(CT, True, False), RoleSelection(MR, True, True))


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
    # FIND: relational queries and combined date-time matching; MOVE, GET: relational.
    finds = {uids.PATIENT_ROOT_QR_FIND, uids.STUDY_ROOT_QR_FIND}
    assert policy.extended == {
        uid: b"\x01\x01" if uid in finds else b"\x01" for uid in uids.QR_CLASSES
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

_ABSTRACT = st.sampled_from([CT, MR, uids.VERIFICATION, WORKLIST_FIND, UNSERVED])
_TRANSFER = st.sampled_from([ELE, ILE, BE, J2K, JPEG, "1.2.3.4", uids.JPEG_XL])


@settings(max_examples=200, deadline=None)
@given(
    proposals=st.lists(
        st.tuples(_ABSTRACT, st.lists(_TRANSFER, min_size=1, max_size=4, unique=True)),
        min_size=1,
        max_size=8,
    ),
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


# --- requestor side ----------------------------------------------------------------------


def test_build_request() -> None:
    roles = (RoleSelection(CT, scu_role=False, scp_role=True),)
    identity = UserIdentityRq(1, False, b"bob")
    rq = build_request(
        "ARCHIVE",
        "PACS2",
        [(uids.VERIFICATION, [ILE]), (CT, (ELE, ILE)), (MR, [J2K])],
        max_pdu_length=65536,
        roles=roles,
        async_ops=AsyncOperationsWindow(1, 1),
        user_identity=identity,
    )
    assert rq == AAssociateRq(
        called_ae="PACS2",
        calling_ae="ARCHIVE",
        contexts=(
            PresentationContextRq(1, uids.VERIFICATION, (ILE,)),
            PresentationContextRq(3, CT, (ELE, ILE)),
            PresentationContextRq(5, MR, (J2K,)),
        ),
        user_info=UserInformation(
            max_length=65536,
            implementation_class_uid=uids.IMPLEMENTATION_CLASS_UID,
            implementation_version_name=uids.IMPLEMENTATION_VERSION_NAME,
            async_ops=AsyncOperationsWindow(1, 1),
            roles=roles,
            user_identity_rq=identity,
        ),
        application_context=APPLICATION_CONTEXT,
        protocol_version=1,
    )


def test_build_request_128_contexts() -> None:
    proposals = [(CT, [ELE])] * 128
    rq = build_request("A", "B", proposals, max_pdu_length=0)
    assert [c.id for c in rq.contexts] == list(range(1, 256, 2))
    with pytest.raises(LocalProtocolError) as info:
        build_request("A", "B", [*proposals, (MR, [ELE])], max_pdu_length=0)
    assert str(info.value) == "an association proposes 1 to 128 presentation contexts, not 129"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("A", "B", []), {}, "an association proposes 1 to 128 presentation contexts, not 0"),
        (("A", "B", [(CT, [])]), {}, f"no transfer syntax proposed for {CT}"),
        (("", "B", [(CT, [ELE])]), {}, "AE title '' is not 1 to 16 characters"),
        (("A", "B" * 17, [(CT, [ELE])]), {}, f"AE title {'B' * 17!r} is not 1 to 16 characters"),
        (
            ("A", "B", [(CT, [ELE])]),
            {"roles": (RoleSelection(MR, True, True),)},
            f"role selection for {MR} must name a proposed class, once",
        ),
        (
            ("A", "B", [(CT, [ELE])]),
            {"roles": (RoleSelection(CT, True, True), RoleSelection(CT, True, False))},
            f"role selection for {CT} must name a proposed class, once",
        ),
        (
            ("A", "B", [(CT, [ELE])]),
            {"max_pdu_length": 2**32},
            "Maximum Length 4294967296 does not fit 32 bits",
        ),
    ],
)
def test_build_request_errors(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    kwargs.setdefault("max_pdu_length", 16384)
    with pytest.raises(LocalProtocolError) as info:
        build_request(*args, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message


def _ac(
    rq: AAssociateRq, contexts: tuple[PresentationContextAc, ...], **info: object
) -> AAssociateAc:
    return AAssociateAc(
        called_ae=rq.called_ae,
        calling_ae=rq.calling_ae,
        contexts=contexts,
        user_info=UserInformation(max_length=32768, implementation_class_uid="1.2.3", **info),  # type: ignore[arg-type]
    )


def test_accepted() -> None:
    rq = build_request(
        "ARCHIVE",
        "PACS2",
        [(CT, [J2K, ELE]), (MR, [ELE]), (uids.VERIFICATION, [ILE])],
        max_pdu_length=8192,
    )
    ac = _ac(
        rq,
        (
            PresentationContextAc(5, ContextResult.ACCEPTANCE, ILE),
            PresentationContextAc(1, ContextResult.ACCEPTANCE, ELE),
            PresentationContextAc(3, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, "1.9.9"),
        ),
        implementation_version_name="PEER",
    )
    negotiated = accepted(rq, ac)
    assert negotiated == Negotiated(
        calling_ae="ARCHIVE",
        called_ae="PACS2",
        contexts={
            1: AcceptedContext(1, CT, ELE, True, False),
            5: AcceptedContext(5, uids.VERIFICATION, ILE, True, False),
        },
        max_pdu_length=8192,
        peer_max_pdu=32768,
        peer_implementation_class_uid="1.2.3",
        peer_implementation_version_name="PEER",
        async_ops=(1, 1),
        refused=((MR, (ELE,), ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED),),
    )
    assert list(negotiated.contexts) == [1, 5]


def test_accepted_missing_answer_means_not_accepted() -> None:
    rq = build_request("A", "B", [(CT, [ELE]), (MR, [ELE])], max_pdu_length=0)
    negotiated = accepted(rq, _ac(rq, (PresentationContextAc(3, ContextResult.ACCEPTANCE, ELE),)))
    assert list(negotiated.contexts) == [3]


@pytest.mark.parametrize(
    ("contexts", "version", "message"),
    [
        (
            (PresentationContextAc(7, ContextResult.ACCEPTANCE, ELE),),
            1,
            "A-ASSOCIATE-AC answers presentation context 7 which we did not propose",
        ),
        (
            (PresentationContextAc(7, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED),),
            1,
            "A-ASSOCIATE-AC answers presentation context 7 which we did not propose",
        ),
        (
            (PresentationContextAc(1, ContextResult.ACCEPTANCE, ILE),),
            1,
            "A-ASSOCIATE-AC accepts presentation context 1 with transfer syntax "
            f"'{ILE}', which we did not offer in it",
        ),
        (
            # offered in another context is not good enough
            (PresentationContextAc(1, ContextResult.ACCEPTANCE, J2K),),
            1,
            "A-ASSOCIATE-AC accepts presentation context 1 with transfer syntax "
            f"'{J2K}', which we did not offer in it",
        ),
        (
            (
                PresentationContextAc(1, ContextResult.ACCEPTANCE, ELE),
                PresentationContextAc(1, ContextResult.ACCEPTANCE, ELE),
            ),
            1,
            "A-ASSOCIATE-AC answers presentation context 1 twice",
        ),
        (
            (PresentationContextAc(1, ContextResult.ACCEPTANCE, ELE),),
            2,
            "A-ASSOCIATE-AC protocol version 0x0002 lacks version 1",
        ),
    ],
)
def test_accepted_errors(
    contexts: tuple[PresentationContextAc, ...], version: int, message: str
) -> None:
    rq = build_request("A", "B", [(CT, [ELE]), (MR, [J2K])], max_pdu_length=0)
    ac = AAssociateAc(
        called_ae="B",
        calling_ae="A",
        contexts=contexts,
        user_info=UserInformation(max_length=0),
        protocol_version=version,
    )
    with pytest.raises(RemoteProtocolError) as info:
        accepted(rq, ac)
    assert str(info.value) == message
    assert info.value.abort == (AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER)
    assert info.value.reject is None


def test_accepted_roles() -> None:
    rq = build_request(
        "A",
        "B",
        [
            (CT, [ELE]),
            (MR, [ELE]),
            (uids.VERIFICATION, [ILE]),
            (UNSERVED, [ELE]),
            (WORKLIST_FIND, [ELE]),
        ],
        max_pdu_length=0,
        roles=(
            RoleSelection(CT, scu_role=False, scp_role=True),
            RoleSelection(MR, scu_role=True, scp_role=False),
            RoleSelection(UNSERVED, scu_role=False, scp_role=True),
            RoleSelection(WORKLIST_FIND, scu_role=True, scp_role=True),
        ),
    )
    ok = ContextResult.ACCEPTANCE
    ac = _ac(
        rq,
        tuple(
            PresentationContextAc(i, ok, c.transfer_syntaxes[0])
            for i, c in zip(range(1, 10, 2), rq.contexts, strict=True)
        ),
        roles=(
            RoleSelection(CT, scu_role=False, scp_role=True),  # our proposal accepted
            RoleSelection(MR, scu_role=True, scp_role=True),  # SCP we did not propose: ignored
            RoleSelection(uids.VERIFICATION, True, True),  # reply to no proposal: ignored
            RoleSelection(UNSERVED, scu_role=False, scp_role=False),  # refused: unusable
            # no reply for WORKLIST_FIND: the defaults apply
        ),
    )
    negotiated = accepted(rq, ac)
    assert negotiated.contexts == {
        1: AcceptedContext(1, CT, ELE, scu_role=False, scp_role=True),
        3: AcceptedContext(3, MR, ELE, scu_role=True, scp_role=False),
        5: AcceptedContext(5, uids.VERIFICATION, ILE, scu_role=True, scp_role=False),
        9: AcceptedContext(9, WORKLIST_FIND, ELE, scu_role=True, scp_role=False),
    }


def test_accepted_async_window() -> None:
    proposed = build_request(
        "A", "B", [(CT, [ELE])], max_pdu_length=0, async_ops=AsyncOperationsWindow(8, 8)
    )
    ac = _ac(
        proposed,
        (PresentationContextAc(1, ContextResult.ACCEPTANCE, ELE),),
        async_ops=AsyncOperationsWindow(4, 1),
    )
    assert accepted(proposed, ac).async_ops == (4, 1)
    plain = build_request("A", "B", [(CT, [ELE])], max_pdu_length=0)
    assert accepted(plain, ac).async_ops == (1, 1)


# --- both sides agree ----------------------------------------------------------------------

_ROLE = st.builds(RoleSelection, _ABSTRACT, st.booleans(), st.booleans())


@settings(max_examples=300, deadline=None)
@given(
    proposals=st.lists(
        st.tuples(_ABSTRACT, st.lists(_TRANSFER, min_size=1, max_size=4, unique=True)),
        min_size=1,
        max_size=10,
    ),
    roles=st.lists(_ROLE, max_size=4, unique_by=lambda r: r.sop_class_uid),
)
def test_both_sides_agree(
    proposals: list[tuple[str, list[str]]], roles: list[RoleSelection]
) -> None:
    proposed = {abstract for abstract, _ in proposals}
    roles = [r for r in roles if r.sop_class_uid in proposed]
    rq = build_request("STORESCU", "ARCHIVE", proposals, max_pdu_length=16384, roles=roles)
    ac, acceptor_view = accept(rq)
    requestor_view = accepted(rq, ac)
    assert requestor_view.contexts == acceptor_view.contexts
    assert requestor_view.peer_max_pdu == acceptor_view.max_pdu_length
    assert acceptor_view.peer_max_pdu == requestor_view.max_pdu_length
    for context in acceptor_view.contexts.values():
        assert context.scu_role or context.scp_role


def test_retired_ultrasound_storage_is_accepted() -> None:
    """Older ultrasound modalities still send the retired class (PS3.6 A, retired)."""
    rq = rq_for([(1, "1.2.840.10008.5.1.4.1.1.6", [ELE])])
    ac, negotiated = accept(rq)
    assert ac.contexts[0].result == ContextResult.ACCEPTANCE
    assert negotiated.context_for("1.2.840.10008.5.1.4.1.1.6") is not None


def test_requestor_keeps_why_each_proposal_was_refused() -> None:
    """PS3.8 Table 9-18 results of refused contexts survive into Negotiated."""
    rq = build_request(
        "A", "B", [(CT, [ELE]), (UNSERVED, [ELE]), (MR, ["1.2.3"])], max_pdu_length=0
    )
    ac = _ac(
        rq,
        (
            PresentationContextAc(1, ContextResult.ACCEPTANCE, ELE),
            PresentationContextAc(3, ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED, ""),
            PresentationContextAc(5, ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED, ""),
        ),
    )
    negotiated = accepted(rq, ac)
    assert negotiated.refusal(CT, ELE) is None
    assert negotiated.refusal(UNSERVED, ELE) == ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
    assert negotiated.refusal(MR, "1.2.3") == ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED


# --- SOP Class Extended Negotiation (PS3.7 D.3.3.5, PS3.4 C.5.1.1) ------------------------


def test_extended_negotiation_answers_option_by_option() -> None:
    """Relational queries (byte 0) and combined date-time (1) agreed; fuzzy PN (2) not."""
    policy = default_acceptor_policy(Config())
    find = uids.STUDY_ROOT_QR_FIND
    rq = build_request(
        "SCU",
        "ARCHIVE",
        [(find, [ELE]), (uids.STUDY_ROOT_QR_MOVE, [ELE]), (CT, [ELE])],
        max_pdu_length=16384,
        extended=[
            SopClassExtended(find, b"\x01\x01\x01"),
            SopClassExtended(uids.STUDY_ROOT_QR_MOVE, b"\x00"),
            SopClassExtended(CT, b"\x01"),  # storage: we negotiate nothing for it
            SopClassExtended(uids.PATIENT_ROOT_QR_GET, b"\x01"),  # not proposed
        ],
    )
    ac, negotiated = accept(rq, policy)
    assert ac.user_info.extended == (
        SopClassExtended(find, b"\x01\x01\x00"),
        SopClassExtended(uids.STUDY_ROOT_QR_MOVE, b"\x00"),
    )
    # Option byte n agreed = reply byte n is 1; the C-FIND provider reads bytes 0-1.
    assert negotiated.extended[find][0:1] == b"\x01"
    assert negotiated.extended[find][1:2] == b"\x01"
    assert negotiated.extended[find][2:3] != b"\x01"
    assert negotiated.extended.get(uids.STUDY_ROOT_QR_MOVE, b"")[0:1] != b"\x01"
    assert negotiated.extended.get(CT, b"")[0:1] != b"\x01"
    # The requestor reads the same agreement from the AC.
    mirror = accepted(rq, ac)
    assert mirror.extended == {find: b"\x01\x01\x00", uids.STUDY_ROOT_QR_MOVE: b"\x00"}
    assert mirror.extended[find][0:1] == b"\x01"
