"""The root of archive-node's error hierarchy.

Every error the node raises on purpose derives from :class:`ArchiveError`. Each
class carries a stable dotted ``code`` for logs and documentation; subclasses in
lower layers add what goes on the wire (an A-ABORT, an A-ASSOCIATE-RJ or a DIMSE
status). This module is a leaf: it imports nothing from the package.
"""

from __future__ import annotations

from typing import ClassVar


class ArchiveError(Exception):
    """Base of every deliberate archive-node error."""

    code: ClassVar[str] = "archive.error"


class ConfigError(ArchiveError):
    """A configuration file or option is invalid; names the key and the problem."""

    code: ClassVar[str] = "config.invalid"

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem
