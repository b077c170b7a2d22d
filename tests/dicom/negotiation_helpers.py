"""Requests, a policy and strategies shared by the association negotiation tests.

A DCMTK-like A-ASSOCIATE-RQ built from a context list (``rq_for``), the acceptor
policy the tests negotiate against (``POLICY``, ``accept``) and the Hypothesis
strategies for abstract and transfer syntaxes. Used by ``test_negotiation``,
``test_negotiation_user_info`` and ``test_negotiation_requestor``; holds no tests
itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from archive.config import AssociationConfig, Config
from archive.dicom import uids
from archive.dicom.ul.negotiation import (
    AcceptorPolicy,
    Negotiated,
    default_acceptor_policy,
    negotiate,
)
from archive.dicom.ul.pdu import (
    APPLICATION_CONTEXT,
    AAssociateAc,
    AAssociateRj,
    AAssociateRq,
    AsyncOperationsWindow,
    PresentationContextRq,
    RoleSelection,
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


# Hypothesis strategies: served and unserved classes, known and unknown syntaxes.
_ABSTRACT = st.sampled_from([CT, MR, uids.VERIFICATION, WORKLIST_FIND, UNSERVED])
_TRANSFER = st.sampled_from([ELE, ILE, BE, J2K, JPEG, "1.2.3.4", uids.JPEG_XL])


def proposals(max_size: int) -> st.SearchStrategy[list[tuple[str, list[str]]]]:
    """Presentation contexts a requestor may propose: a class and 1-4 syntaxes each."""
    return st.lists(
        st.tuples(_ABSTRACT, st.lists(_TRANSFER, min_size=1, max_size=4, unique=True)),
        min_size=1,
        max_size=max_size,
    )
