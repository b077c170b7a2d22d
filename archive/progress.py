"""A one-line progress bar for terminals: files done of total, bytes and rate.

Writes to stderr, and only when stderr is a terminal (piped or redirected output
stays clean for scripts and logs). Redraws are throttled to about ten per second
so that a run of thousands of small files costs nothing in terminal I/O. No
dependency; not a logger, not a general-purpose widget.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Seconds between redraws.
INTERVAL = 0.1
_WIDTH = 24


def human_bytes(n: float) -> str:
    """``n`` bytes in binary units, e.g. ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class Progress:
    """``advance(files, nbytes)`` as work completes; ``close()`` clears the line."""

    def __init__(
        self,
        total: int,
        *,
        label: str = "files",
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self.total = total
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def advance(self, files: int = 1, nbytes: int = 0) -> None:
        self.done += files
        self.bytes += nbytes
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= INTERVAL or self.done >= self.total:
            self._last = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        """The bar as text (without the carriage return)."""
        elapsed = max((now if now is not None else time.monotonic()) - self.started, 1e-9)
        fraction = self.done / self.total if self.total else 1.0
        filled = int(_WIDTH * min(fraction, 1.0))
        bar = "#" * filled + "." * (_WIDTH - filled)
        rate = self.bytes / elapsed / 1e6
        return (
            f"[{bar}] {self.done}/{self.total} {self.label}"
            f"  {human_bytes(self.bytes)}  {rate:.1f} MB/s"
        )

    def _draw(self, now: float) -> None:
        # "\r" then clear to end of line: the line may have shrunk.
        self.stream.write("\r" + self.line(now) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the bar so the summary that follows starts on a clean line."""
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False
