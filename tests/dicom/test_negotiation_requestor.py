"""Association negotiation, requestor side: build_request and accepted.

The A-ASSOCIATE-RQ we propose and its errors, reading the A-ASSOCIATE-AC back
(accepted contexts, roles, the asynchronous operations window, why a proposal was
refused) and its protocol errors, and both sides agreeing on what was negotiated.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.dicom import uids
from archive.dicom.errors import AbortReason, AbortSource, LocalProtocolError, RemoteProtocolError
from archive.dicom.ul.negotiation import AcceptedContext, Negotiated, accepted, build_request
from archive.dicom.ul.pdu import (
    APPLICATION_CONTEXT,
    AAssociateAc,
    AAssociateRq,
    AsyncOperationsWindow,
    ContextResult,
    PresentationContextAc,
    PresentationContextRq,
    RoleSelection,
    UserIdentityRq,
    UserInformation,
)
from tests.dicom.negotiation_helpers import (
    _ABSTRACT,
    CT,
    ELE,
    ILE,
    J2K,
    MR,
    UNSERVED,
    WORKLIST_FIND,
    accept,
    proposals,
)


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


@pytest.mark.parametrize("max_length", [1, 6])
def test_an_acceptor_limit_with_no_room_for_data_aborts(max_length: int) -> None:
    rq = build_request("A", "B", [(CT, [ELE])], max_pdu_length=0)
    ac = AAssociateAc(
        called_ae="B",
        calling_ae="A",
        contexts=(PresentationContextAc(1, 0, ELE),),
        user_info=UserInformation(max_length=max_length),
    )
    with pytest.raises(RemoteProtocolError, match="leaves no room for data") as info:
        accepted(rq, ac)
    assert info.value.abort == (AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER)


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


# --- both sides agree ----------------------------------------------------------------------

_ROLE = st.builds(RoleSelection, _ABSTRACT, st.booleans(), st.booleans())


@settings(max_examples=300, deadline=None)
@given(
    proposals=proposals(10),
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
