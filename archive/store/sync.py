"""Flushing a whole filesystem at once: ``syncfs(2)``, which Python does not wrap.

Under ``flush = "batch"`` (``archive/node.py``) one ``syncfs`` after each group
commit makes every file, folder entry and index page written since the last one
durable together: one device flush per batch instead of three per instance (the
file, its folder, the write-ahead log). ``syncfs`` writes back the dirty data and
metadata of the one filesystem holding the descriptor and, on Linux since 5.8,
reports any writeback error that happened on it since the descriptor was opened
(``errseq``), so a failed write is not mistaken for a durable one.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
from collections.abc import Callable

__all__ = ["Syncfs", "load_syncfs", "reports_errors"]

#: Flush the filesystem holding this descriptor; raises OSError.
Syncfs = Callable[[int], None]


#: The first Linux whose syncfs reports writeback errors (errseq, syncfs(2)).
REPORTS_ERRORS_SINCE = (5, 8)


def reports_errors(release: str) -> bool:
    """Whether a kernel of this ``uname -r`` release has syncfs report I/O errors."""
    numbers = re.match(r"(\d+)\.(\d+)", release)
    return numbers is not None and tuple(map(int, numbers.groups())) >= REPORTS_ERRORS_SINCE


@functools.cache
def load_syncfs() -> Syncfs | None:
    """The C library's ``syncfs``, or None where it cannot be relied on: not Linux,
    an old libc, or a kernel before 5.8, whose syncfs returns 0 even when writing
    a file back failed (a per-file fsync reports it).

    Looked up among the symbols the process has loaded already (``CDLL(None)``):
    ``ctypes.util.find_library`` would run ``ldconfig`` in a subprocess.
    """
    if not reports_errors(os.uname().release):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int]
    function.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        if function(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return syncfs
