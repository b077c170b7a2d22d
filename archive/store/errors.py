"""The store's errors: a leaf module, so files.py and lock.py both build on it."""

from __future__ import annotations

from archive.errors import ArchiveError


class StoreError(ArchiveError):
    """Writing or placing an instance file failed (disk full, I/O error...)."""

    code = "store.io"

    def __init__(self, message: str, *, no_space: bool = False) -> None:
        super().__init__(message)
        self.no_space = no_space


class AlreadyStored(ArchiveError):
    """The final path exists and we were not asked to replace it."""

    code = "store.exists"


class DataFolderInUse(StoreError):
    """Another process (a running node, an import) has the data folder open."""

    code = "store.in_use"


class DataFolderError(StoreError):
    """The data folder cannot be opened (not a folder, no permission, a broken
    index): named with its path and the reason, for the operator."""

    code = "store.data_folder"
