"""DIMSE service providers: policy only, no sockets (see base.py for the seam)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from archive.dicom.dimse import CEchoRq, CFindRq, CGetRq, CMoveRq, CStoreRq
from archive.dicom.query_keys import QR_SOP_CLASSES
from archive.dicom.uids import ACCEPTED_STORAGE_SOP_CLASSES, VERIFICATION
from archive.services.base import (
    Cancel,
    DatasetInterrupted,
    Provider,
    Registry,
    Request,
    Response,
    StoreContext,
    StoreTarget,
    SubAssociationError,
    failure,
)
from archive.services.echo import c_echo
from archive.services.store import Ingest, Outcome, c_store_provider

__all__ = [
    "Cancel",
    "DatasetInterrupted",
    "Ingest",
    "Outcome",
    "Provider",
    "Registry",
    "Request",
    "Response",
    "StoreContext",
    "StoreTarget",
    "SubAssociationError",
    "c_echo",
    "c_store_provider",
    "default_registry",
    "failure",
]


#: The Q/R operation of each Q/R request type, as :data:`QR_SOP_CLASSES` names it.
_QR_OPERATIONS: Mapping[type, str] = {CFindRq: "find", CMoveRq: "move", CGetRq: "get"}


def default_registry(
    ingest: Ingest | None = None, *, qr: Mapping[type, Provider] | None = None
) -> Registry:
    """Verification always; Storage when there is an ``ingest`` to store into;
    Query/Retrieve (C-FIND/C-MOVE/C-GET providers by request type) when given.
    Each served only for its own SOP Classes (see :class:`Registry`)."""
    providers: dict[type, Provider] = {CEchoRq: c_echo}
    classes: dict[type, Collection[str]] = {CEchoRq: frozenset({VERIFICATION})}
    if ingest is not None:
        providers[CStoreRq] = c_store_provider(ingest)
        classes[CStoreRq] = ACCEPTED_STORAGE_SOP_CLASSES
    for request, provider in (qr or {}).items():
        providers[request] = provider
        operation = _QR_OPERATIONS[request]
        classes[request] = frozenset(
            uid for uid, (_, served) in QR_SOP_CLASSES.items() if served == operation
        )
    return Registry(providers, classes)
