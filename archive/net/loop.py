"""Event-loop selection: uvloop when asked for or, with ``auto``, when importable;
and the allocator set up for streaming (:func:`keep_freed_memory`)."""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``kind`` ("auto", "asyncio" or "uvloop"); None means asyncio's."""
    if kind == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise RuntimeError('loop = "uvloop" but uvloop is not installed') from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


#: mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks below this come from the heap, not a mapping of their own: PDUs of the
#: default 256 KiB and the buffers joined from them, with room to spare.
MMAP_THRESHOLD = 4 << 20
#: Free memory at the top of the heap kept for reuse before any goes back.
TRIM_THRESHOLD = 32 << 20


def keep_freed_memory() -> bool:
    """Have glibc's malloc reuse freed PDU-sized blocks instead of returning them.

    By default a block of 128 KiB or more is a mapping of its own, and free
    memory at the top of the heap goes back to the kernel past 128 KiB (glibc
    raises both thresholds as it sees large blocks freed, but only then). A
    receive path that allocates and frees 256 KiB PDUs at several lifetimes
    keeps crossing both lines, and every page it gets back is a page fault, on a
    VM one the host must serve too: the C-GET client on uvloop took 40-80 faults
    and 0.26-0.42 ms of CPU per 0.5 MB instance, ~1 and 0.16-0.24 ms with these
    settings. The cost: blocks below :data:`MMAP_THRESHOLD` come from the heaps
    (one per thread arena, up to 8 per core), whose freed memory goes back only
    from the top and past :data:`TRIM_THRESHOLD`. The server's RSS after a 1 GiB
    ingest: 42 MB with these settings, 38 MB without (``test_memory.py``); what a
    burst of connections took goes back once it is over (:mod:`archive.net.memory`). Not
    glibc (musl, say): nothing is done and the result is False.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # Both fixed: setting either one turns glibc's adapting off for both.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def run(main: Coroutine[Any, Any, T], kind: str = "auto") -> T:
    """Run ``main`` to completion on a fresh loop of the chosen kind, with the
    allocator set up for streaming (:func:`keep_freed_memory`)."""
    keep_freed_memory()
    with asyncio.Runner(loop_factory=loop_factory(kind)) as runner:
        return runner.run(main)
