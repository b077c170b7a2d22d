"""The last trip of an instance file: write its tail, link it into place, close it.

:func:`write_and_link` is ``archive._native.write_and_link`` (``native/_native.c``)
when that extension was built, else :func:`write_and_link_py`, its pure-Python
twin: same steps, same results, same exceptions (``tests/store/test_place.py``
holds both to that). The C one releases the GIL once for the whole sequence; the
twin's os calls each release and retake it, and under ingest from several
associations each retake waits for the event loop: measured here, ~15 % more
small instances per second on four associations with the C one.

``ARCHIVE_NATIVE=0`` in the environment selects the twin (:mod:`archive.native`).
"""

from __future__ import annotations

import contextlib
import operator
import os
from collections.abc import Sequence

from archive.native import choose

__all__ = ["IMPLEMENTATION", "Chunk", "write_all", "write_and_link", "write_and_link_py"]

#: What may be written: the file's bytes, as received.
Chunk = bytes | bytearray | memoryview
#: What os takes as a path.
StrPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]
#: The range of the C twin's ``advise_from`` (a C long long).
_LONG_LONG_MIN, _LONG_LONG_MAX = -(1 << 63), (1 << 63) - 1


def write_and_link_py(
    fd: int,
    path: StrPath,
    chunks: Sequence[Chunk],
    final: StrPath,
    folders: Sequence[StrPath],
    advise_from: int = -1,
    /,
) -> bool:
    """Open ``path`` (when ``fd`` < 0), write ``chunks``, make ``folders``, link, close.

    With ``advise_from`` >= 0, the writeback of what lies from that offset on
    starts once written (``POSIX_FADV_DONTNEED`` on dirty pages; advice, so its
    error is ignored).

    Returns True when ``path`` was linked to ``final``, False when ``final``
    exists already (nothing linked). ``folders`` are made in order; one that
    exists is fine. The descriptor is closed whatever happens; ``path`` stays.
    """
    try:
        # Refused before anything is opened or written, in the C twin's order
        # (its argument parsing takes advise_from as a C long long first).
        advise_from = operator.index(advise_from)
        if not _LONG_LONG_MIN <= advise_from <= _LONG_LONG_MAX:
            raise OverflowError("advise_from does not fit a C long long")
        folders = tuple(folders)  # once: an iterator would be empty at the mkdirs
        for name in (path, final, *folders):
            _check_path(name)
        views = [_byte_view(chunk) for chunk in chunks]
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    if fd < 0:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, views)
        if advise_from >= 0:
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, advise_from, 0, os.POSIX_FADV_DONTNEED)
        for folder in folders:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, 0o755)
        try:
            os.link(path, final)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _check_path(name: StrPath) -> None:
    """What os refuses in a path: not str, bytes or path-like; a NUL; an unencodable str."""
    if b"\0" in os.fsencode(name):
        raise ValueError("embedded null byte")


def _byte_view(chunk: Chunk) -> memoryview:
    view = memoryview(chunk)
    if not view.c_contiguous:
        raise BufferError("memoryview: underlying buffer is not C-contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def write_all(fd: int, chunks: Sequence[bytes | memoryview]) -> int:
    """os.writev until every byte is written (it may write less than asked); the count.

    ``chunks`` are bytes or byte views (what the receiver and :func:`_byte_view`
    give): their ``len`` is their size in bytes. Nothing is checked here, on the
    path of every fragment.
    """
    pending = [chunk for chunk in chunks if len(chunk)]
    total = sum(len(chunk) for chunk in pending)
    while pending:
        written = os.writev(fd, pending[:1024])
        while written and pending:
            head = pending[0]
            if written >= len(head):
                written -= len(head)
                pending.pop(0)
            else:
                pending[0] = memoryview(head)[written:]
                written = 0
    return total


write_and_link = choose("write_and_link", write_and_link_py)
#: "native" or "python": which of the two :data:`write_and_link` is.
IMPLEMENTATION = "python" if write_and_link is write_and_link_py else "native"
