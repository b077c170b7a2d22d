"""The memory a burst of connections took goes back to the system once it is over.

Each open connection holds a few PDU buffers (up to ~1 MB with the default
256 KiB Maximum Length Received). When it ends, glibc's malloc keeps the freed
blocks for reuse and gives memory back only from the top of a heap: after a
storm of 1,000 half-sent data sets, an ``archive serve`` that had started at
36 MB stayed at 308 MB for good, a second storm reusing it; the same with glibc's
own thresholds as with :func:`archive.net.loop.keep_freed_memory`'s.
``malloc_trim(0)`` hands every heap's free pages back. It runs on a thread but
holds each heap's lock while it works on it, and the buffers were the event
loop's, so the loop waits for it when it allocates: ~25 ms for those 250 MB
(~100 ms a GB), once, after a storm.

:class:`BurstRelease` decides when: once at least :data:`PEAK` connections
(TCP connections: refused and silent ones hold buffers too) were open at once
and their number has stayed at or below a quarter of that peak for :data:`QUIET`
seconds. The connections still open then are the new peak; when the last of them
ends, memory goes back once more after the same quiet time. A monitor's
association held open or coming and going does not keep the memory; storms less
than :data:`QUIET` apart do, as each would take it again at once (each page taken
back is a page fault, which costs here: see ``keep_freed_memory``); storms further
apart pay those faults each time.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Connections open at once from which a fall is worth giving memory back.
PEAK = 32
#: Seconds the number must stay low before the memory goes back.
QUIET = 5.0


def give_back_memory() -> bool:
    """Return the free pages of every malloc heap to the kernel (glibc's
    ``malloc_trim(0)``; blocking). False where there is no ``malloc_trim``."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return bool(trim(0))


class BurstRelease:
    """Told the number of open connections at each change; gives memory back
    (``give_back``, on the loop's default executor) once a burst is over."""

    def __init__(
        self,
        give_back: Callable[[], object] = give_back_memory,
        *,
        peak: int = PEAK,
        quiet: float = QUIET,
    ) -> None:
        self._give_back = give_back
        self._min_peak = peak
        self._quiet = quiet
        #: The most connections open at once since memory last went back.
        self._peak = 0
        #: As last told (the server's count of its connection tasks).
        self._open = 0
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Future[object] | None = None
        self._stopped = False
        #: Connections outlived the last give-back: once they are all gone, again.
        self._tail = False
        #: The pending timer is for that second give-back (the tail's).
        self._for_tail = False

    def opened(self, open_now: int) -> None:
        self._open = open_now
        self._peak = max(self._peak, self._open)
        if self._timer is not None and not self._low():
            self._timer.cancel()  # a new storm: it will take the memory again
            self._timer = None

    def closed(self, open_now: int) -> None:
        self._open = open_now
        if self._stopped or self._timer is not None:
            return
        burst_over = self._peak >= self._min_peak and self._low()
        if burst_over or (self._tail and not self._open):
            self._for_tail = not burst_over
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._quiet, self._release)

    def cancel(self) -> None:
        """No memory goes back from now on (the server is stopping)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _low(self) -> bool:
        # At least one: after a small tail, a monitor's association coming and
        # going must not put the give-back off for as long as it keeps coming.
        return self._open <= max(1, self._peak // 4)

    def _release(self) -> None:
        self._timer = None
        self._peak = self._open
        self._tail = self._open > 0 and not self._for_tail  # one tail, not a chain
        if self._running is not None and not self._running.done():
            return  # the last one is still at work (a trim is ~0.1 s a GB)
        loop = asyncio.get_running_loop()
        self._running = loop.run_in_executor(None, self._give_back)
        self._running.add_done_callback(_report)


def _report(done: asyncio.Future[object]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("giving memory back failed: %s", done.exception())
