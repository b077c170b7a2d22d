"""DIMSE service providers: policy only, no sockets (see base.py for the seam)."""

from __future__ import annotations

from collections.abc import Mapping

from archive.dicom.dimse import CEchoRq, CStoreRq
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


def default_registry(
    ingest: Ingest | None = None, *, qr: Mapping[type, Provider] | None = None
) -> Registry:
    """Verification always; Storage when there is an ``ingest`` to store into;
    Query/Retrieve (C-FIND/C-MOVE/C-GET providers by request type) when given."""
    providers: dict[type, Provider] = {CEchoRq: c_echo}
    if ingest is not None:
        providers[CStoreRq] = c_store_provider(ingest)
    providers.update(qr or {})
    return Registry(providers)
