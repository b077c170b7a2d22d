"""The asyncio driver: listening server, association tasks, SCU client, timers.

The only package that touches sockets and clocks; everything below it is sans-IO.
"""

from __future__ import annotations

from archive.net.association import (
    Association,
    AssociationAborted,
    AssociationError,
    AssociationRejected,
    AssociationTimeout,
    Outcome,
    Timeouts,
    describe_reject,
)
from archive.net.client import ECHO_CONTEXTS, ClientAssociation, associate
from archive.net.loop import loop_factory, run
from archive.net.server import Server, serving, timeouts_from

__all__ = [
    "ECHO_CONTEXTS",
    "Association",
    "AssociationAborted",
    "AssociationError",
    "AssociationRejected",
    "AssociationTimeout",
    "ClientAssociation",
    "Outcome",
    "Server",
    "Timeouts",
    "associate",
    "describe_reject",
    "loop_factory",
    "run",
    "serving",
    "timeouts_from",
]
