"""The in-flight markers a crash leaves in ``tmp/``: listing and clearing them.

Every instance being received has a part file ``tmp/<uid>.<token>.part``, linked to
its final path once written, and unlinked only after its index row is committed
(``files.py``). What a crash leaves there is therefore exactly what was in flight.
This module lists it (:func:`scan_in_flight`) and removes the markers once
recovery has judged them (:func:`clear_markers`); the judging, against the index,
is ``archive/node.py``'s (``Storage.recover``). Blocking: run in the I/O pool.

Only "no such file" (ENOENT, or ENOTDIR: a folder on the way is not one) says a
file is absent. Any other error of a stat (EIO, EACCES, ELOOP...) is an answer
recovery cannot act on: the file may well be there, acknowledged, and taking it
for absent would remove its row, then the file itself at the next start. So the
scan stops with a :class:`StoreError` naming the path, before recovery has
changed anything.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import msgspec

from archive.store.errors import StoreError
from archive.store.layout import (
    PART,
    TMP,
    fsync_dir,
    relative_path,
    replacement_path,
    safe_uid,
    unlink_quietly,
)

__all__ = ["InFlight", "clear_markers", "scan_in_flight"]

log = logging.getLogger(__name__)


class InFlight(msgspec.Struct, frozen=True):
    """A marker left in ``tmp/``: an instance whose storage had not completed."""

    #: The SOP Instance UID from the marker's name.
    uid: str
    #: ``tmp/<uid>.<token>.part``, relative to the data folder.
    marker: str
    #: The final paths this marker's file may have been linked to.
    candidates: tuple[str, ...]
    #: The candidate that is the marker's inode, or None if it was not placed.
    placed: str | None
    #: The candidates there is a file at (whatever its inode).
    present: tuple[str, ...]


def scan_in_flight(root: Path) -> list[InFlight]:
    """The markers in ``root/tmp``, each with where its file was placed (if it was).

    Whatever file in ``tmp/`` is not a marker is debris and is removed; a folder
    (nothing of ours: someone made it) is left, with a warning. Raises
    :class:`StoreError` if a marker or a candidate cannot be stat'ed (module
    docstring).
    """
    found: list[InFlight] = []
    for part in sorted((root / TMP).iterdir()):
        if part.is_dir() and not part.is_symlink():
            log.warning("%s is a folder, not ours: left as it is", part)
            continue
        uid, _, token = part.name[: -len(PART)].rpartition(".")
        if not (part.name.endswith(PART) and safe_uid(uid) and token):
            unlink_quietly(part)  # tmp/ is ours alone
            continue
        marker = part.relative_to(root).as_posix()
        own = _stat(root, marker)
        if own is None:
            continue  # gone since the listing: nothing left to judge
        candidates = (relative_path(uid), replacement_path(uid, token))
        placed = None
        present: list[str] = []
        for relative in candidates:
            st = _stat(root, relative)
            if st is None:
                continue
            present.append(relative)
            if placed is None and os.path.samestat(own, st):
                placed = relative
        found.append(
            InFlight(
                uid=uid,
                marker=marker,
                candidates=candidates,
                placed=placed,
                present=tuple(present),
            )
        )
    return found


def _stat(root: Path, relative: str) -> os.stat_result | None:
    """The file's stat, None if there is no such file; StoreError if the stat cannot tell."""
    try:
        return os.stat(root / relative)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        raise StoreError(
            f"recovery cannot tell whether {relative} is there ({code}: "
            f"{exc.strerror or exc}); nothing was changed: repair the disk or the "
            "permissions and start again"
        ) from exc


def clear_markers(root: Path, markers: list[str], *, durable: bool) -> None:
    """Remove markers (relative paths) recovery has dealt with, then flush ``tmp/``."""
    for marker in markers:
        unlink_quietly(root / marker)
    if durable:
        fsync_dir(root / TMP)
