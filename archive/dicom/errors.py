"""Protocol errors of the sans-IO DICOM layers, in the h11 manner.

:class:`RemoteProtocolError` means the peer broke the protocol; it carries what the
driver must put on the wire in answer: an A-ABORT (source, reason; PS3.8 9.3.8) or,
while an A-ASSOCIATE-RQ is being examined, an A-ASSOCIATE-RJ (result, source,
reason; PS3.8 9.3.4). :class:`LocalProtocolError` means our own code asked the
machine for something the current state does not allow: it is a bug, never the
peer's fault. Anything else raised from a parser is a bug too.

:class:`StatusError` is the other kind: a request the protocol carried well but
whose data set cannot be served; it carries the DIMSE failure status of the
response (PS3.7 Annex C) instead of ending the association.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

from archive.errors import ArchiveError


class AbortSource(IntEnum):
    """A-ABORT source field, PS3.8 Table 9-26."""

    SERVICE_USER = 0
    RESERVED = 1
    SERVICE_PROVIDER = 2


class AbortReason(IntEnum):
    """A-ABORT reason/diag field when the source is the service provider, PS3.8 Table 9-26."""

    NOT_SPECIFIED = 0
    UNRECOGNIZED_PDU = 1
    UNEXPECTED_PDU = 2
    RESERVED = 3
    UNRECOGNIZED_PDU_PARAMETER = 4
    UNEXPECTED_PDU_PARAMETER = 5
    INVALID_PDU_PARAMETER = 6


class RejectResult(IntEnum):
    """A-ASSOCIATE-RJ result field, PS3.8 Table 9-21."""

    PERMANENT = 1
    TRANSIENT = 2


class RejectSource(IntEnum):
    """A-ASSOCIATE-RJ source field, PS3.8 Table 9-21."""

    SERVICE_USER = 1
    SERVICE_PROVIDER_ACSE = 2
    SERVICE_PROVIDER_PRESENTATION = 3


class RejectReason(IntEnum):
    """A-ASSOCIATE-RJ reason/diag field, PS3.8 Table 9-21 (meaning depends on source)."""

    # source 1, service user
    NO_REASON_GIVEN = 1
    APPLICATION_CONTEXT_NOT_SUPPORTED = 2
    CALLING_AE_NOT_RECOGNIZED = 3
    CALLED_AE_NOT_RECOGNIZED = 7
    # source 2, ACSE: 1 no reason given, 2 protocol version not supported
    PROTOCOL_VERSION_NOT_SUPPORTED = 2
    # source 3, presentation: 1 temporary congestion, 2 local limit exceeded
    TEMPORARY_CONGESTION = 1
    LOCAL_LIMIT_EXCEEDED = 2


class ProtocolError(ArchiveError):
    """A violation of PS3.8 or PS3.7, by either side."""

    code: ClassVar[str] = "dicom.protocol"


class RemoteProtocolError(ProtocolError):
    """The peer sent something the standard does not allow.

    ``abort`` is the (source, reason) of the A-ABORT to send. ``reject``, when set,
    is the (result, source, reason) of an A-ASSOCIATE-RJ to send instead, used only
    while an association request is being examined.
    """

    code: ClassVar[str] = "dicom.protocol.remote"

    def __init__(
        self,
        message: str,
        *,
        abort: tuple[AbortSource, AbortReason] = (
            AbortSource.SERVICE_PROVIDER,
            AbortReason.INVALID_PDU_PARAMETER,
        ),
        reject: tuple[RejectResult, RejectSource, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.abort = abort
        self.reject = reject


class LocalProtocolError(ProtocolError):
    """Our own code asked the protocol machine for something its state forbids."""

    code: ClassVar[str] = "dicom.protocol.local"


class StatusError(ArchiveError):
    """A request that fails with a DIMSE status (PS3.7 Annex C); ``status`` is sent.

    Subclasses name their service's statuses and set :attr:`default_status`.
    """

    code: ClassVar[str] = "dicom.status"
    #: C000 Error: Cannot understand (PS3.4 Table B.2-1, Tables C.4-1 to C.4-3). A
    #: literal: ``dimse.status`` cannot be imported here (dimse imports this module).
    default_status: ClassVar[int] = 0xC000

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = int(self.default_status if status is None else status)
