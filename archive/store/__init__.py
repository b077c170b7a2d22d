"""Instance files: streaming writer, atomic placement, recovery, reading back."""

from __future__ import annotations

from archive.store.errors import AlreadyStored, DataFolderError, DataFolderInUse, StoreError
from archive.store.files import (
    INSTANCES,
    QUARANTINE,
    FileStore,
    InFlight,
    relative_path,
    safe_uid,
)
from archive.store.lock import LOCK_FILE, lock_data_folder, unlock_data_folder
from archive.store.scan import (
    DatasetReader,
    FileDigest,
    ScannedFile,
    ScannedHeader,
    digest_file,
    local_device,
    local_filesystem,
    read_meta,
    scan_file,
    scan_header,
)
from archive.store.writer import FileWriter

__all__ = [
    "INSTANCES",
    "LOCK_FILE",
    "QUARANTINE",
    "AlreadyStored",
    "DataFolderError",
    "DataFolderInUse",
    "DatasetReader",
    "FileDigest",
    "FileStore",
    "FileWriter",
    "InFlight",
    "ScannedFile",
    "ScannedHeader",
    "StoreError",
    "digest_file",
    "local_device",
    "local_filesystem",
    "lock_data_folder",
    "read_meta",
    "relative_path",
    "safe_uid",
    "scan_file",
    "scan_header",
    "unlock_data_folder",
]
