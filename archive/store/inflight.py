"""The in-flight markers a crash leaves in ``tmp/``: listing and clearing them.

Every instance being received has a part file ``tmp/<uid>.<token>.part``, linked to
its final path once written, and unlinked only after its index row is committed
(``files.py``). What a crash leaves there is therefore exactly what was in flight.
This module lists it (:func:`scan_in_flight`) and removes the markers once
recovery has judged them (:func:`clear_markers`); the judging, against the index,
is ``archive/node.py``'s (``Storage.recover``). Blocking: run in the I/O pool.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import msgspec

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


def scan_in_flight(root: Path) -> list[InFlight]:
    """The markers in ``root/tmp``, each with where its file was placed (if it was).

    Whatever in ``tmp/`` is not a marker is debris and is removed.
    """
    found: list[InFlight] = []
    for part in sorted((root / TMP).iterdir()):
        uid, _, token = part.name[: -len(PART)].rpartition(".")
        if not (part.name.endswith(PART) and safe_uid(uid) and token):
            unlink_quietly(part)  # tmp/ is ours alone
            continue
        marker = part.relative_to(root).as_posix()
        candidates = (relative_path(uid), replacement_path(uid, token))
        placed = None
        for relative in candidates:
            with contextlib.suppress(OSError):
                if os.path.samefile(part, root / relative):
                    placed = relative
                    break
        found.append(InFlight(uid=uid, marker=marker, candidates=candidates, placed=placed))
    return found


def clear_markers(root: Path, markers: list[str], *, durable: bool) -> None:
    """Remove markers (relative paths) recovery has dealt with, then flush ``tmp/``."""
    for marker in markers:
        unlink_quietly(root / marker)
    if durable:
        fsync_dir(root / TMP)
