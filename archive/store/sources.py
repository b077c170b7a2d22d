"""The files a C-MOVE or C-GET (or ``archive store``) sends: opened ahead, on the
loop when that needs no disk I/O, and read on the loop when the page cache holds
them; in the I/O pool otherwise.

:class:`FileSource` is one stored file's data set for one sub-operation;
:meth:`FileSource.open_ahead` opens several, those not cached in one trip to the
store's I/O pool. The C-MOVE/C-GET sub-operations are
:mod:`archive.services.retrieve`; the Storage SCU's sessions, ``archive/scu/store.py``.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, Protocol, TypeVar

from archive.dicom.filemeta import FileMeta
from archive.dicom.reencode import ReencodeError, ToImplicit, ToLittleEndian
from archive.dicom.uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
)
from archive.store import DatasetReader
from archive.store.scan import CHUNK

__all__ = [
    "INFLATE_CHUNK",
    "OPEN_AHEAD",
    "FileSource",
    "InstanceFiles",
    "reencoded",
    "sendable_as",
    "to_open",
]

T = TypeVar("T")

#: Files opened ahead of the sub-operation in flight, in one trip to the I/O pool.
OPEN_AHEAD = 4


class InstanceFiles(Protocol):
    #: The files are on a local filesystem: a cached path opens without waiting.
    local: bool

    def path(self, relative: str) -> str: ...
    async def run(self, fn: Callable[..., T], *args: object) -> T: ...


class FileSource:
    """A stored file's data set, opened ahead, read on the loop when the page cache
    holds it.

    Created ahead of the sub-operation in flight (:meth:`open_ahead`: the next
    :data:`OPEN_AHEAD` files), so the next files are opened while the peer stores
    the current one: on the event loop when the path and inode are cached
    (``openat2`` with ``RESOLVE_CACHED``, which fails rather than wait for the
    disk; ``DatasetReader.open_cached``) and the filesystem is local (a network
    filesystem's open may ask its server whatever is cached: NFSv4 sends OPEN),
    the others by one job in the I/O pool. C-GET of 0.5 MB images, alternating
    runs: 2,282-2,888 instances/s with every open in the pool, 2,694-3,650 with
    them on the loop. Its bytes are then read on the
    event loop if, and only if, the page cache holds them all (``RWF_NOWAIT``:
    such a read never waits for the disk; ~70 us for 0.5 MB here), else in the
    I/O pool. Measured on C-GET of 0.5 MB images: ~2,300 instances/s with every
    read in the pool, ~4,000/s reading cached files on the loop, the pool thread's
    GIL round trips (open, fstat, read, close) and context switches having cost
    more than the copy. :meth:`first` reports a read error before anything is
    sent, so a missing file fails its sub-operation only.

    A job in the I/O pool cannot be cancelled (``run_in_executor``): every one is
    a task awaited through :func:`asyncio.shield`, so a cancelled sub-operation
    leaves it running, and :meth:`close` waits for the last one to end before
    closing the file under it (its descriptor could be reused meanwhile).
    """

    def __init__(
        self,
        files: InstanceFiles,
        reader: DatasetReader,
        opened: asyncio.Future[list[OSError | None]],
        index: int,
        local: bool,
    ) -> None:
        # Use open_ahead().
        self.files = files
        self.reader = reader
        #: On a local filesystem: its descriptor may be inspected and closed on the loop.
        self.local = local
        self._opened = opened
        self._index = index
        #: The pool job in flight, or the last one: the file is closed once it is done.
        self._job: asyncio.Future[Any] = opened
        self._closing = False

    @classmethod
    def open_ahead(
        cls,
        files: InstanceFiles,
        relatives: Sequence[str],
        chunk: int | None = None,
        *,
        local: Sequence[bool] | None = None,
        metas: Sequence[FileMeta | None] | None = None,
    ) -> list[FileSource]:
        """Sources for these files, each read ``chunk`` (default :data:`CHUNK`)
        bytes at a time: opened on the loop when local (``local``, per file, else
        ``files.local``) and cached, the others by one job in the I/O pool. A
        file given its meta in ``metas`` is a data set without File Meta."""
        size = CHUNK if chunk is None else chunk
        given = [None] * len(relatives) if metas is None else list(metas)
        readers = [
            DatasetReader(files.path(relative), size, meta)
            for relative, meta in zip(relatives, given, strict=True)
        ]
        on_loop = [files.local] * len(readers) if local is None else list(local)
        # A trip to the pool and back cost more than such an open (see the class).
        cached: list[bool] = []
        try:
            for reader, may in zip(readers, on_loop, strict=True):
                cached.append(may and reader.open_cached())
        except BaseException:
            for reader in readers:
                reader.close()
            raise
        opened: asyncio.Future[list[OSError | None]]
        if all(cached):
            opened = asyncio.get_running_loop().create_future()
            opened.set_result([None] * len(readers))
        else:
            rest = [reader for reader, done in zip(readers, cached, strict=True) if not done]
            opened = asyncio.ensure_future(_open_rest(files, rest, cached))
        return [
            cls(files, reader, opened, i, here)
            for i, (reader, here) in enumerate(zip(readers, on_loop, strict=True))
        ]

    async def first(self) -> memoryview:
        error = (await asyncio.shield(self._opened))[self._index]
        if error is not None:
            raise error
        if self._closing:
            raise OSError("the sub-operation ended")  # closed while it was opened
        block = self.reader.first_cached()
        if block is None:
            block = await self._in_pool(self.reader.first_read)
        return block

    async def chunks(self, first: memoryview) -> AsyncGenerator[memoryview, None]:
        """The data set from ``first`` (what :meth:`first` gave) to the end.

        The caller closes the source (:meth:`close`) once the sub-operation ends.
        """
        block = first
        while block:
            yield block
            if self.reader.done:
                break
            cached = self.reader.next_cached()
            block = cached if cached is not None else await self._in_pool(self.reader.next)

    async def _in_pool(self, read: Callable[[], memoryview]) -> memoryview:
        job: asyncio.Future[memoryview] = asyncio.ensure_future(self.files.run(read))
        self._job = job
        return await asyncio.shield(job)

    def close(self) -> None:
        """Close the file once the pool job in flight, if any, ends (its error unused).

        Idempotent: the sub-operation's error paths and its end may all call it.
        """
        if not self._closing:
            self._closing = True
            self._job.add_done_callback(self._closed)

    def _closed(self, job: asyncio.Future[Any]) -> None:
        for done in (self._opened, job):
            if done.done() and not done.cancelled():
                done.exception()  # retrieved: a read never sent fails quietly
        if self.reader.closed:
            return  # read to its end in the pool, which closed it there
        if not (self.local and self.reader.close_if_cheap()):
            # Deleted or replaced meanwhile, this close may free its blocks; on a
            # network filesystem the fstat and close may ask its server.
            closing = asyncio.ensure_future(self.files.run(self.reader.close))
            _background.add(closing)
            closing.add_done_callback(_background.discard)


#: The transfer syntaxes a data set stored in one may go out in, the stored one
#: first: a Deflated one inflated is Explicit VR Little Endian (PS3.5 A.5), as is
#: an Explicit VR Big Endian one swapped (:class:`ToLittleEndian`), and that
#: converts to Implicit VR Little Endian (:class:`ToImplicit`), the default every
#: SCP must accept (PS3.5 10.1). Anything else goes out as stored only.
_ROUTES = {
    EXPLICIT_VR_LE: (EXPLICIT_VR_LE, IMPLICIT_VR_LE),
    DEFLATED_EXPLICIT_VR_LE: (DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_LE, IMPLICIT_VR_LE),
    EXPLICIT_VR_BE: (EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE),
}
#: Inflated bytes handed on at a time (a deflate stream may inflate 1032:1).
INFLATE_CHUNK = 256 << 10


def sendable_as(stored: str) -> tuple[str, ...]:
    """The transfer syntaxes a data set stored in ``stored`` can be sent in, best first."""
    return _ROUTES.get(stored, (stored,))


def reencoded(
    chunks: AsyncGenerator[memoryview, None],
    stored: str,
    sent: str,
    failed: Callable[[str], Exception],
) -> AsyncGenerator[memoryview, None]:
    """A data set's ``chunks`` in ``stored`` as ``sent`` (one of :func:`sendable_as`).

    What cannot be followed raises ``failed(reason)`` where that shows, the
    message half sent: the caller's error for a file that fails mid-send.
    """
    if sent == stored:
        return chunks
    if stored == DEFLATED_EXPLICIT_VR_LE:
        chunks = _inflated(chunks, failed)
    elif stored == EXPLICIT_VR_BE:
        chunks = _rewritten(chunks, ToLittleEndian(), "Explicit VR Little Endian", failed)
    if sent == IMPLICIT_VR_LE:
        chunks = _rewritten(chunks, ToImplicit(), "Implicit VR Little Endian", failed)
    return _even(chunks)


async def _even(chunks: AsyncGenerator[memoryview, None]) -> AsyncGenerator[memoryview, None]:
    """``chunks`` cut at even lengths: each becomes PDV fragments of its own, and
    peers refuse an odd fragment (DCMTK: "Odd Fragment Length"). A converted
    piece may end anywhere (a header or a number held back for the next), so
    one byte waits for the next piece; only an odd data set's last is odd."""
    carry = b""
    try:
        async for chunk in chunks:
            data: bytes | memoryview = b"".join((carry, chunk)) if carry else chunk
            carry = b""
            if len(data) % 2:
                carry = bytes(data[-1:])
                data = memoryview(data)[:-1]
            if data:
                yield memoryview(data)
        if carry:
            yield memoryview(carry)
    finally:
        await chunks.aclose()


async def _inflated(
    chunks: AsyncGenerator[memoryview, None], failed: Callable[[str], Exception]
) -> AsyncGenerator[memoryview, None]:
    """A Deflated data set's ``chunks`` inflated (raw deflate, PS3.5 A.5), at most
    :data:`INFLATE_CHUNK` bytes at a time; what follows the stream's end (a pad
    byte) is left out."""
    stream = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        async for chunk in chunks:
            data: bytes | memoryview = chunk
            while not stream.eof:
                out = stream.decompress(data, INFLATE_CHUNK)
                data = stream.unconsumed_tail
                if out:
                    yield memoryview(out)
                # Input left, or a full piece (zlib may hold output for input it
                # has taken in whole): ask again; else this chunk is done.
                if not data and len(out) < INFLATE_CHUNK:
                    break
        if not stream.eof:
            raise failed("cannot be inflated: the deflate stream is cut short")
    except zlib.error as exc:
        raise failed(f"cannot be inflated: {exc}") from exc
    finally:
        await chunks.aclose()


async def _rewritten(
    chunks: AsyncGenerator[memoryview, None],
    walk: ToImplicit | ToLittleEndian,
    into: str,
    failed: Callable[[str], Exception],
) -> AsyncGenerator[memoryview, None]:
    """``chunks`` through ``walk`` (``archive/dicom/reencode.py``: headers and,
    from Big Endian, numbers change; nothing else), which gives them ``into``."""
    try:
        async for chunk in chunks:
            if out := walk.feed(chunk):
                yield memoryview(out)
        if out := walk.close():
            yield memoryview(out)
    except ReencodeError as exc:
        raise failed(f"cannot be sent as {into}: {exc}") from exc
    finally:
        await chunks.aclose()


#: Closes running in the I/O pool, held until done (nobody awaits them).
_background: set[asyncio.Future[None]] = set()


def to_open(queued: int, workers: int, held: int) -> int:
    """How many queued files a worker holding ``held`` opened ones takes now: the
    one to send, and the next while the queue holds one for every worker; several
    per trip (:data:`OPEN_AHEAD` at most) while the queue is long, one at its end,
    so that no worker holds back what another, idle, could send. 0: none."""
    workers = max(1, workers)
    if not queued or held >= 2 or (held and queued < workers):
        return 0
    return min(OPEN_AHEAD, max(1, queued // workers))


async def _open_rest(
    files: InstanceFiles, rest: Sequence[DatasetReader], cached: Sequence[bool]
) -> list[OSError | None]:
    """Open ``rest`` in the pool; the error of every reader, the cached ones' None."""
    errors = iter(await files.run(_open_all, rest))
    return [None if done else next(errors) for done in cached]


def _open_all(readers: Sequence[DatasetReader]) -> list[OSError | None]:
    """Open each reader (blocking); the error of each one that failed, in order."""
    errors: list[OSError | None] = []
    for reader in readers:
        try:
            reader.open()
        except OSError as exc:
            errors.append(exc)
        else:
            errors.append(None)
    return errors
