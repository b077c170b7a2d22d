"""SCU commands built on the asyncio client: sending files (C-STORE) for now."""

from __future__ import annotations

from archive.scu.store import (
    CHUNK,
    Cause,
    FileItem,
    FileReadError,
    FileResult,
    Group,
    Kind,
    Report,
    StoreOptions,
    discover,
    plan,
    probe,
    probe_all,
    read_chunks,
    send_files,
    status_result,
)

__all__ = [
    "CHUNK",
    "Cause",
    "FileItem",
    "FileReadError",
    "FileResult",
    "Group",
    "Kind",
    "Report",
    "StoreOptions",
    "discover",
    "plan",
    "probe",
    "probe_all",
    "read_chunks",
    "send_files",
    "status_result",
]
