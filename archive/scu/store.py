"""``archive store``: the Storage SCU (C-STORE, PS3.4 B.2 / PS3.7 9.1.1) over files.

Theory of operation. The paths given are walked (folders recursively) and each
file's File Meta Information is read in a thread (``files.py``); files without
the ``DICM`` prefix are *skipped*, not fatal. The instances are then planned into
groups (:func:`plan`): one presentation context per distinct (SOP Class, stored
Transfer Syntax) pair, since nothing is transcoded and a file goes out in the
encoding it has on disk, with three exceptions, as storescu makes them: an
Explicit VR Little Endian file's class is also offered in Implicit VR Little
Endian, which every SCP must accept (PS3.5 10.1), and a Deflated or Explicit VR
Big Endian one's in both, each in a context of its own; a file the peer takes
only so is converted as it is sent (inflated, or its numbers swapped;
``archive/dicom/reencode.py``: the headers change, the values do not but for
their byte order; ``store/sources.py``, :func:`~archive.store.sources.sendable_as`). At
most 128 contexts per association (PS3.8 9.3.2.2), so more pairs than that make
several groups sent one after another.
Within a group, ``jobs`` workers each open an association and take files from a
shared queue; each opens the next files ahead, several per trip to a thread, and
streams a file's data set in bounded chunks, read on the event loop when the page
cache holds them, in a thread otherwise, never loaded whole.

Failures are per file and typed by :class:`Cause` so the CLI can choose its exit
status. A file whose context the peer rejected fails with that reason, and one
that cannot be opened or read before any of it was sent fails alone. An
association that ends mid-run (abort, lost connection, timeout) has the file in
flight retried once on a new association; files opened ahead or never taken stay
queued for the other workers or the next association. A file the peer aborted
twice once some of its data set was written fails as the file's fault (a peer
that cannot parse a data set aborts), not the network's, if the peer takes
another file between or after (:meth:`_GroupSender._retry_or_fail`); if it takes
none the peer is at fault (one that aborts every association, whatever it took
before), and after two files so failed with no file taken between them the
files left fail with that reason rather than cost two associations each; so too
for files timed out twice. When no worker can get an
association any more (rejected, nothing listening), the files left fail with that
reason.

Interruption (Ctrl-C sets an :class:`Interrupt`): no file is taken any more, those
in flight get their answer and the associations are released; a second one
aborts them (:func:`abortable`). The files left are counted in the report, not
failed one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

import msgspec

from archive.dicom.dimse import CStoreRq
from archive.dicom.dimse.status import StatusCategory, category
from archive.dicom.errors import LocalProtocolError, RejectResult
from archive.dicom.ul.negotiation import MAX_CONTEXTS, Negotiated
from archive.net import (
    AssociationAborted,
    AssociationRejected,
    AssociationTimeout,
    ClientAssociation,
    Outcome,
    Timeouts,
    associate,
)
from archive.progress import Progress
from archive.scu.files import (
    CHUNK,
    LOCAL_FILES,
    Cause,
    FileItem,
    FileReadError,
    FileResult,
    Kind,
    Report,
    checked,
    discover,
    first_block,
    given_meta,
    probe_all,
)
from archive.scu.query import Interrupt, abortable, stopper
from archive.store.sources import FileSource, reencoded, sendable_as, to_open

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
    acceptor pick one the file is not in (pynetdicom's takes the first of its
    own list, Implicit VR), and we cannot transcode. Explicit VR Little Endian
    files also get a context of their class in Implicit VR Little Endian, and
    Deflated and Explicit VR Big Endian ones in both, used only when the peer
    refuses theirs: they are converted as they are sent
    (:func:`~archive.store.sources.sendable_as`).
    """
    groups: list[Group] = []
    contexts: dict[tuple[str, str], None] = {}
    keys: set[tuple[str, str]] = set()
    for key in dict.fromkeys(item.key for item in items):
        needed = [pair for pair in _contexts_for(key) if pair not in contexts]
        if len(contexts) + len(needed) > max_contexts:
            groups.append(_group(contexts, keys, items))
            contexts, keys = {}, set()
            needed = _contexts_for(key)
        contexts.update(dict.fromkeys(needed))
        keys.add(key)
    if keys:
        groups.append(_group(contexts, keys, items))
    return groups


def _contexts_for(key: tuple[str, str]) -> list[tuple[str, str]]:
    """The (SOP class, transfer syntax) contexts the files of ``key`` can go out on."""
    sop_class, transfer_syntax = key
    return [(sop_class, ts) for ts in sendable_as(transfer_syntax)]


def _group(
    contexts: dict[tuple[str, str], None], keys: set[tuple[str, str]], items: Sequence[FileItem]
) -> Group:
    return Group(
        contexts=[(sop_class, [ts]) for sop_class, ts in contexts],
        items=[item for item in items if item.key in keys],
    )


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
    interrupt: Interrupt | None = None,
) -> Report:
    """Send every Part 10 file under ``paths`` to the peer; one result per file.

    ``progress`` None shows the bar only when ``progress_stream`` (stderr) is a
    terminal. Once ``interrupt`` is set (Ctrl-C), no file is taken any more:
    those in flight are answered and the associations released; set again, the
    associations are aborted at once. The files left are counted in the report
    (``interrupted``, ``unfinished``), not failed one by one.
    """
    started = time.monotonic()

    stopping = stopper(interrupt)
    files, missing = await asyncio.to_thread(discover, list(paths), stopping)
    report = Report()
    for failure in missing:
        report.add(failure)
    bar = Progress(len(files), stream=progress_stream, enabled=progress)
    items: list[FileItem] = []
    for probed in await probe_all(files, stopping):
        if isinstance(probed, FileItem):
            items.append(probed)
        else:
            report.add(probed)
            bar.advance()

    async def send_all() -> None:
        for group in plan(items):
            if stopping():
                return
            await _GroupSender(options, group, report, bar, stopping).run()

    try:
        await abortable(send_all(), interrupt)
    finally:
        bar.close()
    if stopping():
        report.stopped_early(found=len(missing) + len(files))
    report.elapsed = time.monotonic() - started
    return report


#: Seconds the last worker waits before asking again after a rejected-transient
#: A-ASSOCIATE-RJ, one wait per attempt (7.5 s in all).
TRANSIENT_WAITS = (0.5, 1.0, 2.0, 4.0)


class _GroupSender:
    """``jobs`` workers sending one group's files over associations of their own."""

    def __init__(
        self,
        options: StoreOptions,
        group: Group,
        report: Report,
        bar: Progress,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.options = options
        self.group = group
        self.report = report
        self.bar = bar
        #: Ctrl-C: take no more files; those left are the run's unfinished ones.
        self.stopping = stopping
        self.queue: asyncio.Queue[FileItem] = asyncio.Queue()
        for item in group.items:
            self.queue.put_nowait(item)
        self.live = 0
        # Why the last worker gave up: the reason the files left fail with.
        self.halted: tuple[Cause, str] = (Cause.NETWORK, "not sent")
        #: Files the peer answered (any status).
        self.answered = 0
        #: Per way the peer fails files (aborts, timeouts): the answers counted
        #: at its last such file, and how many in a row with no answer between.
        self._peer_failures: dict[str, tuple[int, int]] = {}
        #: Files the peer aborted twice on their data set with no file answered
        #: in between, and the last abort: the file's fault if the peer then
        #: takes another file, the peer's if it takes none (:meth:`_judge`).
        self._suspects: list[tuple[FileItem, Exception]] = []
        #: Set once the peer is given up on (``halted`` says why).
        self.gave_up = False

    async def run(self) -> None:
        workers = max(1, min(self.options.jobs, len(self.group.items)))
        self.live = workers
        async with asyncio.TaskGroup() as tg:
            for _ in range(workers):
                tg.create_task(self._worker())

    def _record(self, result: FileResult) -> None:
        self.report.add(result)
        self.bar.advance(1, result.nbytes)

    async def _worker(self) -> None:
        waits = iter(TRANSIENT_WAITS)
        try:
            while not self.queue.empty() and not self.stopping():
                if self.gave_up:
                    cause, reason = self.halted
                    self._give_up(reason, cause)  # files opened ahead, put back since
                    return
                try:
                    assoc = await self._associate()
                except AssociationRejected as exc:
                    # Rejected-transient (PS3.8 Table 9-21: the peer is busy, say
                    # at its association limit): while other workers are
                    # connected they take the files; the last one waits and
                    # asks again a few times before the files fail.
                    wait = next(waits, None) if exc.rj.result == RejectResult.TRANSIENT else None
                    if wait is not None and self.live == 1:
                        await asyncio.sleep(wait)
                        continue
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

    def _give_up(self, reason: str, cause: Cause = Cause.NETWORK) -> None:
        """Fail the files still queued now (the workers then stop)."""
        self._judge(files_fault=False)
        self.gave_up = True
        self.halted = (cause, reason)
        while not self.queue.empty():
            item = self.queue.get_nowait()
            self._record(item.result(Kind.FAILED, reason=reason, cause=cause))

    def _fail_remaining(self) -> None:
        # No file left to tell: a peer that took some file refuses these.
        self._judge(files_fault=self.answered > 0)
        if self.stopping():
            return  # not failed: left, and counted so (Report.unfinished)
        cause, reason = self.halted
        while not self.queue.empty():
            self._record(self.queue.get_nowait().result(Kind.FAILED, reason=reason, cause=cause))

    async def _session(self, assoc: ClientAssociation) -> None:
        """Send queued files until the queue is empty or the association ends.

        The next files are opened ahead, several in one trip to a thread
        (:class:`FileSource`), while the current one is sent, and read on the
        event loop when the page cache holds them: a thread hop per file was
        most of the cost of a small instance. Files held ahead when the
        association ends go back to the queue, for another association.
        """
        negotiated = assoc.negotiated
        conn = assoc.assoc.conn

        def stop() -> bool:
            return conn.closed

        ahead: deque[tuple[FileItem, FileSource]] = deque()
        try:
            while not self.stopping():
                self._open_ahead(ahead)
                if not ahead:
                    return
                item, source = ahead.popleft()
                try:
                    if not await self._send(assoc, negotiated, item, source, stop):
                        return
                finally:
                    source.close()
        finally:
            while ahead:
                item, source = ahead.pop()
                source.close()
                self.queue.put_nowait(item)

    def _open_ahead(self, ahead: deque[tuple[FileItem, FileSource]]) -> None:
        """Keep the file to send and maybe the next opened (:func:`to_open`)."""
        while take := to_open(self.queue.qsize(), self.live, len(ahead)):
            items = [self.queue.get_nowait() for _ in range(take)]
            sources = FileSource.open_ahead(
                LOCAL_FILES,
                [str(item.path) for item in items],
                self.options.chunk,
                local=[item.local for item in items],
                metas=[given_meta(item) for item in items],
            )
            ahead.extend(zip(items, sources, strict=True))

    async def _send(
        self,
        assoc: ClientAssociation,
        negotiated: Negotiated,
        item: FileItem,
        source: FileSource,
        stop: Callable[[], bool],
    ) -> bool:
        """One file's C-STORE; False when the association had to end."""
        sop_class, ts = item.key
        for sent_as in sendable_as(ts):
            context = negotiated.context_for(sop_class, sent_as)
            if context is not None:
                break
        if context is None:
            reason = _refusal_reason(negotiated.refusal(sop_class, ts), sop_class, ts)
            self._record(item.result(Kind.FAILED, reason=reason, cause=Cause.CONTEXT))
            return True
        try:
            first = await first_block(item, source)
        except FileReadError as exc:  # nothing sent yet: the association goes on
            self._record(item.result(Kind.FAILED, reason=str(exc), cause=Cause.FILE))
            return True
        request = CStoreRq(
            message_id=assoc.next_message_id(),
            affected_sop_class_uid=sop_class,
            affected_sop_instance_uid=item.meta.media_storage_sop_instance_uid,
        )
        written = assoc.assoc.dataset_writes
        chunks = checked(item, source.chunks(first), stop, whole=True)
        chunks = reencoded(chunks, ts, sent_as, FileReadError)
        try:
            rsp = await assoc.store(context.id, request, chunks)
        except FileReadError as exc:
            # The message is half sent: only an abort ends it (PS3.8 7.3).
            self._record(item.result(Kind.FAILED, reason=str(exc), cause=Cause.FILE))
            assoc.abort()
            return False
        except (AssociationAborted, AssociationTimeout, LocalProtocolError) as exc:
            if assoc.assoc.conn.closed:
                # The send stopped at the close: the peer's A-ABORT before it
                # may wait unread. Read it, or a peer that aborts on this data
                # set would be taken for a lost connection (_retry_or_fail).
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(assoc.assoc.wait_closed(), 1.0)
            by_peer = assoc.assoc.outcome is Outcome.ABORTED_BY_PEER
            # An abort before any of this data set went out (the peer's, after
            # the file before) says nothing about this file, only about the peer.
            on_data = assoc.assoc.dataset_writes > written
            self._retry_or_fail(item, exc, by_peer=by_peer, on_data=on_data)
            assoc.abort()
            return False
        finally:
            await chunks.aclose()
        self.answered += 1
        self._judge(files_fault=True)  # the peer takes files: the suspects it refused
        result = status_result(item, rsp.status, rsp.error_comment)
        if sent_as != ts and result.kind in (Kind.SENT, Kind.WARNING):
            self.report.converted += 1
        self._record(result)
        return True

    def _retry_or_fail(
        self, item: FileItem, exc: Exception, *, by_peer: bool, on_data: bool
    ) -> None:
        """Queue ``item`` again after its association ended, or fail it the second time.

        Twice an A-ABORT from the peer once some of this very file's data set had
        gone out (``on_data``), on two associations, with another file answered
        in between, says more about the file than the network: a peer that
        cannot parse a data set (DCMTK's storescp, on one cut short) aborts, and
        takes other files. That is the file's failure (exit 5, not 3). With no
        file answered in between, the peer is at fault more likely (it may have
        stopped taking anything, whatever it took before); so it is for an
        abort before any of the file went out (the peer's, after the file
        before). After two files so failed with no answer between them, the
        rest fail at once: likewise for timeouts.
        """
        item.attempts += 1
        item.peer_aborts += by_peer
        item.data_aborts += by_peer and on_data
        if item.attempts < 2:
            item.answered_before = self.answered
            self.queue.put_nowait(item)
            return
        answered_between = self.answered > item.answered_before
        if item.data_aborts == item.attempts:
            if answered_between:
                self._record(_malformed(item, exc))
            elif not self._suspects:
                # Its file, or a peer that stopped taking any? The next answer,
                # or the next file failing alike, tells (a retried file often
                # goes again first, as files held ahead go back behind it).
                self._suspects.append((item, exc))
            else:  # the file before failed alike, nothing taken since
                self._judge(files_fault=False)
                self._peer_fault(item, exc)
            return
        if item.peer_aborts == item.attempts and not answered_between:
            self._peer_fault(item, exc)
            return
        cause = Cause.TIMEOUT if isinstance(exc, AssociationTimeout) else Cause.NETWORK
        self._record(item.result(Kind.FAILED, reason=str(exc), cause=cause))
        # A peer that answers nothing costs each file two timeouts: with the
        # default 30 s, 1,000 files would take 16 hours to fail.
        if cause is Cause.TIMEOUT and not answered_between and self._peer_failed("timeout"):
            self._give_up("the peer answers no C-STORE (it answers no file now)", cause)

    def _judge(self, *, files_fault: bool) -> None:
        """Fail the suspects (:attr:`_suspects`): as malformed, or the peer's fault."""
        suspects, self._suspects = self._suspects, []
        for item, exc in suspects:
            if files_fault:
                self._record(_malformed(item, exc))
            else:
                self._peer_fault(item, exc)

    def _peer_fault(self, item: FileItem, exc: Exception) -> None:
        reason = (
            "the peer aborted the association twice while this file was sent,"
            f" and answered no file in between: the peer's fault, more likely ({exc})"
        )
        self._record(item.result(Kind.FAILED, reason=reason, cause=Cause.NETWORK))
        if self._peer_failed("abort") and not self.gave_up:
            self._give_up("the peer aborts every association (it answers no file now)")

    def _peer_failed(self, how: str) -> bool:
        """A file failed by the peer (``how``: aborts or timeouts) with no answer
        since its first try; True at the second such file with no answer since
        the one before: time to give up on the peer."""
        mark = self._peer_failures.get(how)
        streak = mark[1] + 1 if mark is not None and mark[0] == self.answered else 1
        self._peer_failures[how] = (self.answered, streak)
        return streak >= 2


def _malformed(item: FileItem, exc: Exception) -> FileResult:
    reason = (
        "the peer aborted the association twice while this file was sent;"
        f" the file may be malformed ({exc})"
    )
    return item.result(Kind.FAILED, reason=reason, cause=Cause.FILE)


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
