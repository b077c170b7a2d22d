"""One-line progress bars for terminals: files sent (``archive store``, ``import``)
and Query/Retrieve sub-operations (``archive move``, ``get``, ``pull``).

Writes to stderr, and only when stderr is a terminal (piped or redirected output
stays clean for scripts and logs). Redraws are throttled to about ten per second
so that a run of thousands of small files costs nothing in terminal I/O. No
dependency; not a logger, not a general-purpose widget.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Self, TextIO

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


def _bar(fraction: float) -> str:
    filled = int(_WIDTH * min(fraction, 1.0))
    return "[" + "#" * filled + "." * (_WIDTH - filled) + "]"


class StatusLine:
    """The line itself: ``due()`` says when to redraw (throttled), ``draw(text)``
    redraws it, ``close()`` erases it.

    Also a context manager that closes on exit, so that whatever follows (a
    summary, a traceback) starts on a clean line.
    """

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._drawn = False
        self._hooked: list[logging.Handler] | None = None  # None: not looked for yet
        self._erase_first = _EraseFirst(self)

    def due(self, force: bool = False) -> bool:
        """Whether to redraw now: always if ``force``, else once per :data:`INTERVAL`.

        Asked before the text is built, which then costs nothing when throttled.
        """
        if not self.enabled:
            return False
        now = time.monotonic()
        if force or now - self._last >= INTERVAL:
            self._last = now
            return True
        return False

    def draw(self, text: str) -> None:
        if self._hooked is None:
            self._hook()
        # "\r" then clear to end of line: the line may have shrunk.
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def erase(self) -> None:
        """Clear the line; the next due redraw brings the bar back."""
        if self.enabled and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def close(self) -> None:
        """Erase the bar so the summary that follows starts on a clean line."""
        self.erase()
        for handler in self._hooked or ():
            handler.removeFilter(self._erase_first)
        self._hooked = None

    def _hook(self) -> None:
        """Have log records written to our stream erase the bar first: written
        after it on the same line, the next redraw would overwrite them."""
        self._hooked = []
        for handler in logging.getLogger().handlers:
            if getattr(handler, "stream", None) is self.stream:
                handler.addFilter(self._erase_first)
                self._hooked.append(handler)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Progress(StatusLine):
    """``advance(files, nbytes)`` as work completes; ``close()`` clears the line."""

    def __init__(
        self,
        total: int,
        *,
        label: str = "files",
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        super().__init__(stream, enabled)
        self.total = total
        #: The total is still growing (files still being found): shown as "N+".
        self.more = False
        self.label = label
        self.done = 0
        self.bytes = 0
        self.started = time.monotonic()

    def advance(self, files: int = 1, nbytes: int = 0) -> None:
        self.done += files
        self.bytes += nbytes
        # The last one is always drawn, so the bar ends full.
        if self.due(force=self.done >= self.total and not self.more):
            self.draw(self.line(self._last))

    def line(self, now: float | None = None) -> str:
        """The bar as text (without the carriage return)."""
        elapsed = max((now if now is not None else time.monotonic()) - self.started, 1e-9)
        fraction = self.done / self.total if self.total else 1.0
        rate = self.bytes / elapsed / 1e6
        return (
            f"{_bar(fraction)} {self.done}/{self.total}{'+' if self.more else ''} {self.label}"
            f"  {human_bytes(self.bytes)}  {rate:.1f} MB/s"
        )


class SubOperationBar(StatusLine):
    """C-MOVE/C-GET sub-operations done of the total, and how (PS3.4 C.4.2.3)."""

    def update(
        self, completed: int, failed: int, warning: int, total: int | None, prefix: str = ""
    ) -> None:
        if self.due():
            self.draw(self.line(completed, failed, warning, total, prefix))

    @staticmethod
    def line(completed: int, failed: int, warning: int, total: int | None, prefix: str = "") -> str:
        done = completed + failed + warning
        head = f"{_bar(done / total)} {done}/{total}" if total else f"{done}"
        return (
            f"{prefix}{head} instances  completed {completed}, failed {failed}, warning {warning}"
        )


class _EraseFirst(logging.Filter):
    """A handler filter that lets every record through, erasing the bar first."""

    def __init__(self, line: StatusLine) -> None:
        super().__init__()
        self.line = line

    def filter(self, record: logging.LogRecord) -> bool:
        self.line.erase()
        return True
