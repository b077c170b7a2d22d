"""``archive store``: the Storage SCU (C-STORE, PS3.4 B.2 / PS3.7 9.1.1) over files.

Theory of operation. The paths given are walked (folders recursively) and each
file's File Meta Information is read in a thread (:func:`probe`); files without
the ``DICM`` prefix are *skipped*, not fatal. The instances are then planned into
groups (:func:`plan`): one presentation context per distinct (SOP Class, stored
Transfer Syntax) pair, since nothing is transcoded and a file can only go out in
the encoding it has on disk; at most 128 contexts per association (PS3.8
9.3.2.2), so more pairs than that make several groups sent one after another.
Within a group, ``jobs`` workers each open an association and take files from a
shared queue; a file's data set is streamed from disk in bounded chunks, each
read in a thread, never loaded whole.

Failures are per file and typed by :class:`Cause` so the CLI can choose its exit
status. A file whose context the peer rejected fails with that reason. An
association that ends mid-run (abort, lost connection, timeout) has the file in
flight retried once on a new association; files never taken stay queued for the
other workers or the next association. When no worker can get an association
any more (rejected, nothing listening), the files left fail with that reason.

:class:`Report`, :func:`discover` and :func:`probe` are shared with the offline
importer (:mod:`archive.importer`).
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import msgspec

from archive.dicom.dimse import CStoreRq
from archive.dicom.dimse.status import StatusCategory, category
from archive.dicom.errors import LocalProtocolError
from archive.dicom.filemeta import MAGIC, PREAMBLE_LENGTH, FileMeta, FileMetaError
from archive.dicom.uids import DEFLATED_EXPLICIT_VR_LE
from archive.dicom.ul.negotiation import MAX_CONTEXTS
from archive.errors import ArchiveError
from archive.net import (
    AssociationAborted,
    AssociationRejected,
    AssociationTimeout,
    ClientAssociation,
    Timeouts,
    associate,
)
from archive.progress import Progress, human_bytes
from archive.store import DatasetReader, read_meta

#: Bytes read from a file per trip to a thread while sending (two are in memory).
CHUNK = 512 * 1024
#: Media Storage Directory Storage (PS3.10 8, PS3.4 Annex F): a DICOMDIR is not an
#: instance to archive.
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
#: Skipped files listed one by one in the summary before "... and N more".
MAX_SKIPPED_LISTED = 20
#: Concurrent meta reads while probing.
PROBE_CONCURRENCY = 8
_PAD = b"\x00"


class Kind(enum.Enum):
    """What became of one file."""

    SENT = "sent"
    WARNING = "warning"  # stored, with a warning status (PS3.7 C.4): a success
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
        parts = [f"{self.kind.value}: {self.path}"]
        if self.sop_instance_uid:
            parts.append(self.sop_instance_uid)
        detail = f"status 0x{self.status:04X}" if self.status is not None else ""
        if self.reason:
            detail = f"{detail}: {self.reason}" if detail else self.reason
        if detail:
            parts.append(detail)
        return "  ".join(parts)


@dataclass(slots=True)
class Report:
    """The outcome of a run: one result per file, plus association-level notes."""

    results: list[FileResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def of(self, kind: Kind) -> list[FileResult]:
        return [r for r in self.results if r.kind is kind]

    @property
    def bytes(self) -> int:
        return sum(r.nbytes for r in self.results if r.kind in (Kind.SENT, Kind.WARNING))

    def worst(self) -> Cause | None:
        """The worst cause of failure, or None when every instance succeeded."""
        causes = [r.cause for r in self.results if r.kind is Kind.FAILED and r.cause]
        return max(causes) if causes else None

    def summary(self, verb: str = "sent") -> str:
        """Counts, bytes, elapsed time and rate; then each failure, warning and skip."""
        done = self.of(Kind.SENT) + self.of(Kind.WARNING)
        failed, warned, skipped = self.of(Kind.FAILED), self.of(Kind.WARNING), self.of(Kind.SKIPPED)
        elapsed = max(self.elapsed, 1e-9)
        lines = [
            f"{verb} {len(done)}, failed {len(failed)}, skipped {len(skipped)}"
            f" of {len(self.results)} file(s)"
            + (f" ({len(warned)} with warnings)" if warned else "")
            + f"; {human_bytes(self.bytes)} ({self.bytes} bytes) in {self.elapsed:.2f} s,"
            f" {self.bytes / elapsed / 1e6:.1f} MB/s, {len(done) / elapsed:.1f} files/s"
        ]
        lines.extend(self.notes)
        lines.extend(r.describe() for r in failed)
        lines.extend(r.describe() for r in warned)
        lines.extend(r.describe() for r in skipped[:MAX_SKIPPED_LISTED])
        if len(skipped) > MAX_SKIPPED_LISTED:
            lines.append(f"... and {len(skipped) - MAX_SKIPPED_LISTED} more skipped")
        return "\n".join(lines)


# ---- finding and reading files ------------------------------------------------------


def discover(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[FileResult]]:
    """The files under ``paths`` (folders walked recursively, sorted), and the
    paths that do not exist as failures. Blocking: run it in a thread."""
    files: list[Path] = []
    missing: list[FileResult] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for folder, dirs, names in os.walk(path):
                dirs.sort()
                files.extend(Path(folder, name) for name in sorted(names))
        elif path.is_file():
            files.append(path)
        else:
            missing.append(
                FileResult(str(path), Kind.FAILED, reason="no such file", cause=Cause.FILE)
            )
    return files, missing


@dataclass(slots=True)
class FileItem:
    """One Part 10 file to send or import: its meta and where its data set starts."""

    path: Path
    meta: FileMeta
    offset: int
    size: int  # data set bytes (file size - offset)
    attempts: int = 0

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
    """Read one file's File Meta (blocking): an item to send, or why not."""
    try:
        meta, offset = read_meta(path)
        size = os.path.getsize(path) - offset
    except ArchiveError as exc:
        if not _has_prefix(path):
            return FileResult(str(path), Kind.SKIPPED, reason="not a DICOM Part 10 file")
        return FileResult(str(path), Kind.FAILED, reason=str(exc), cause=Cause.FILE)
    except OSError as exc:
        return FileResult(str(path), Kind.FAILED, reason=_os_reason(exc), cause=Cause.FILE)
    if meta.media_storage_sop_class_uid == MEDIA_STORAGE_DIRECTORY:
        return FileResult(str(path), Kind.SKIPPED, reason="DICOMDIR, not an instance")
    for uid, name in (
        (meta.media_storage_sop_class_uid, "Media Storage SOP Class UID (0002,0002)"),
        (meta.media_storage_sop_instance_uid, "Media Storage SOP Instance UID (0002,0003)"),
    ):
        if not uid:
            return FileResult(
                str(path), Kind.FAILED, reason=f"file meta lacks {name}", cause=Cause.FILE
            )
    return FileItem(path, meta, offset, size)


def _has_prefix(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(PREAMBLE_LENGTH + len(MAGIC))
    except OSError:
        return False
    return head[PREAMBLE_LENGTH:] == MAGIC


def _os_reason(exc: OSError) -> str:
    return f"cannot read: {exc.strerror or exc}"


async def probe_all(files: Sequence[Path]) -> list[FileItem | FileResult]:
    """:func:`probe` every file, a few threads at a time; results in order."""
    out: list[FileItem | FileResult | None] = [None] * len(files)
    positions = iter(range(len(files)))

    async def worker() -> None:
        for i in positions:
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
    """The data set of ``item`` from disk, each chunk read in a thread.

    ``stop`` is checked between chunks: once the connection is gone there is no
    point reading the rest of a large file. A read error, or a file whose size
    changed since it was probed, raises :class:`FileReadError`. An odd-length
    deflated data set gets the pad byte PS3.5 A.5 requires.
    """
    # The store's reader, with what sending a file we did not store adds: the
    # file may have changed since the probe, so the bytes are counted against it.
    source = DatasetReader(item.path, chunk)
    read = source.first
    sent = 0
    pad = item.size % 2 == 1 and item.meta.transfer_syntax_uid == DEFLATED_EXPLICIT_VR_LE
    try:
        # Stop at the probed size rather than on an empty read: one thread hop
        # fewer per file, which is most of the cost for small instances.
        while sent < item.size:
            if stop is not None and stop():
                return
            try:
                block = await asyncio.to_thread(read)
            except OSError as exc:
                raise FileReadError(_os_reason(exc)) from exc
            except FileMetaError as exc:  # rewritten since the probe
                raise FileReadError(f"file changed while sending: {exc}") from exc
            read = source.next
            if not block:
                break
            sent += len(block)
            if sent > item.size:
                break
            if pad and sent == item.size:
                # Some writers forgot the pad, and peers (DCMTK) refuse odd fragments.
                block = memoryview(b"".join((block, _PAD)))
            yield block
    finally:
        source.close()
    if sent != item.size:
        raise FileReadError(f"file changed while sending ({sent} bytes, not {item.size})")


# ---- planning associations ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Group:
    """Files sent over associations proposing ``contexts``."""

    contexts: list[tuple[str, list[str]]]
    items: list[FileItem]


def plan(items: Sequence[FileItem], max_contexts: int = MAX_CONTEXTS) -> list[Group]:
    """Group files so that each group needs at most ``max_contexts`` contexts.

    One context per (SOP Class, Transfer Syntax) pair with that single transfer
    syntax: proposing several transfer syntaxes in one context would let the
    acceptor pick one the file is not in, and we cannot transcode.
    """
    keys = list(dict.fromkeys(item.key for item in items))
    groups = []
    for start in range(0, len(keys), max_contexts):
        chunk = keys[start : start + max_contexts]
        wanted = set(chunk)
        groups.append(
            Group(
                contexts=[(sop_class, [ts]) for sop_class, ts in chunk],
                items=[item for item in items if item.key in wanted],
            )
        )
    return groups


# ---- sending -------------------------------------------------------------------------


class StoreOptions(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int
    calling_ae: str = "ARCHIVE"
    called_ae: str = "ANY-SCP"
    jobs: int = 1
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    max_pdu_length: int = 65536
    chunk: int = CHUNK


async def send_files(
    paths: Iterable[str | os.PathLike[str]],
    options: StoreOptions,
    *,
    progress: bool | None = None,
    progress_stream: TextIO | None = None,
) -> Report:
    """Send every Part 10 file under ``paths`` to the peer; one result per file.

    ``progress`` None shows the bar only when ``progress_stream`` (stderr) is a
    terminal.
    """
    started = time.monotonic()
    files, missing = await asyncio.to_thread(discover, list(paths))
    report = Report(results=list(missing))
    bar = Progress(len(files), stream=progress_stream, enabled=progress)
    items: list[FileItem] = []
    for probed in await probe_all(files):
        if isinstance(probed, FileItem):
            items.append(probed)
        else:
            report.results.append(probed)
            bar.advance()
    try:
        for group in plan(items):
            await _GroupSender(options, group, report, bar).run()
    finally:
        bar.close()
    report.elapsed = time.monotonic() - started
    return report


class _GroupSender:
    """``jobs`` workers sending one group's files over associations of their own."""

    def __init__(self, options: StoreOptions, group: Group, report: Report, bar: Progress) -> None:
        self.options = options
        self.group = group
        self.report = report
        self.bar = bar
        self.queue: asyncio.Queue[FileItem] = asyncio.Queue()
        for item in group.items:
            self.queue.put_nowait(item)
        self.live = 0
        # Why the last worker gave up: the reason the files left fail with.
        self.halted: tuple[Cause, str] = (Cause.NETWORK, "not sent")

    async def run(self) -> None:
        workers = max(1, min(self.options.jobs, len(self.group.items)))
        self.live = workers
        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(self._worker())

    def _record(self, result: FileResult) -> None:
        self.report.results.append(result)
        self.bar.advance(1, result.nbytes)

    async def _worker(self) -> None:
        try:
            while not self.queue.empty():
                try:
                    assoc = await self._associate()
                except AssociationRejected as exc:
                    self._halt(Cause.REJECTED, f"association rejected: {exc}")
                    return
                except AssociationTimeout as exc:
                    self._halt(Cause.TIMEOUT, f"association timed out: {exc}")
                    return
                except AssociationAborted as exc:
                    self._halt(Cause.NETWORK, str(exc))
                    return
                async with assoc:
                    await self._session(assoc)
        finally:
            self.live -= 1
            if self.live == 0:
                self._fail_remaining()

    async def _associate(self) -> ClientAssociation:
        o = self.options
        return await associate(
            o.host,
            o.port,
            calling_ae=o.calling_ae,
            called_ae=o.called_ae,
            contexts=self.group.contexts,
            max_pdu_length=o.max_pdu_length,
            timeouts=o.timeouts,
        )

    def _halt(self, cause: Cause, reason: str) -> None:
        self.halted = (cause, reason)
        if self.live > 1:
            # Others still have associations: say so, and let them take the files.
            self.report.notes.append(f"note: one association could not be opened: {reason}")

    def _fail_remaining(self) -> None:
        cause, reason = self.halted
        while not self.queue.empty():
            self._record(self.queue.get_nowait().result(Kind.FAILED, reason=reason, cause=cause))

    async def _session(self, assoc: ClientAssociation) -> None:
        """Send queued files until the queue is empty or the association ends."""
        negotiated = assoc.negotiated
        conn = assoc.assoc.conn
        while True:
            try:
                item = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            sop_class, ts = item.key
            context = negotiated.context_for(sop_class, ts)
            if context is None:
                self._record(
                    item.result(
                        Kind.FAILED,
                        reason=_refusal_reason(negotiated.refusal(sop_class, ts), sop_class, ts),
                        cause=Cause.CONTEXT,
                    )
                )
                continue
            request = CStoreRq(
                message_id=assoc.next_message_id(),
                affected_sop_class_uid=sop_class,
                affected_sop_instance_uid=item.meta.media_storage_sop_instance_uid,
            )
            chunks = read_chunks(item, self.options.chunk, lambda: conn.closed)
            try:
                rsp = await assoc.store(context.id, request, chunks)
            except FileReadError as exc:
                # The message is half sent: only an abort ends it (PS3.8 7.3).
                self._record(item.result(Kind.FAILED, reason=str(exc), cause=Cause.FILE))
                assoc.abort()
                return
            except (AssociationAborted, AssociationTimeout, LocalProtocolError) as exc:
                self._retry_or_fail(item, exc)
                assoc.abort()
                return
            finally:
                await chunks.aclose()
            self._record(status_result(item, rsp.status, rsp.error_comment))

    def _retry_or_fail(self, item: FileItem, exc: Exception) -> None:
        item.attempts += 1
        if item.attempts < 2:
            self.queue.put_nowait(item)
            return
        cause = Cause.TIMEOUT if isinstance(exc, AssociationTimeout) else Cause.NETWORK
        self._record(item.result(Kind.FAILED, reason=str(exc), cause=cause))


def status_result(item: FileItem, status: int, comment: str | None) -> FileResult:
    """A C-STORE response status as a file result (PS3.4 Table B.2-1, PS3.7 C)."""
    reason = comment or ""
    match category(status):
        case StatusCategory.SUCCESS:
            return item.result(Kind.SENT, status=status)
        case StatusCategory.WARNING:
            return item.result(Kind.WARNING, status=status, reason=reason)
        case _:
            return item.result(Kind.FAILED, status=status, reason=reason, cause=Cause.STATUS)


#: PS3.8 Table 9-18, the presentation context results a requestor can be given.
_RESULTS = {
    1: "user rejection",
    2: "no reason (provider rejection)",
    3: "abstract syntax not supported",
    4: "transfer syntaxes not supported",
}


def _refusal_reason(result: int | None, sop_class: str, transfer_syntax: str) -> str:
    why = _RESULTS.get(result, "not accepted") if result is not None else "not accepted"
    return f"presentation context rejected: {why} ({sop_class} in {transfer_syntax})"
