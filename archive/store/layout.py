"""Where things live in a data folder, and the two file operations every part uses.

``instances/ab/cd/<uid>.dcm`` (``ab/cd`` from a SHA-1 of the SOP Instance UID, so
no folder grows past a few dozen entries per million instances), a replacement
beside it as ``<uid>.r<token>.dcm``, and ``tmp/<uid>.<token>.part`` for a file
being received (see ``files.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

__all__ = [
    "INSTANCES",
    "PART",
    "QUARANTINE",
    "TMP",
    "fsync_dir",
    "is_version_name",
    "relative_path",
    "replacement_path",
    "safe_uid",
    "unlink_quietly",
]

INSTANCES = "instances"
TMP = "tmp"
#: Files ``archive check --repair`` took out of ``instances/``: never read again.
QUARANTINE = "quarantine"
#: The suffix of a file being received, in ``tmp/``.
PART = ".part"


def relative_path(sop_instance_uid: str) -> str:
    """Where an instance lives, relative to the data folder."""
    digest = hashlib.sha1(sop_instance_uid.encode("ascii", "replace")).hexdigest()
    return f"{INSTANCES}/{digest[:2]}/{digest[2:4]}/{sop_instance_uid}.dcm"


def replacement_path(sop_instance_uid: str, token: str) -> str:
    """Where a replacement of an instance goes: beside it, under its own name.

    The ``r`` keeps the name from ever reading as another UID's file (UIDs hold
    digits and dots only). The old version stays until the index has switched
    to the new one, so a failed replacement loses nothing.
    """
    return f"{relative_path(sop_instance_uid)[:-4]}.r{token}.dcm"


def is_version_name(sop_instance_uid: str, name: str) -> bool:
    """Whether a file name in the instance's folder is one of its versions: the
    first (:func:`relative_path`) or a replacement (:func:`replacement_path`)."""
    return name == f"{sop_instance_uid}.dcm" or (
        name.startswith(f"{sop_instance_uid}.r") and name.endswith(".dcm")
    )


def safe_uid(uid: str) -> bool:
    """A UID usable as a file name: digits and dots only, 1-64 characters."""
    # strip() leaves nothing exactly when every character is an ASCII digit or a dot.
    return 0 < len(uid) <= 64 and not uid.strip("0123456789.")


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (POSIX makes a new entry durable only this way)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
