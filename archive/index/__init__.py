"""The archive's index: SQLite schema, group-commit writer and read pool.

Other packages import from here only. SQL lives in this package alone (module
constants and ``migrations/*.sql``).
"""

from __future__ import annotations

from archive.index.batch import patient_key
from archive.index.connection import Durability
from archive.index.database import LEVEL_FIELDS, Index, peek_stats, refreshed
from archive.index.errors import (
    DuplicateInstanceError,
    IndexClosedError,
    IndexFlushError,
    IndexOpenError,
    IndexReadError,
    IndexWriteError,
    InvalidRecordError,
    SchemaOutdatedError,
    SchemaVersionError,
)
from archive.index.query import RECORD_KEYWORDS
from archive.index.records import InstanceRow, Stats, StoredInstance, WriterStats

__all__ = [
    "LEVEL_FIELDS",
    "RECORD_KEYWORDS",
    "DuplicateInstanceError",
    "Durability",
    "Index",
    "IndexClosedError",
    "IndexFlushError",
    "IndexOpenError",
    "IndexReadError",
    "IndexWriteError",
    "InstanceRow",
    "InvalidRecordError",
    "SchemaOutdatedError",
    "SchemaVersionError",
    "Stats",
    "StoredInstance",
    "WriterStats",
    "patient_key",
    "peek_stats",
    "refreshed",
]
