"""Association negotiation: the user information items of the A-ASSOCIATE-AC.

Maximum length and implementation identification, the asynchronous operations
window, user identity, SCP/SCU role selection (PS3.7 D.3.3.4) and SOP Class
Extended Negotiation (PS3.7 D.3.3.5), as the acceptor answers them (and, for
extended negotiation, as the requestor reads the answer back).
"""

from __future__ import annotations

import pytest

from archive.config import AssociationConfig, Config, RetrieveConfig
from archive.dicom import uids
from archive.dicom.ul import codec
from archive.dicom.ul.negotiation import (
    AcceptedContext,
    AcceptorPolicy,
    accepted,
    build_request,
    default_acceptor_policy,
    negotiate,
)
from archive.dicom.ul.pdu import (
    APPLICATION_CONTEXT,
    AAssociateRj,
    AsyncOperationsWindow,
    ContextResult,
    PresentationContextAc,
    RoleSelection,
    SopClassExtended,
    UserIdentityRq,
    UserInformation,
)
from tests.dicom.negotiation_helpers import (
    CT,
    DCMTK_UID,
    ELE,
    ILE,
    JPEG,
    MR,
    ONE_CT,
    POLICY,
    WORKLIST_FIND,
    accept,
    rq_for,
)

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


@pytest.mark.parametrize("max_length", [1, 6])
def test_a_peer_limit_with_no_room_for_data_is_rejected(max_length: int) -> None:
    """A Maximum Length Received of 1-6 leaves no byte for data after a PDV item's
    six-byte header: no answer could be framed, so the association is rejected
    (permanent, service user, no reason given) before any request is carried out."""
    result = negotiate(rq_for(ONE_CT, max_length=max_length), POLICY)
    assert result == AAssociateRj(1, 1, 1)


def test_the_smallest_useful_peer_limit_is_accepted() -> None:
    _, negotiated = accept(rq_for(ONE_CT, max_length=7))
    assert negotiated.peer_max_pdu == 7


@pytest.mark.parametrize(
    ("proposed", "reply"),
    [
        # (requestor invokes, requestor performs) -> what the reply allows the
        # requestor (PS3.7 D.3.3.3): one operation outstanding (we answer one
        # request at a time), and sub-operations performed at once up to what
        # it offered (0 = no limit) and retrieve.get_window (4 by default).
        ((16, 0), (1, 4)),
        ((1, 8), (1, 4)),
        ((1, 2), (1, 2)),
        ((1, 1), (1, 1)),
        ((5, 1), (1, 1)),
        ((0, 0), (1, 4)),
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


def test_a_context_the_requestor_only_receives_on_takes_any_class_and_syntax_we_send() -> None:
    """C-GET: a context proposed with the SCP role alone is one we send C-STOREs on,
    in the syntax an instance was stored in. It is accepted whatever syntaxes we
    accept for storing (here only the native ones) and for a class we do not
    store by C-STORE (a private one an import brought), but not for a class we
    serve as SCP only (Verification), nor when the requestor may send on it too."""
    private = "1.3.12.2.1107.5.9.1"
    policy = default_acceptor_policy(
        Config(association=AssociationConfig(accept_all_transfer_syntaxes=False))
    )
    rq = rq_for(
        [
            (1, CT, (JPEG,)),
            (3, private, (ELE,)),
            (5, uids.VERIFICATION, (ILE,)),
            (7, MR, (JPEG,)),
        ],
        roles=(
            RoleSelection(CT, scu_role=False, scp_role=True),
            RoleSelection(private, scu_role=False, scp_role=True),
            RoleSelection(uids.VERIFICATION, scu_role=False, scp_role=True),
            RoleSelection(MR, scu_role=True, scp_role=True),  # it may send MR too: stored as ever
        ),
    )
    ac, negotiated = accept(rq, policy)
    assert [c.result for c in ac.contexts] == [
        ContextResult.ACCEPTANCE,
        ContextResult.ACCEPTANCE,
        ContextResult.USER_REJECTION,
        ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED,
    ]
    assert negotiated.contexts == {
        1: AcceptedContext(1, CT, JPEG, scu_role=False, scp_role=True),
        3: AcceptedContext(3, private, ELE, scu_role=False, scp_role=True),
    }


@pytest.mark.parametrize("abstract", ["not.a.uid", "1." + "2" * 64, "1..2"])
def test_a_receive_only_context_of_no_uid_is_refused_and_the_ac_encodes(abstract: str) -> None:
    """Its class went back in the role reply, whose encoding then failed: the
    association ended in an internal-error A-ABORT instead of an answer."""
    rq = rq_for(
        [(1, abstract, (ELE,)), (3, CT, (ELE,))],
        roles=(RoleSelection(abstract, scu_role=False, scp_role=True),),
    )
    ac, negotiated = accept(rq)
    assert [c.result for c in ac.contexts] == [
        ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED,
        ContextResult.ACCEPTANCE,
    ]
    assert list(negotiated.contexts) == [3]
    codec.encode(ac)  # no LocalProtocolError


# --- SOP Class Extended Negotiation (PS3.7 D.3.3.5, PS3.4 C.5.1.1) ------------------------


def test_extended_negotiation_answers_option_by_option() -> None:
    """Combined date-time (1) agreed; relational queries (0: the SCP would have to
    match keys below the level, PS3.4 C.4.1.3.2) and fuzzy PN (2) not."""
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
        SopClassExtended(find, b"\x00\x01\x00"),
        SopClassExtended(uids.STUDY_ROOT_QR_MOVE, b"\x00"),
    )
    # Option byte n agreed = reply byte n is 1; the C-FIND provider reads bytes 0-1.
    assert negotiated.extended[find][0:1] != b"\x01"
    assert negotiated.extended[find][1:2] == b"\x01"
    assert negotiated.extended[find][2:3] != b"\x01"
    assert negotiated.extended.get(uids.STUDY_ROOT_QR_MOVE, b"")[0:1] != b"\x01"
    assert negotiated.extended.get(CT, b"")[0:1] != b"\x01"
    # The requestor reads the same agreement from the AC.
    mirror = accepted(rq, ac)
    assert mirror.extended == {find: b"\x00\x01\x00", uids.STUDY_ROOT_QR_MOVE: b"\x00"}
    assert mirror.extended[find][1:2] == b"\x01"
