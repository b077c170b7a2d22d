"""Upper-layer PDUs and their items as typed records (PS3.8 9.3 and Annex D).

These are values only: the byte codec is in :mod:`archive.dicom.ul.codec` and the
P-DATA-TF hot path in :mod:`archive.dicom.ul.pdata`. AE titles are kept as
``str`` with the space padding stripped; UIDs as ``str`` without the trailing
NUL pad. Every record is a frozen msgspec Struct so it can be compared, hashed and
logged cheaply.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec

from archive.dicom.ul.pdata import Pdv

#: The only application context name of PS3.7 Annex A.2.1.
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"


class PduType(IntEnum):
    """PDU type byte, PS3.8 Table 9-11."""

    A_ASSOCIATE_RQ = 0x01
    A_ASSOCIATE_AC = 0x02
    A_ASSOCIATE_RJ = 0x03
    P_DATA_TF = 0x04
    A_RELEASE_RQ = 0x05
    A_RELEASE_RP = 0x06
    A_ABORT = 0x07


class ContextResult(IntEnum):
    """Presentation context result/reason, PS3.8 Table 9-18."""

    ACCEPTANCE = 0
    USER_REJECTION = 1
    NO_REASON = 2
    ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
    TRANSFER_SYNTAXES_NOT_SUPPORTED = 4


class PresentationContextRq(msgspec.Struct, frozen=True):
    """Presentation context item in an A-ASSOCIATE-RQ (item type 0x20), PS3.8 9.3.2.2."""

    id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


class PresentationContextAc(msgspec.Struct, frozen=True):
    """Presentation context item in an A-ASSOCIATE-AC (item type 0x21), PS3.8 9.3.3.2.

    ``transfer_syntax`` is meaningful only when ``result`` is ACCEPTANCE; on the
    wire a rejected context still carries a transfer-syntax sub-item, whose value
    is ignored (PS3.8 9.3.3.2), so the decoder keeps whatever was sent.
    """

    id: int
    result: ContextResult
    transfer_syntax: str = ""


class AsyncOperationsWindow(msgspec.Struct, frozen=True):
    """Asynchronous Operations Window sub-item (0x53), PS3.7 D.3.3.3."""

    max_invoked: int
    max_performed: int


class RoleSelection(msgspec.Struct, frozen=True):
    """SCP/SCU Role Selection sub-item (0x54), PS3.7 D.3.3.4."""

    sop_class_uid: str
    scu_role: bool
    scp_role: bool


class SopClassExtended(msgspec.Struct, frozen=True):
    """SOP Class Extended Negotiation sub-item (0x56), PS3.7 D.3.3.5."""

    sop_class_uid: str
    info: bytes


class SopClassCommonExtended(msgspec.Struct, frozen=True):
    """SOP Class Common Extended Negotiation sub-item (0x57), PS3.7 D.3.3.6."""

    sop_class_uid: str
    service_class_uid: str
    related_general_sop_classes: tuple[str, ...] = ()


class UserIdentityRq(msgspec.Struct, frozen=True):
    """User Identity Negotiation sub-item, request form (0x58), PS3.7 D.3.3.7.1.

    ``identity_type``: 1 username, 2 username and passcode, 3 Kerberos, 4 SAML,
    5 JWT.
    """

    identity_type: int
    positive_response_requested: bool
    primary: bytes
    secondary: bytes = b""


class UserIdentityAc(msgspec.Struct, frozen=True):
    """User Identity Negotiation sub-item, accept form (0x59), PS3.7 D.3.3.7.2."""

    server_response: bytes


class UserInformation(msgspec.Struct, frozen=True):
    """User Information item (0x50) and its sub-items, PS3.8 9.3.2.3 and PS3.7 D.3.3.

    ``max_length`` is the Maximum Length Received (0 = no limit). Sub-items we do
    not know are kept as ``(type, value)`` in ``unknown`` so a decode/encode round
    trip loses nothing.
    """

    max_length: int | None = None
    implementation_class_uid: str | None = None
    implementation_version_name: str | None = None
    async_ops: AsyncOperationsWindow | None = None
    roles: tuple[RoleSelection, ...] = ()
    extended: tuple[SopClassExtended, ...] = ()
    common_extended: tuple[SopClassCommonExtended, ...] = ()
    user_identity_rq: UserIdentityRq | None = None
    user_identity_ac: UserIdentityAc | None = None
    unknown: tuple[tuple[int, bytes], ...] = ()


class AAssociateRq(msgspec.Struct, frozen=True):
    """A-ASSOCIATE-RQ PDU, PS3.8 9.3.2."""

    called_ae: str
    calling_ae: str
    contexts: tuple[PresentationContextRq, ...]
    user_info: UserInformation
    application_context: str = APPLICATION_CONTEXT
    protocol_version: int = 1


class AAssociateAc(msgspec.Struct, frozen=True):
    """A-ASSOCIATE-AC PDU, PS3.8 9.3.3.

    The AE title fields are reserved in the AC: sent with the request's values and
    not tested on receipt.
    """

    called_ae: str
    calling_ae: str
    contexts: tuple[PresentationContextAc, ...]
    user_info: UserInformation
    application_context: str = APPLICATION_CONTEXT
    protocol_version: int = 1


class AAssociateRj(msgspec.Struct, frozen=True):
    """A-ASSOCIATE-RJ PDU, PS3.8 9.3.4 (see :mod:`archive.dicom.errors` for values)."""

    result: int
    source: int
    reason: int


class PDataTf(msgspec.Struct, frozen=True):
    """P-DATA-TF PDU, PS3.8 9.3.5; the PDVs' data are views into the received buffer."""

    pdvs: tuple[Pdv, ...]


class AReleaseRq(msgspec.Struct, frozen=True):
    """A-RELEASE-RQ PDU, PS3.8 9.3.6."""


class AReleaseRp(msgspec.Struct, frozen=True):
    """A-RELEASE-RP PDU, PS3.8 9.3.7."""


class AAbort(msgspec.Struct, frozen=True):
    """A-ABORT PDU, PS3.8 9.3.8 (see :mod:`archive.dicom.errors` for values)."""

    source: int
    reason: int


Pdu = AAssociateRq | AAssociateAc | AAssociateRj | PDataTf | AReleaseRq | AReleaseRp | AAbort
