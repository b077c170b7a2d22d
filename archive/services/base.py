"""The seam between the network driver and the DIMSE service providers.

A service provider is an async generator function: it takes a :class:`Request`
and yields responses, one for C-ECHO and C-STORE, pending ones and then a final
one for C-FIND, C-MOVE and C-GET. The driver sends each as it is yielded, so
pending responses go out while the provider is still working. Providers hold
policy only; they never touch sockets.

C-FIND, C-MOVE and C-GET run while the driver keeps reading the association: a
C-CANCEL-RQ for the operation sets its :class:`Cancel`, and C-GET sends its
C-STORE sub-operations through a :class:`StoreTarget` on the same association
(PS3.4 C.4.3), whose responses the driver routes back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any, Protocol, cast

import msgspec

from archive.dicom.dimse import (
    CEchoRq,
    CEchoRsp,
    CFindRq,
    CFindRsp,
    CGetRq,
    CGetRsp,
    CMoveRq,
    CMoveRsp,
    Command,
    CStoreRq,
    CStoreRsp,
    NActionRq,
    NActionRsp,
    NEventReportRq,
    NEventReportRsp,
)
from archive.errors import ArchiveError


class DatasetInterrupted(ArchiveError):
    """The association ended before the last fragment of a data set arrived."""

    code = "services.dataset_interrupted"


class SubAssociationError(ArchiveError):
    """An association for sub-operations (C-MOVE's, to the Move Destination) could
    not be opened, or failed while in use.

    Raised by the connector the composition root supplies (``archive/node.py``), so
    the providers need not know the driver's own errors.
    """

    code = "services.sub_association"


class Cancel:
    """Set when the peer sends a C-CANCEL-RQ for the operation (PS3.7 9.1.2.1.2).

    A flag the provider checks between matches or sub-operations.
    """

    __slots__ = ("requested",)

    def __init__(self) -> None:
        self.requested = False

    def set(self) -> None:
        self.requested = True


class StoreContext(Protocol):
    """An accepted presentation context on which we may send C-STORE-RQ."""

    @property
    def id(self) -> int: ...
    @property
    def abstract_syntax(self) -> str: ...
    @property
    def transfer_syntax(self) -> str: ...


class StoreTarget(Protocol):
    """Where C-STORE sub-operations go: the caller's association (C-GET) or a new
    association to the move destination (C-MOVE)."""

    #: Sub-operations that may be in flight at once on it (PS3.7 D.3.3.3).
    window: int

    def store_contexts(self) -> Sequence[StoreContext]: ...
    def next_message_id(self) -> int: ...
    async def store(
        self, context_id: int, command: CStoreRq, chunks: AsyncIterator[bytes | memoryview]
    ) -> CStoreRsp: ...


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """One DIMSE request as a provider sees it."""

    command: Command
    context_id: int
    abstract_syntax: str
    transfer_syntax: str
    calling_ae: str
    called_ae: str
    peer_host: str
    #: The data set fragments, as they arrive; None when the request has none.
    dataset: AsyncIterator[memoryview] | None = None
    #: C-FIND/C-MOVE/C-GET: the identifier, read whole (it is small and bounded).
    identifier: bytes | None = None
    #: C-FIND/C-MOVE/C-GET: set by the peer's C-CANCEL-RQ.
    cancel: Cancel | None = None
    #: C-GET: the requesting association, for the C-STORE sub-operations.
    channel: StoreTarget | None = None
    #: Extended negotiation agreed for the request's abstract syntax (PS3.7 D.3.3.5).
    extended: bytes = b""


class Response(msgspec.Struct, frozen=True):
    """A response command and the data set (identifier) that goes with it, if any."""

    command: Command
    dataset: bytes | None = None


Provider = Callable[[Request], AsyncIterator[Response]]

#: Request types and the response type that answers each, for generic failures.
_RESPONSES: Mapping[type, Callable[..., Command]] = {
    CEchoRq: CEchoRsp,
    CStoreRq: CStoreRsp,
    CFindRq: CFindRsp,
    CGetRq: CGetRsp,
    CMoveRq: CMoveRsp,
    NActionRq: NActionRsp,
    NEventReportRq: NEventReportRsp,
}


def failure(
    command: Command, status: int, comment: str, offending: int | None = None
) -> Response | None:
    """A response to ``command`` with a failure ``status``; None if it is no request.

    The request's identifying fields are echoed where the response type has them
    (PS3.7 Annex C: Error Comment at most 64 characters), and so is the tag of the
    element at fault, ``offending``, as the Offending Element (0000,0901).
    """
    make = _RESPONSES.get(type(command))
    if make is None:
        return None
    fields: dict[str, object] = {
        "message_id_being_responded_to": getattr(command, "message_id", 0),
        "status": status,
        "error_comment": comment[:64],
    }
    if offending is not None:
        fields["offending_element"] = (offending,)
    for name in ("affected_sop_class_uid", "affected_sop_instance_uid"):
        value = getattr(command, name, None)
        if value is not None:
            fields[name] = value
    known = {field.name for field in msgspec.structs.fields(cast(type[Any], make))}
    return Response(make(**{name: v for name, v in fields.items() if name in known}))


class Registry:
    """Which provider serves which request type, and for which SOP Classes.

    A request type given ``classes`` is served only on presentation contexts of
    those SOP Classes: an operation belongs to its class's service class (PS3.4),
    so a C-STORE on a Verification or Q/R context, or a C-ECHO on a storage one,
    finds no provider (the server answers 0122, SOP Class not supported). A type
    without ``classes`` is served on any context.
    """

    def __init__(
        self,
        providers: Mapping[type, Provider],
        classes: Mapping[type, Collection[str]] | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._classes = dict(classes or {})

    def provider_for(self, command: Command, sop_class_uid: str) -> Provider | None:
        """The provider of ``command`` on a context of ``sop_class_uid``, or None."""
        served = self._classes.get(type(command))
        if served is not None and sop_class_uid not in served:
            return None
        return self._providers.get(type(command))
