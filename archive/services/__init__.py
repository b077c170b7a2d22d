"""DIMSE service providers: policy only, no sockets (see base.py for the seam)."""

from __future__ import annotations

from archive.dicom.dimse import CEchoRq
from archive.services.base import Provider, Registry, Request, Response, failure
from archive.services.echo import c_echo

__all__ = ["Provider", "Registry", "Request", "Response", "c_echo", "default_registry", "failure"]


def default_registry() -> Registry:
    """The providers of this release: Verification."""
    return Registry({CEchoRq: c_echo})
