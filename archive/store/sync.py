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
from collections.abc import Callable

__all__ = ["Syncfs", "load_syncfs"]

#: Flush the filesystem holding this descriptor; raises OSError.
Syncfs = Callable[[int], None]


@functools.cache
def load_syncfs() -> Syncfs | None:
    """The C library's ``syncfs``, or None where there is none (not Linux, old libc).

    Looked up among the symbols the process has loaded already (``CDLL(None)``):
    ``ctypes.util.find_library`` would run ``ldconfig`` in a subprocess.
    """
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
