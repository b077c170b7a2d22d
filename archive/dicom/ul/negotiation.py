"""Association negotiation, both sides, over the records of :mod:`archive.dicom.ul.pdu`.

Pure functions, no I/O. The acceptor examines an A-ASSOCIATE-RQ against an
:class:`AcceptorPolicy` with :func:`negotiate` and gets either an A-ASSOCIATE-RJ
(PS3.8 9.3.4) or an A-ASSOCIATE-AC plus the :class:`Negotiated` record of what was
agreed. The requestor builds its request with :func:`build_request` and checks
the answer with :func:`accepted`, which yields the same record. Presentation
contexts follow PS3.8 7.1.1.13-14 and 9.3.2.2 / 9.3.3.2; the user information
sub-items follow PS3.7 Annex D.3.3.

Roles in :class:`AcceptedContext` are the association-REQUESTOR's, as the role
fields of PS3.7 D.3.3.4 are: ``scu_role`` means the requestor may send requests on
the context (the usual case), ``scp_role`` that the acceptor may (C-GET
sub-operations). Both sides read the record the same way.

What this module is not: the PDU codec, the state machine, or the driver that
counts associations (a request over the limit gets :data:`REJECT_LOCAL_LIMIT`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from archive.dicom.errors import (
    AbortReason,
    AbortSource,
    LocalProtocolError,
    RejectReason,
    RejectResult,
    RejectSource,
    RemoteProtocolError,
)
from archive.dicom.uids import (
    ACCEPTED_STORAGE_SOP_CLASSES,
    ALL_TRANSFER_SYNTAXES,
    EXPLICIT_VR_LE,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LE,
    NATIVE_TRANSFER_SYNTAXES,
    PATIENT_ROOT_QR_FIND,
    QR_CLASSES,
    STUDY_ROOT_QR_FIND,
    VERIFICATION,
    usable_uid,
)
from archive.dicom.ul.pdata import PDV_OVERHEAD
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

if TYPE_CHECKING:  # the config layer sits above this one: no run-time import
    from archive.config import Config

__all__ = [
    "MAX_CONTEXTS",
    "REJECT_LOCAL_LIMIT",
    "AcceptedContext",
    "AcceptorPolicy",
    "Negotiated",
    "accepted",
    "build_request",
    "default_acceptor_policy",
    "negotiate",
]

#: Presentation context IDs are odd 1..255 (PS3.8 9.3.2.2), so 128 at most.
MAX_CONTEXTS = 128

#: What the driver answers when ``max_associations`` are already open: rejected
#: transient, presentation-related provider, local limit exceeded (PS3.8 9.3.4).
REJECT_LOCAL_LIMIT = AAssociateRj(
    result=RejectResult.TRANSIENT,
    source=RejectSource.SERVICE_PROVIDER_PRESENTATION,
    reason=RejectReason.LOCAL_LIMIT_EXCEEDED,
)

_ACCEPTANCE = ContextResult.ACCEPTANCE
_ABSTRACT_NOT_SUPPORTED = ContextResult.ABSTRACT_SYNTAX_NOT_SUPPORTED
_TRANSFER_NOT_SUPPORTED = ContextResult.TRANSFER_SYNTAXES_NOT_SUPPORTED
_USER_REJECTION = ContextResult.USER_REJECTION
_INVALID_PARAMETER = (AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER)


class AcceptorPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """What we accept as association-acceptor.

    ``abstract_syntaxes`` maps each abstract syntax we serve (as SCP) to the
    transfer syntaxes we accept for it: a per-class set rather than one global
    set, so that e.g. a class whose data we cannot parse compressed can be limited
    to native encodings without a second mechanism. ``scp_role_classes`` are the
    classes for which we agree to act as SCU when the requestor asks to be SCP
    (PS3.7 D.3.3.4; the storage classes, for C-GET). ``calling_hosts`` (used when
    ``check_calling_host``) maps a calling AE title to the peer addresses it may
    come from; they are compared literally, so the driver passes resolved
    addresses on both sides. ``extended`` maps an abstract syntax to the SOP
    Class Extended Negotiation options we support for it (PS3.7 D.3.3.5): one
    byte per option, 1 = supported; a proposal is answered option by option with
    the lesser of what was asked and what we support.
    """

    ae_title: str
    abstract_syntaxes: Mapping[str, frozenset[str]]
    max_pdu_length: int
    check_called_ae: bool = True
    accepted_calling_aes: frozenset[str] = frozenset()
    check_calling_host: bool = False
    calling_hosts: Mapping[str, frozenset[str]] = msgspec.field(default_factory=dict)
    scp_role_classes: frozenset[str] = frozenset()
    #: The transfer syntaxes of a context on which the requestor only receives
    #: (SCP role alone: C-GET's C-STORE sub-operations), for the classes above
    #: and any class we do not serve: what we may hold and send, whatever we
    #: accept for storing (``abstract_syntaxes``). Empty: as ``abstract_syntaxes``.
    send_transfer_syntaxes: frozenset[str] = frozenset()
    extended: Mapping[str, bytes] = msgspec.field(default_factory=dict)
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME
    #: Operations we offer to invoke at once when a requestor proposes an
    #: Asynchronous Operations Window (C-GET's C-STORE sub-operations).
    max_invoke: int = 1


class AcceptedContext(msgspec.Struct, frozen=True):
    """One accepted presentation context; roles are the requestor's (PS3.7 D.3.3.4)."""

    id: int
    abstract_syntax: str
    transfer_syntax: str
    scu_role: bool = True
    scp_role: bool = False


class Negotiated(msgspec.Struct, frozen=True, kw_only=True):
    """What an association agreed, as both sides see it after the A-ASSOCIATE-AC.

    ``contexts`` holds the accepted contexts only, by ID. ``max_pdu_length`` is the
    Maximum Length Received we advertised, ``peer_max_pdu`` the peer's: the
    largest P-DATA-TF we may send it (PS3.8 D.1; 0 = no limit). ``async_ops`` is
    the acceptor's Asynchronous Operations Window reply, on both sides: (operations
    the requestor may have outstanding, sub-operations the requestor may be
    performing at once, i.e. that the acceptor may invoke); (1, 1), synchronous,
    when none was negotiated (PS3.7 D.3.3.3). ``user_identity`` is
    what the requestor presented, if anything.
    """

    calling_ae: str
    called_ae: str
    contexts: dict[int, AcceptedContext]
    max_pdu_length: int
    peer_max_pdu: int
    peer_implementation_class_uid: str
    peer_implementation_version_name: str
    async_ops: tuple[int, int] = (1, 1)
    user_identity: UserIdentityRq | None = None
    #: Requestor side: each refused proposal as (abstract syntax, proposed transfer
    #: syntaxes, result/reason of PS3.8 Table 9-18), for saying why a file could
    #: not be sent.
    refused: tuple[tuple[str, tuple[str, ...], int], ...] = ()
    #: SOP Class Extended Negotiation as agreed (PS3.7 D.3.3.5): the acceptor's
    #: reply per abstract syntax (application information bytes; e.g. byte 0 of
    #: a Q/R FIND class = relational queries, PS3.4 C.5.1.1).
    extended: dict[str, bytes] = msgspec.field(default_factory=dict)

    def refusal(self, abstract_syntax: str, transfer_syntax: str) -> int | None:
        """The acceptor's result for the proposal carrying this pair, if refused."""
        for abstract, transfers, result in self.refused:
            if abstract == abstract_syntax and transfer_syntax in transfers:
                return result
        return None

    def context_for(
        self, abstract_syntax: str, transfer_syntax: str | None = None
    ) -> AcceptedContext | None:
        """The lowest-ID accepted context for this abstract (and transfer) syntax."""
        for context in self.contexts.values():
            if context.abstract_syntax == abstract_syntax and (
                transfer_syntax is None or context.transfer_syntax == transfer_syntax
            ):
                return context
        return None


#: Transfer syntaxes a Q/R identifier may come in (PS3.5 A.1-A.3, A.5): the
#: native ones; an identifier has no pixel data to compress.
_IDENTIFIER_SYNTAXES = frozenset(NATIVE_TRANSFER_SYNTAXES)
#: Q/R extended negotiation we support (PS3.4 C.5.1.1, C.5.2.1, C.5.3.1): byte 0,
#: relational retrieval (MOVE, GET); byte 1 of a FIND class, combined date-time
#: matching (C.2.2.2.5). Not relational queries (byte 0 of a FIND class: the SCP
#: would have to match keys below the query level, C.4.1.3.2, which the index's
#: queries do not), fuzzy person-name matching or timezone adjustment (bytes 2-3).
_QR_EXTENDED = b"\x01"
_QR_FIND_EXTENDED = b"\x00\x01"
_QR_FIND = frozenset({PATIENT_ROOT_QR_FIND, STUDY_ROOT_QR_FIND})


def default_acceptor_policy(config: Config) -> AcceptorPolicy:
    """Verification, every storage class and the Patient/Study Root Q/R classes."""
    transfer_syntaxes = frozenset(config.association.accepted_transfer_syntaxes)
    abstract_syntaxes = dict.fromkeys(ACCEPTED_STORAGE_SOP_CLASSES, transfer_syntaxes)
    abstract_syntaxes[VERIFICATION] = transfer_syntaxes
    identifier_syntaxes = transfer_syntaxes & _IDENTIFIER_SYNTAXES or frozenset(
        {IMPLICIT_VR_LE, EXPLICIT_VR_LE}
    )
    for abstract in QR_CLASSES:
        abstract_syntaxes[abstract] = identifier_syntaxes
    return AcceptorPolicy(
        ae_title=config.node.ae_title,
        abstract_syntaxes=abstract_syntaxes,
        max_pdu_length=config.association.max_pdu_length,
        check_called_ae=config.association.check_called_ae,
        accepted_calling_aes=frozenset(config.association.accepted_calling_aes),
        check_calling_host=config.association.check_calling_host,
        calling_hosts={peer.ae_title: frozenset({peer.host}) for peer in config.peers},
        scp_role_classes=ACCEPTED_STORAGE_SOP_CLASSES,
        send_transfer_syntaxes=frozenset(ALL_TRANSFER_SYNTAXES),
        extended={
            uid: _QR_FIND_EXTENDED if uid in _QR_FIND else _QR_EXTENDED for uid in QR_CLASSES
        },
        max_invoke=config.retrieve.get_window,
    )


# --- acceptor ----------------------------------------------------------------------


def _no_room(max_length: int | None) -> bool:
    """A peer's Maximum Length Received (PS3.8 D.1; 0 or absent: no limit) too
    small for one byte of data after a PDV item's header."""
    return max_length is not None and 0 < max_length <= PDV_OVERHEAD


def _reject(result: RejectResult, source: RejectSource, reason: RejectReason) -> AAssociateRj:
    return AAssociateRj(result=result, source=source, reason=reason)


def _first_roles(roles: Sequence[RoleSelection]) -> dict[str, RoleSelection]:
    # PS3.7 D.3.3.4 allows one item per SOP class; should a peer send more, the
    # first one counts and later ones are ignored rather than fought over.
    by_class: dict[str, RoleSelection] = {}
    for role in roles:
        by_class.setdefault(role.sop_class_uid, role)
    return by_class


def _check_context_ids(contexts: Sequence[PresentationContextRq]) -> None:
    """PS3.8 9.3.2.2: one or more contexts, IDs odd in 1..255 and distinct."""
    if not contexts:
        raise RemoteProtocolError(
            "A-ASSOCIATE-RQ proposes no presentation context",
            abort=_INVALID_PARAMETER,
            reject=(
                RejectResult.PERMANENT,
                RejectSource.SERVICE_USER,
                RejectReason.NO_REASON_GIVEN,
            ),
        )
    seen: set[int] = set()
    for context in contexts:
        cid = context.id
        if not (cid & 1 and 0 < cid < 256) or cid in seen:
            raise RemoteProtocolError(
                f"A-ASSOCIATE-RQ presentation context ID {cid} is "
                + ("repeated" if cid in seen else "not an odd number in 1..255"),
                abort=_INVALID_PARAMETER,
                reject=(
                    RejectResult.PERMANENT,
                    RejectSource.SERVICE_USER,
                    RejectReason.NO_REASON_GIVEN,
                ),
            )
        seen.add(cid)


def negotiate(
    rq: AAssociateRq, policy: AcceptorPolicy, *, peer_host: str | None = None
) -> tuple[AAssociateAc, Negotiated] | AAssociateRj:
    """Examine an A-ASSOCIATE-RQ as acceptor (PS3.8 9.3.4, PS3.7 D.3.3).

    Returns the A-ASSOCIATE-RJ to send, or the A-ASSOCIATE-AC and the agreed
    :class:`Negotiated`. ``peer_host`` is the requestor's address, needed only
    when ``policy.check_calling_host``. Raises :class:`RemoteProtocolError`
    (carrying an RJ) for a malformed context list.
    """
    # PS3.8 9.3.2: a receiver implementing version 1 tests only bit 0.
    if not rq.protocol_version & 1:
        return _reject(
            RejectResult.PERMANENT,
            RejectSource.SERVICE_PROVIDER_ACSE,
            RejectReason.PROTOCOL_VERSION_NOT_SUPPORTED,
        )
    if rq.application_context != APPLICATION_CONTEXT:
        return _reject(
            RejectResult.PERMANENT,
            RejectSource.SERVICE_USER,
            RejectReason.APPLICATION_CONTEXT_NOT_SUPPORTED,
        )
    # Leading and trailing spaces of AE titles are not significant (PS3.8 9.3.2).
    called_ae = rq.called_ae.strip(" ")
    calling_ae = rq.calling_ae.strip(" ")
    if policy.check_called_ae and called_ae != policy.ae_title:
        return _reject(
            RejectResult.PERMANENT,
            RejectSource.SERVICE_USER,
            RejectReason.CALLED_AE_NOT_RECOGNIZED,
        )
    # An AE title of spaces only is no AE title (PS3.5 6.2, AE: "shall not be
    # used"): the sender could not be named in the index or the logs.
    if (
        not calling_ae
        or (policy.accepted_calling_aes and calling_ae not in policy.accepted_calling_aes)
        or (policy.check_calling_host and peer_host not in policy.calling_hosts.get(calling_ae, ()))
    ):
        return _reject(
            RejectResult.PERMANENT,
            RejectSource.SERVICE_USER,
            RejectReason.CALLING_AE_NOT_RECOGNIZED,
        )
    if _no_room(rq.user_info.max_length):
        # Answers could not be framed: refused here rather than failing at the
        # first response, after the request it answers has been carried out.
        return _reject(
            RejectResult.PERMANENT, RejectSource.SERVICE_USER, RejectReason.NO_REASON_GIVEN
        )
    _check_context_ids(rq.contexts)

    supported = policy.abstract_syntaxes
    scp_role_classes = policy.scp_role_classes
    proposed_roles = _first_roles(rq.user_info.roles) if rq.user_info.roles else {}
    role_replies: dict[str, RoleSelection] = {}
    results: list[PresentationContextAc] = []
    agreed: dict[int, AcceptedContext] = {}
    for context in rq.contexts:
        abstract = context.abstract_syntax
        proposal = proposed_roles.get(abstract)
        # A context the requestor only receives on (C-GET): we send what we hold,
        # in the syntax it was stored in, whatever we accept for storing, and of
        # any class (an import may have brought a private one) that is a UID (it
        # goes back in the role reply), but not of the classes we serve as SCP
        # only (Verification, Q/R).
        sends_only = (
            proposal is not None
            and proposal.scp_role
            and not proposal.scu_role
            and bool(policy.send_transfer_syntaxes)
            and (abstract in scp_role_classes or abstract not in supported)
            and usable_uid(abstract)
        )
        accepted_ts = policy.send_transfer_syntaxes if sends_only else supported.get(abstract)
        if accepted_ts is None:
            results.append(PresentationContextAc(context.id, _ABSTRACT_NOT_SUPPORTED))
            continue
        # The first transfer syntax in the REQUESTOR's order that we accept: the
        # modality lists its preferred encoding first, and storing what it
        # prefers spares it (and us) a conversion.
        for ts in context.transfer_syntaxes:
            if ts in accepted_ts:
                break
        else:
            results.append(PresentationContextAc(context.id, _TRANSFER_NOT_SUPPORTED))
            continue
        if proposal is None:
            scu, scp = True, False  # PS3.7 D.3.3.4 defaults: requestor SCU, acceptor SCP
        else:
            # Never 1 where the requestor proposed 0; the SCP role only for the
            # classes we are ready to act as SCU for.
            scu = proposal.scu_role
            scp = proposal.scp_role and (sends_only or abstract in scp_role_classes)
            if not (scu or scp):
                # Neither side could issue a request: the context would be dead.
                results.append(PresentationContextAc(context.id, _USER_REJECTION))
                continue
            if abstract not in role_replies:
                role_replies[abstract] = RoleSelection(abstract, scu, scp)
        results.append(PresentationContextAc(context.id, _ACCEPTANCE, ts))
        agreed[context.id] = AcceptedContext(context.id, abstract, ts, scu, scp)
    extended = _extended_replies(rq.user_info.extended, policy.extended, agreed)

    # PS3.8 7.1.1.14 asks for one result per proposed context, whatever they are:
    # with none accepted we still answer A-ASSOCIATE-AC (as DCMTK and pynetdicom
    # do; no A-ASSOCIATE-RJ reason fits) and the requestor releases.
    rq_info = rq.user_info
    window = _window_reply(rq_info.async_ops, policy.max_invoke)
    user_info = UserInformation(
        max_length=policy.max_pdu_length,
        implementation_class_uid=policy.implementation_class_uid,
        implementation_version_name=policy.implementation_version_name,
        async_ops=window,
        roles=tuple(role_replies.values()),
        extended=tuple(SopClassExtended(uid, info) for uid, info in extended.items()),
        # No User Identity reply (0x59): we do not require one, and PS3.7
        # D.3.3.7 lets an acceptor that does not check identities stay silent.
    )
    ac = AAssociateAc(
        called_ae=rq.called_ae,
        calling_ae=rq.calling_ae,
        contexts=tuple(results),
        user_info=user_info,
    )
    negotiated = Negotiated(
        calling_ae=calling_ae,
        called_ae=called_ae,
        contexts=agreed,
        max_pdu_length=policy.max_pdu_length,
        peer_max_pdu=rq_info.max_length or 0,
        peer_implementation_class_uid=rq_info.implementation_class_uid or "",
        peer_implementation_version_name=rq_info.implementation_version_name or "",
        user_identity=rq_info.user_identity_rq,
        extended=extended,
        async_ops=(window.max_invoked, window.max_performed) if window else (1, 1),
    )
    return ac, negotiated


def _window_reply(
    proposed: AsyncOperationsWindow | None, max_invoke: int
) -> AsyncOperationsWindow | None:
    """PS3.7 D.3.3.3: the acceptor's window, answered only when one was proposed.

    Each field of the reply is what the acceptor allows the *requestor*, at most
    what it offered: Maximum-number-operations-invoked the operations it may
    have outstanding, 1 (an association carries one request of its peer at a
    time here); Maximum-number-operations-performed the sub-operations it may
    be performing at once (a C-GET's C-STOREs we send before their responses),
    up to ``max_invoke`` and what it offered (0 = no limit).
    """
    if proposed is None:
        return None
    performed = proposed.max_performed
    sub_operations = max_invoke if performed == 0 else max(1, min(max_invoke, performed))
    return AsyncOperationsWindow(1, sub_operations)


def _extended_replies(
    proposed: Sequence[SopClassExtended],
    supported: Mapping[str, bytes],
    agreed: Mapping[int, AcceptedContext],
) -> dict[str, bytes]:
    """PS3.7 D.3.3.5: answer each proposal for an accepted class, option by option.

    An option is agreed (1) only when proposed as 1 and supported; the reply is as
    long as the proposal. Proposals for classes we did not accept, or do not
    negotiate, get no reply, which means "no options" to the requestor.
    """
    classes = {context.abstract_syntax for context in agreed.values()}
    replies: dict[str, bytes] = {}
    for item in proposed:
        ours = supported.get(item.sop_class_uid)
        if ours is None or item.sop_class_uid not in classes or item.sop_class_uid in replies:
            continue
        replies[item.sop_class_uid] = bytes(
            1 if asked == 1 and index < len(ours) and ours[index] == 1 else 0
            for index, asked in enumerate(item.info)
        )
    return replies


# --- requestor ---------------------------------------------------------------------


def build_request(
    calling_ae: str,
    called_ae: str,
    proposals: Sequence[tuple[str, Sequence[str]]],
    *,
    max_pdu_length: int,
    roles: Sequence[RoleSelection] = (),
    extended: Sequence[SopClassExtended] = (),
    async_ops: AsyncOperationsWindow | None = None,
    user_identity: UserIdentityRq | None = None,
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME,
) -> AAssociateRq:
    """An A-ASSOCIATE-RQ proposing ``(abstract syntax, transfer syntaxes)`` pairs.

    Context IDs are 1, 3, 5, ... in the order given (PS3.8 9.3.2.2). Raises
    :class:`LocalProtocolError` for what the standard cannot carry: no or more
    than 128 proposals, a proposal without transfer syntax, a role item for a
    class not proposed or given twice, an AE title not 1..16 characters, a
    Maximum Length outside 32 bits.
    """
    if not 1 <= len(proposals) <= MAX_CONTEXTS:
        raise LocalProtocolError(
            f"an association proposes 1 to {MAX_CONTEXTS} presentation contexts, "
            f"not {len(proposals)}"
        )
    for title in (calling_ae, called_ae):
        if not 1 <= len(title.strip(" ")) <= 16 or len(title) > 16:
            raise LocalProtocolError(f"AE title {title!r} is not 1 to 16 characters")
    if not 0 <= max_pdu_length <= 0xFFFFFFFF:
        raise LocalProtocolError(f"Maximum Length {max_pdu_length} does not fit 32 bits")
    contexts = []
    for index, (abstract, transfer_syntaxes) in enumerate(proposals):
        if not transfer_syntaxes:
            raise LocalProtocolError(f"no transfer syntax proposed for {abstract}")
        contexts.append(PresentationContextRq(2 * index + 1, abstract, tuple(transfer_syntaxes)))
    proposed = {abstract for abstract, _ in proposals}
    seen: set[str] = set()
    for role in roles:
        if role.sop_class_uid not in proposed or role.sop_class_uid in seen:
            raise LocalProtocolError(
                f"role selection for {role.sop_class_uid} must name a proposed class, once"
            )
        seen.add(role.sop_class_uid)
    return AAssociateRq(
        called_ae=called_ae,
        calling_ae=calling_ae,
        contexts=tuple(contexts),
        user_info=UserInformation(
            max_length=max_pdu_length,
            implementation_class_uid=implementation_class_uid,
            implementation_version_name=implementation_version_name,
            async_ops=async_ops,
            roles=tuple(roles),
            extended=tuple(extended),
            user_identity_rq=user_identity,
        ),
    )


def accepted(rq: AAssociateRq, ac: AAssociateAc) -> Negotiated:
    """Check the A-ASSOCIATE-AC answering our ``rq`` and return what was agreed.

    Raises :class:`RemoteProtocolError` (A-ABORT: service provider, invalid PDU
    parameter) when the AC answers a context ID we never proposed or answers one
    twice, accepts a transfer syntax we did not offer in that context, or lacks
    bit 0 of the protocol version (PS3.8 9.3.3). A proposed context the AC does
    not mention is taken as not accepted.
    """
    if not ac.protocol_version & 1:
        raise RemoteProtocolError(
            f"A-ASSOCIATE-AC protocol version {ac.protocol_version:#06x} lacks version 1",
            abort=_INVALID_PARAMETER,
        )
    proposed = {context.id: context for context in rq.contexts}
    our_roles = _first_roles(rq.user_info.roles)
    their_roles = _first_roles(ac.user_info.roles)
    answered: set[int] = set()
    agreed: list[AcceptedContext] = []
    refused: list[tuple[str, tuple[str, ...], int]] = []
    for item in ac.contexts:
        context = proposed.get(item.id)
        if context is None or item.id in answered:
            raise RemoteProtocolError(
                f"A-ASSOCIATE-AC answers presentation context {item.id} "
                + ("twice" if context is not None else "which we did not propose"),
                abort=_INVALID_PARAMETER,
            )
        answered.add(item.id)
        if item.result != _ACCEPTANCE:
            refused.append((context.abstract_syntax, context.transfer_syntaxes, int(item.result)))
            continue
        if item.transfer_syntax not in context.transfer_syntaxes:
            raise RemoteProtocolError(
                f"A-ASSOCIATE-AC accepts presentation context {item.id} with transfer "
                f"syntax {item.transfer_syntax!r}, which we did not offer in it",
                abort=_INVALID_PARAMETER,
            )
        ours = our_roles.get(context.abstract_syntax)
        theirs = their_roles.get(context.abstract_syntax)
        if ours is None or theirs is None:
            # PS3.7 D.3.3.4: without our proposal, or without their reply, the
            # defaults hold (and we ignore replies to roles we did not propose).
            scu, scp = True, False
        else:
            scu = ours.scu_role and theirs.scu_role
            scp = ours.scp_role and theirs.scp_role
            if not (scu or scp):
                continue  # accepted, but no one may issue a request on it
        agreed.append(
            AcceptedContext(item.id, context.abstract_syntax, item.transfer_syntax, scu, scp)
        )
    info = ac.user_info
    if _no_room(info.max_length):
        raise RemoteProtocolError(
            f"A-ASSOCIATE-AC's Maximum Length Received {info.max_length} leaves no room"
            " for data in a P-DATA-TF PDU",
            abort=_INVALID_PARAMETER,
        )
    # A window reply counts only when we proposed one (PS3.7 D.3.3.3).
    window = info.async_ops if rq.user_info.async_ops is not None else None
    return Negotiated(
        calling_ae=rq.calling_ae,
        called_ae=rq.called_ae,
        contexts={context.id: context for context in sorted(agreed, key=lambda c: c.id)},
        max_pdu_length=rq.user_info.max_length or 0,
        peer_max_pdu=info.max_length or 0,
        peer_implementation_class_uid=info.implementation_class_uid or "",
        peer_implementation_version_name=info.implementation_version_name or "",
        refused=tuple(refused),
        async_ops=(window.max_invoked, window.max_performed) if window else (1, 1),
        user_identity=rq.user_info.user_identity_rq,
        # Only replies to what we proposed count (PS3.7 D.3.3.5).
        extended={
            item.sop_class_uid: item.info
            for item in info.extended
            if any(ours.sop_class_uid == item.sop_class_uid for ours in rq.user_info.extended)
        },
    )
