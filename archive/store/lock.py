"""One process at a time on a data folder: an exclusive lock on ``<data>/lock``.

Crash recovery (:meth:`FileStore.in_flight` and ``Storage.recover``) takes every
in-flight marker in ``tmp/`` for debris of a crash. That is only true when no
other process is writing there: an ``archive import`` or ``archive check`` run
beside a serving node would remove files the node is about to acknowledge. So
whoever opens the store holds ``flock(LOCK_EX)`` on a lock file until it closes;
the kernel drops it when the process dies, so a crash never leaves it stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from archive.store.errors import DataFolderInUse

__all__ = ["LOCK_FILE", "DataFolderInUse", "lock_data_folder", "unlock_data_folder"]

LOCK_FILE = "lock"


def lock_data_folder(root: Path) -> int:
    """Take the folder's lock (blocking call, never waits); its file descriptor."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataFolderInUse(
            f"data folder {root} is in use by another archive process (a running node?)"
        ) from None
    return fd


def unlock_data_folder(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)  # closing the descriptor releases the lock
