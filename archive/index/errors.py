"""Errors of the index layer.

They say what went wrong with the database, not what goes on the wire: the
services map them to DIMSE statuses (an :class:`IndexWriteError` during a C-STORE
is a "Refused: Out of Resources", PS3.4 Table B.2-1).
"""

from __future__ import annotations

from typing import ClassVar

from archive.errors import ArchiveError

__all__ = [
    "DuplicateInstanceError",
    "IndexClosedError",
    "IndexFlushError",
    "IndexOpenError",
    "IndexReadError",
    "IndexWriteError",
    "InvalidRecordError",
    "SchemaOutdatedError",
    "SchemaVersionError",
]


class IndexWriteError(ArchiveError):
    """The transaction that was to hold a record failed and was rolled back.

    Nothing of that transaction is in the index; other batches are unaffected.
    The cause (usually a :class:`sqlite3.Error`) is chained as ``__cause__``.
    """

    code: ClassVar[str] = "index.write_failed"


class IndexReadError(ArchiveError):
    """The index file could not be read (not a database, a WAL it cannot open...).
    The cause (a :class:`sqlite3.Error`) is chained as ``__cause__``."""

    code: ClassVar[str] = "index.read_failed"


class IndexOpenError(ArchiveError):
    """The index could not be opened or created (not a database, a folder where
    its file should be, no permission). The cause (a :class:`sqlite3.Error`) is
    chained as ``__cause__``; the message names the file."""

    code: ClassVar[str] = "index.open_failed"


class DuplicateInstanceError(IndexWriteError):
    """``add()`` of a SOP Instance UID the index already holds (use ``replace()``).

    Only this record is refused; the rest of its batch is committed.
    """

    code: ClassVar[str] = "index.duplicate_instance"

    def __init__(self, sop_instance_uid: str) -> None:
        super().__init__(f"SOP Instance UID {sop_instance_uid!r} is already indexed")
        self.sop_instance_uid = sop_instance_uid


class InvalidRecordError(IndexWriteError):
    """A record the index cannot key (an empty UID); refused before it is queued."""

    code: ClassVar[str] = "index.invalid_record"

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} is empty")
        self.field = field


class IndexClosedError(IndexWriteError):
    """The index was closed (or its writer stopped) before the record was committed."""

    code: ClassVar[str] = "index.closed"


class IndexFlushError(IndexClosedError):
    """A batch was committed but the flush after it failed: not known durable.

    The writer stops there (every later write fails with this error), as after a
    failed flush the OS may have dropped the pages it could not write, and a
    later successful flush would not bring them back. The batch's instances stay
    in the ``unflushed`` journal, which the next start-up reads back.
    """

    code: ClassVar[str] = "index.flush_failed"


class _SchemaMismatch(ArchiveError):
    """The database's schema version (``found``) is not the one this code knows
    (``supported``); each kind's ``mismatch`` says which way, and what to do."""

    #: The end of the message, formatted with ``supported``.
    mismatch: ClassVar[str]

    def __init__(self, path: str, found: int, supported: int) -> None:
        detail = self.mismatch.format(supported=supported)
        super().__init__(f"{path}: index schema version {found} {detail}")
        self.path = path
        self.found = found
        self.supported = supported


class SchemaVersionError(_SchemaMismatch):
    """The database was written by a newer archive-node than this one.

    ``found`` is the database's schema version, ``supported`` the newest this code
    knows. Opening it would risk corrupting data the newer code depends on.
    """

    code: ClassVar[str] = "index.schema_too_new"
    mismatch: ClassVar[str] = (
        "is newer than this archive-node supports ({supported}); "
        "upgrade archive-node or restore a backup"
    )


class SchemaOutdatedError(_SchemaMismatch):
    """A read-only look found the schema older than this code's: it would need
    migrating, which a look does not do (a node may be serving the index)."""

    code: ClassVar[str] = "index.schema_outdated"
    mismatch: ClassVar[str] = (
        "is older than this archive-node's ({supported}): reading it here would mean migrating it"
    )
