"""Files to send or import: finding them, reading their File Meta, reading their data sets.

:func:`discover` walks the paths given, :func:`probe` reads each file's File Meta
Information (in threads: :func:`probe_all`; a data set without one gets one made
from its own header), and the data set is read back in
bounded chunks when it is sent, through a :class:`~archive.store.sources.FileSource`
(opened ahead by ``store.py``'s sessions, one at a time by :func:`read_chunks` for
the importer), checked against what the probe saw (:func:`first_block`,
:func:`checked`). The outcome types (:class:`Kind`, :class:`Cause`,
:class:`FileResult`, :class:`Report`) are shared by ``archive store`` and
``archive import``.
"""

from __future__ import annotations

import asyncio
import enum
import os
import stat
import sys
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import msgspec

from archive.dicom.filemeta import (
    MAGIC,
    PREAMBLE_LENGTH,
    FileMeta,
    FileMetaError,
    guess_transfer_syntax,
    lacks_preamble,
)
from archive.dicom.header import HeaderError, HeaderReader
from archive.dicom.uids import DEFLATED_EXPLICIT_VR_LE, usable_uid
from archive.dicom.uids import name as uid_name
from archive.errors import ArchiveError
from archive.net import AssociationAborted
from archive.progress import human_bytes
from archive.store import DatasetReader, local_device, read_meta, scan_header
from archive.store.sources import FileSource

T = TypeVar("T")

#: Bytes read from a file per trip to a thread while sending (two are in memory).
CHUNK = 512 * 1024
#: Media Storage Directory Storage (PS3.10 8, PS3.4 Annex F): a DICOMDIR is not an
#: instance to archive.
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
#: Skipped files listed one by one in the summary before "... and N more".
MAX_SKIPPED_LISTED = 20
#: Concurrent meta reads while probing.
PROBE_CONCURRENCY = 8
#: Characters of a File Meta value quoted in a failure's reason.
_SHOWN = 80
_PAD = b"\x00"


class Kind(enum.Enum):
    """What became of one file."""

    SENT = "sent"
    WARNING = "warning"  # stored, with a warning status (PS3.7 C.4): a success
    HELD = "already held"  # import: Success, but the instance was held, nothing written
    FAILED = "failed"
    SKIPPED = "skipped"


class Cause(enum.IntEnum):
    """Why a file failed; a larger value is a worse outcome for the run as a whole."""

    STATUS = 1  # the peer answered a failure status
    CONTEXT = 2  # presentation context rejected
    FILE = 3  # unreadable or malformed file
    TIMEOUT = 4  # a timer ran out (connect, ARTIM, DIMSE)
    NETWORK = 5  # aborted association, lost connection, nothing listening
    REJECTED = 6  # A-ASSOCIATE-RJ


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    kind: Kind
    sop_instance_uid: str = ""
    status: int | None = None
    reason: str = ""
    nbytes: int = 0
    cause: Cause | None = None

    def describe(self) -> str:
        """One summary line: path, SOP Instance UID, status in hex and/or reason."""
        parts = [f"{self.kind.value}: {shown_path(self.path)}"]
        if self.sop_instance_uid:
            parts.append(self.sop_instance_uid)
        detail = f"status 0x{self.status:04X}" if self.status is not None else ""
        if self.reason:
            detail = f"{detail}: {self.reason}" if detail else self.reason
        if detail:
            parts.append(detail)
        return "  ".join(parts)


def shown_path(path: str) -> str:
    """``path`` as it can be printed: a name that is not valid in the file system's
    encoding (os.walk hands it on with surrogates, PEP 383) shows its bytes
    escaped, ``\\xfe``, instead of failing to encode."""
    return os.fsencode(path).decode(sys.getfilesystemencoding(), "backslashreplace")


@dataclass(slots=True)
class Report:
    """The outcome of a run: every file counted by its kind, the ones the summary
    names kept (each failure and warning, the first skipped), plus
    association-level notes. Memory does not grow with the files that went well:
    an import of millions of files keeps their counts, not their results."""

    #: The results the summary lists (see :meth:`add`).
    results: list[FileResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    #: Ctrl-C: the run stopped early, and how many files found had no result.
    interrupted: bool = False
    unfinished: int = 0
    #: The walk had not ended when the run stopped (``import``): files not found
    #: yet were left too, uncounted.
    walk_unfinished: bool = False
    #: Every result added, by kind.
    counts: dict[Kind, int] = field(default_factory=dict)
    #: Data set bytes of the files sent (or imported), warnings included.
    sent_bytes: int = 0
    #: Results that name a SOP Instance UID: files that held an instance.
    instances: int = 0
    #: Files sent in another transfer syntax than stored (``store``): inflated,
    #: swapped to Little Endian, or in Implicit VR Little Endian, as the peer
    #: took their SOP class only so.
    converted: int = 0

    def add(self, result: FileResult) -> None:
        """Count ``result``; keep it if the summary lists it."""
        seen = self.counts[result.kind] = self.counts.get(result.kind, 0) + 1
        if result.sop_instance_uid:
            self.instances += 1
        if result.kind in (Kind.SENT, Kind.WARNING):
            self.sent_bytes += result.nbytes
        if result.kind in (Kind.FAILED, Kind.WARNING) or (
            result.kind is Kind.SKIPPED and seen <= MAX_SKIPPED_LISTED
        ):
            self.results.append(result)

    def count(self, kind: Kind) -> int:
        return self.counts.get(kind, 0)

    @property
    def total(self) -> int:
        """Files with a result."""
        return sum(self.counts.values())

    def stopped_early(self, found: int, *, walked: bool = True) -> None:
        """Ctrl-C ended the run: of the ``found`` paths (files and failures of
        discovery), those with no result are counted as unfinished; ``walked``
        False: the folders were not all walked either."""
        self.interrupted = True
        self.unfinished = found - self.total
        self.walk_unfinished = not walked

    def of(self, kind: Kind) -> list[FileResult]:
        """The results of ``kind`` kept (all failures and warnings, the first
        :data:`MAX_SKIPPED_LISTED` skipped; none sent or held)."""
        return [r for r in self.results if r.kind is kind]

    def worst(self) -> Cause | None:
        """The worst cause of failure, or None when every instance succeeded."""
        causes = [r.cause for r in self.results if r.kind is Kind.FAILED and r.cause]
        return max(causes) if causes else None

    def summary(self, verb: str = "sent") -> str:
        """Counts, bytes, elapsed time and rate; then each failure, warning and skip.

        Instances already held (an import's duplicates: a success that wrote
        nothing) are counted apart when there are any, not listed one by one;
        so are the files an interrupted run left (counted in the total).
        """
        done = self.count(Kind.SENT) + self.count(Kind.WARNING)
        failed, warned, skipped = self.of(Kind.FAILED), self.of(Kind.WARNING), self.of(Kind.SKIPPED)
        held, warnings, skips = (
            self.count(Kind.HELD),
            self.count(Kind.WARNING),
            self.count(Kind.SKIPPED),
        )
        elapsed = max(self.elapsed, 1e-9)
        lines = [
            f"{verb} {done}"
            + (f", already held {held}" if held else "")
            + f", failed {self.count(Kind.FAILED)}, skipped {skips}"
            f" of {self.total + self.unfinished} file(s)"
            + (f" ({warnings} with warnings)" if warnings else "")
            + f"; {human_bytes(self.sent_bytes)} ({self.sent_bytes} bytes) in {self.elapsed:.2f} s,"
            f" {self.sent_bytes / elapsed / 1e6:.1f} MB/s, {done / elapsed:.1f} files/s"
        ]
        if self.interrupted:
            rest = ", nor the folders not walked yet" if self.walk_unfinished else ""
            lines.append(f"interrupted: {self.unfinished} file(s) not {verb}{rest}")
        if self.converted:
            lines.append(
                f"note: {self.converted} file(s) {verb} converted (inflated, swapped to Little"
                " Endian, or to Implicit VR Little Endian): the peer accepted their SOP class"
                " only so"
            )
        lines.extend(self.notes)
        lines.extend(r.describe() for r in failed)
        lines.extend(r.describe() for r in warned)
        lines.extend(r.describe() for r in skipped)
        if skips > len(skipped):
            lines.append(f"... and {skips - len(skipped)} more skipped")
        return "\n".join(lines)


# ---- finding and reading files ------------------------------------------------------


def discover(
    paths: Iterable[str | os.PathLike[str]], stop: Callable[[], bool] = lambda: False
) -> tuple[list[Path], list[FileResult]]:
    """The files under ``paths`` (folders walked recursively, sorted), and as
    failures the paths that cannot be walked: :func:`walk`, collected. Blocking:
    run it in a thread. ``archive store`` needs every file before it negotiates;
    ``archive import`` takes them as the walk finds them."""
    files: list[Path] = []
    failed: list[FileResult] = []
    for found in walk(paths, stop):
        if isinstance(found, FileResult):
            failed.append(found)
        else:
            files.append(found)
    return files, failed


def walk(
    paths: Iterable[str | os.PathLike[str]], stop: Callable[[], bool] = lambda: False
) -> Iterator[Path | FileResult]:
    """The files under ``paths`` (folders walked recursively, sorted) one by one,
    and as failures the paths that do not exist or cannot be looked at, and the
    folders that cannot be listed. Blocking: advance it in a thread. ``stop``
    (Ctrl-C) is asked between folders: the walk ends there.

    A folder ``os.walk`` cannot list (no permission, a path past PATH_MAX) would
    otherwise be left out in silence: a partial run reported as complete. For the
    same reason links to folders are followed (as DCMTK's ``+sd`` does); a folder
    met again (a link back up the tree, two links to it, or two of ``paths``
    leading there) is walked once, so no file is sent twice through it. Memory
    is the walk's own (one folder's names at a time and the folders seen), not
    the files'.
    """
    failed: list[FileResult] = []

    def failure(path: str | os.PathLike[str], reason: str) -> FileResult:
        return FileResult(os.fspath(path), Kind.FAILED, reason=reason, cause=Cause.FILE)

    def unlisted(exc: OSError) -> None:  # os.walk's onerror: kept, yielded next
        failed.append(failure(path if exc.filename is None else exc.filename, os_reason(exc)))

    # Folders walked, by (st_dev, st_ino), whichever path or link led there.
    walked: set[tuple[int, int]] = set()
    for raw in paths:
        if stop():
            return
        path = Path(raw)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            yield failure(path, "no such file")
            continue
        except OSError as exc:  # no permission on a parent, a name too long, ...
            yield failure(path, os_reason(exc))
            continue
        if not stat.S_ISDIR(st.st_mode):
            yield path  # probe() skips what is not a regular file
            continue
        for folder, dirs, names in os.walk(path, onerror=unlisted, followlinks=True):
            yield from failed
            failed.clear()
            if stop():
                return
            try:
                here = os.stat(folder)
            except OSError as exc:
                unlisted(exc)
                dirs.clear()
                continue
            if (here.st_dev, here.st_ino) in walked:
                dirs.clear()  # walked already: its files once, and no loop
                continue
            walked.add((here.st_dev, here.st_ino))
            dirs.sort()
            for name in sorted(names):
                yield Path(folder, name)
        yield from failed
        failed.clear()


@dataclass(slots=True)
class FileItem:
    """One Part 10 file to send or import: its meta and where its data set starts."""

    path: Path
    meta: FileMeta
    offset: int
    size: int  # data set bytes (file size - offset)
    attempts: int = 0
    #: Of those attempts, the ones the peer ended with an A-ABORT (``store.py``),
    #: and of those, the ones once some of its data set had gone out.
    peer_aborts: int = 0
    data_aborts: int = 0
    #: Files the peer had answered when this one's first attempt failed.
    answered_before: int = 0
    #: On a local filesystem: opened on the event loop when its path is cached.
    local: bool = False
    #: A data set without File Meta: ``meta`` is what :func:`probe` made of its
    #: header, ``offset`` 0.
    bare: bool = False

    @property
    def key(self) -> tuple[str, str]:
        """The presentation context it needs: (SOP Class, Transfer Syntax)."""
        return (self.meta.media_storage_sop_class_uid, self.meta.transfer_syntax_uid)

    def result(
        self, kind: Kind, *, status: int | None = None, reason: str = "", cause: Cause | None = None
    ) -> FileResult:
        return FileResult(
            str(self.path),
            kind,
            self.meta.media_storage_sop_instance_uid,
            status,
            reason,
            self.size if kind in (Kind.SENT, Kind.WARNING) else 0,
            cause,
        )


def probe(path: Path) -> FileItem | FileResult:
    """Read one file's File Meta (blocking): an item to send, or why not.

    A data set without File Meta (older modalities wrote them) is sent as DCMTK's
    storescu sends it: in the transfer syntax its first element shows
    (:func:`guess_transfer_syntax`), under the SOP Class and Instance UIDs of its
    own header; :func:`_bare`.
    """
    bare = False
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            # A FIFO would block the open; a device or socket is no instance either.
            return FileResult(str(path), Kind.SKIPPED, reason="not a regular file")
        local = local_device(st.st_dev)
        try:
            meta, offset = read_meta(path)
        except FileMetaError as exc:
            head = _head(path)
            if head[PREAMBLE_LENGTH:] == MAGIC:
                return FileResult(str(path), Kind.FAILED, reason=str(exc), cause=Cause.FILE)
            if lacks_preamble(head):
                return FileResult(str(path), Kind.FAILED, reason=NO_PREAMBLE, cause=Cause.FILE)
            if (transfer_syntax := guess_transfer_syntax(head)) is None:
                return FileResult(str(path), Kind.SKIPPED, reason="not a DICOM Part 10 file")
            found = _bare(path, transfer_syntax)
            if isinstance(found, str):
                return FileResult(str(path), Kind.FAILED, reason=found, cause=Cause.FILE)
            meta, offset, bare = found, 0, True
        size = st.st_size - offset  # a change after this stat: changed_since_probe
    except OSError as exc:
        return FileResult(str(path), Kind.FAILED, reason=os_reason(exc), cause=Cause.FILE)
    if meta.media_storage_sop_class_uid == MEDIA_STORAGE_DIRECTORY:
        return FileResult(str(path), Kind.SKIPPED, reason="DICOMDIR, not an instance")
    if why := unusable_meta(meta):
        instance = meta.media_storage_sop_instance_uid
        uid = instance if usable_uid(instance) else ""
        return FileResult(str(path), Kind.FAILED, uid, reason=why, cause=Cause.FILE)
    return FileItem(path, meta, offset, size, local=local, bare=bare)


def unusable_meta(meta: FileMeta) -> str | None:
    """Why the UIDs of ``meta`` cannot go into a C-STORE or a stored file, or None.

    The SOP Class and the Transfer Syntax become a presentation context's
    abstract and transfer syntaxes, which the association refuses to encode
    unless they are UIDs (PS3.8 9.3.2.2): checked here, one file fails instead
    of every file of its association. A leading zero in a component passes, as
    it does at the node (:func:`usable_uid`).
    """
    fault = _uid_fault(
        (meta.media_storage_sop_class_uid, "Media Storage SOP Class UID (0002,0002)"),
        (meta.media_storage_sop_instance_uid, "Media Storage SOP Instance UID (0002,0003)"),
        (meta.transfer_syntax_uid, "Transfer Syntax UID (0002,0010)"),
    )
    if fault is None:
        return None
    name, problem = fault
    return f"file meta lacks {name}" if not problem else f"file meta {name} {problem}"


def _uid_fault(*uids: tuple[str, str]) -> tuple[str, str] | None:
    """Of (value, element name) pairs, the first whose value is no usable UID:
    (its name, "" if it is empty, else what is wrong with it)."""
    for uid, name in uids:
        if not uid:
            return name, ""
        if not usable_uid(uid):
            shown = uid if len(uid) <= _SHOWN else uid[:_SHOWN] + "..."
            return name, f"is not a UID (1-64 digits and dots): {shown!a}"
    return None


def _bare(path: Path, transfer_syntax: str) -> FileMeta | str:
    """The meta to send a data set without File Meta with, read from its header in
    ``transfer_syntax``; or why it cannot be sent (blocking; OSError as it comes)."""
    meta = FileMeta(
        media_storage_sop_class_uid="",
        media_storage_sop_instance_uid="",
        transfer_syntax_uid=transfer_syntax,
        implementation_class_uid="",
        implementation_version_name="",
    )
    try:
        attrs = scan_header(path, meta).attrs
    except HeaderError as exc:
        return f"{_BARE}, not readable as {uid_name(transfer_syntax)}: {exc}"
    fault = _uid_fault(
        (attrs.sop_class_uid, "SOP Class UID (0008,0016)"),
        (attrs.sop_instance_uid, "SOP Instance UID (0008,0018)"),
    )
    if fault is not None:
        element, problem = fault
        return f"{_BARE}: its {element} {problem}" if problem else f"{_BARE} and without {element}"
    return msgspec.structs.replace(
        meta,
        media_storage_sop_class_uid=attrs.sop_class_uid,
        media_storage_sop_instance_uid=attrs.sop_instance_uid,
    )


_BARE = "a DICOM data set without File Meta Information"
#: Why a File Meta written without its preamble is not sent: read as a data set,
#: its group 0002 would go out as part of it.
NO_PREAMBLE = (
    "not a Part 10 file: File Meta Information without the 128-byte preamble"
    " and DICM prefix (PS3.10 7.1)"
)


def _head(path: Path) -> bytes:
    """The file's first bytes: a Part 10 file's preamble and prefix, or a data set's
    first element; empty if unreadable."""
    try:
        with path.open("rb") as f:
            return f.read(PREAMBLE_LENGTH + len(MAGIC))
    except OSError:
        return b""


def os_reason(exc: OSError) -> str:
    return f"cannot read: {exc.strerror or exc}"


async def probe_all(
    files: Sequence[Path], stop: Callable[[], bool] = lambda: False
) -> list[FileItem | FileResult]:
    """:func:`probe` every file, a few threads at a time; results in order. Once
    ``stop()`` (Ctrl-C), no more are probed: the list holds those that were."""
    out: list[FileItem | FileResult | None] = [None] * len(files)
    positions = iter(range(len(files)))

    async def worker() -> None:
        for i in positions:
            if stop():
                return
            out[i] = await asyncio.to_thread(probe, files[i])

    async with asyncio.TaskGroup() as tg:
        for _ in range(min(PROBE_CONCURRENCY, len(files))):
            tg.create_task(worker())
    return [r for r in out if r is not None]


class FileReadError(ArchiveError):
    """A file could not be read while its data set was being sent."""

    code = "scu.read"


async def read_chunks(
    item: FileItem, chunk: int = CHUNK, stop: Callable[[], bool] | None = None
) -> AsyncGenerator[memoryview, None]:
    """The data set of ``item`` from disk, read as ``archive store`` reads it (a
    :class:`FileSource`: on the loop when local and cached, else in a thread).

    ``stop`` is checked between chunks: once the connection is gone there is no
    point reading the rest of a large file (:class:`AssociationAborted` is raised,
    the association's failure, not the file's). A read error, or a file that changed
    since it was probed, raises :class:`FileReadError`. An odd-length deflated
    data set gets the pad byte PS3.5 A.5 requires.
    """
    (source,) = FileSource.open_ahead(
        LOCAL_FILES, [str(item.path)], chunk, local=[item.local], metas=[given_meta(item)]
    )
    try:
        sent = checked(item, source.chunks(await first_block(item, source)), stop)
        try:
            async for block in sent:
                yield block
        finally:
            await sent.aclose()
    finally:
        source.close()


async def first_block(item: FileItem, source: FileSource) -> memoryview:
    """The first bytes of ``item``'s data set from ``source``, once they are known to
    be the probed file's; :class:`FileReadError` (nothing sent yet) otherwise."""
    try:
        first = await source.first()
    except OSError as exc:
        raise FileReadError(os_reason(exc)) from exc
    except FileMetaError as exc:  # rewritten since the probe
        raise FileReadError(f"file changed while sending: {exc}") from exc
    if why := changed_since_probe(item, source.reader):
        raise FileReadError(why)
    return first


def given_meta(item: FileItem) -> FileMeta | None:
    """What a :class:`DatasetReader` of ``item`` is told its meta is: the probe's for
    a data set without File Meta, else None (it reads the file's)."""
    return item.meta if item.bare else None


def changed_since_probe(item: FileItem, reader: DatasetReader) -> str | None:
    """Why the file ``reader`` opened (its meta read) is not the one probed, or None.

    Its size and File Meta are compared with the probe's: a file rewritten in
    between (an anonymiser, a copy still being written) could otherwise go out on
    the probed context, or be cut at the probed size and reported sent.
    """
    if (size := reader.size) != item.offset + item.size:
        return f"file changed since it was read ({size} bytes, not {item.offset + item.size})"
    if reader.meta != item.meta:
        return "file changed since it was read (another File Meta)"
    return None


async def checked(
    item: FileItem,
    blocks: AsyncGenerator[memoryview, None],
    stop: Callable[[], bool] | None,
    *,
    whole: bool = False,
) -> AsyncGenerator[memoryview, None]:
    """``blocks`` (a file's data set) as sent: counted against the probed size,
    the deflated pad added, read errors as :class:`FileReadError`. ``blocks`` is
    closed at the end.

    ``whole`` (``archive store``; ``archive import`` needs none of it, as the
    node's own header reader refuses such a data set, 0xC000): a data set cut
    short (a copy not finished, a file truncated on a disk) is
    not sent whole: its element headers are walked as it goes (a
    :class:`HeaderReader`, which steps over values), and if the last block leaves
    an element unfinished, :class:`FileReadError` is raised before that block:
    the message is cut, the caller aborts, and the peer stores nothing. Some
    SCPs stored such a data set (pynetdicom's), others never answered (Orthanc);
    DCMTK's storescu refuses it before sending. Only that verdict is acted on:
    anything else the walk dislikes is left for the peer to judge, and a
    Deflated data set is not walked (its rest is costly to inflate).
    """
    sent = 0
    pad = item.size % 2 == 1 and item.meta.transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LE
    walk = _walker(item) if whole else None
    try:
        while sent < item.size:
            if stop is not None and stop():
                # The association's failure, not the file's: a filter after us
                # (a conversion) must not take the early end for a cut data set.
                raise AssociationAborted("the association ended while the file was sent")
            try:
                block = await anext(blocks, None)
            except OSError as exc:
                raise FileReadError(os_reason(exc)) from exc
            if not block:
                break
            sent += len(block)
            if sent > item.size:
                break
            if walk is not None:
                walk = _walked(walk, block)
                if walk is not None and sent == item.size and (why := _cut_short(walk)):
                    raise FileReadError(f"the data set is cut short ({why}): not sent whole")
            if pad and sent == item.size:
                # Some writers forgot the pad, and peers (DCMTK) refuse odd fragments.
                block = memoryview(b"".join((block, _PAD)))
            yield block
    finally:
        await blocks.aclose()
    if sent != item.size:
        raise FileReadError(f"file changed while sending ({sent} bytes, not {item.size})")


def _walker(item: FileItem) -> HeaderReader | None:
    """A header walk of ``item``'s data set (:func:`checked`), or None."""
    if item.meta.transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LE:
        return None
    try:
        return HeaderReader(item.meta.transfer_syntax_uid)
    except HeaderError:  # a syntax the reader does not know: the peer judges
        return None


def _walked(walk: HeaderReader, block: memoryview) -> HeaderReader | None:
    """``walk`` fed ``block``; None (no more walking) if it refuses the bytes."""
    try:
        walk.feed(block)
    except HeaderError:
        return None
    return walk


def _cut_short(walk: HeaderReader) -> str | None:
    """Why the data set fed to ``walk`` is cut short, or None. Only a cut after
    a header read whole counts: one "in its header" may be bytes the walk
    misreads (pydicom's ``SC_rgb_jpeg.dcm`` holds an Implicit VR data set under
    an Explicit VR syntax), which the peer is left to judge."""
    why = walk.cut_short()
    return why if why is not None and why.endswith("after its header") else None


class LocalFiles:
    """Files by their own paths, blocking calls in a thread (for :class:`FileSource`,
    which is told per file whether it is local: ``FileItem.local``)."""

    local = False

    def path(self, relative: str) -> str:
        return relative

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.to_thread(fn, *args)


LOCAL_FILES = LocalFiles()
