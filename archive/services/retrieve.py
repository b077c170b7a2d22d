"""Query/Retrieve C-MOVE and C-GET SCP (PS3.4 C.4.2, C.4.3): sub-operations from files.

A retrieve selects instances from the index (never by reading files), then sends
each as a C-STORE sub-operation: for C-MOVE over new associations to the Move
Destination, found in the configured peer table (unknown: 0xA801), several in
parallel; for C-GET on the caller's own association, on the contexts for which
role selection made the caller the storage SCP. Files go out from disk in bounded
chunks, never loaded whole.

Sub-operation counts follow PS3.4 C.4.2.1.4 / C.4.3.1.4: pending responses (0xFF00)
carry remaining, completed, failed and warning counts; the final response carries
completed, failed and warning (and remaining too after a cancel), and an
identifier with the Failed SOP Instance UID List (0008,0058) when any failed.
Final statuses: 0x0000 all completed; 0xB000 some failed or had warnings; 0xA702
all failed (Refused: Out of Resources - unable to perform sub-operations), also
when no association to the destination could be opened; 0xFE00 cancelled.

Transfer syntaxes: a stored instance goes out in the transfer syntax it was
stored in, on a context the destination accepted for it. When none fits, the
sub-operation fails and a WARNING line says why; :func:`convert` is the seam
where transcoding (a later issue) will turn the stored encoding into one the
destination accepts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from typing import Protocol, TypeVar

import msgspec

from archive.dicom.dataset import Element, encode_dataset
from archive.dicom.dimse import CGetRq, CGetRsp, CMoveRq, CMoveRsp, CStoreRq, Status
from archive.dicom.dimse.status import StatusCategory, category
from archive.dicom.filemeta import FileMetaError
from archive.dicom.query import Query
from archive.dicom.uids import IMPLICIT_VR_LE, usable_uid
from archive.index import IndexReadError, InstanceRow
from archive.services.base import (
    Cancel,
    Provider,
    Request,
    Response,
    StoreContext,
    StoreTarget,
    SubAssociationError,
)
from archive.services.contexts import NotConvertible, convert, proposals
from archive.services.query import QueryFailure, parse_request, query_failure
from archive.store.sources import FileSource, InstanceFiles, to_open

log = logging.getLogger("archive.retrieve")

T = TypeVar("T")

#: Failed SOP Instance UID List (0008,0058), PS3.4 C.4.2.1.4.
FAILED_SOP_INSTANCE_UID_LIST = 0x00080058
#: Seconds between pending C-MOVE/C-GET responses (progress), at most one each.
PENDING_INTERVAL = 0.25
#: A UI value with a 2-byte length (explicit VR) holds at most this many bytes.
_MAX_UI_LIST = 0xFFFE


class RetrieveIndex(Protocol):
    async def retrieve(self, query: Query) -> list[InstanceRow]: ...
    async def instance(self, sop_instance_uid: str) -> InstanceRow | None: ...


class Connect(Protocol):
    """Opens a C-MOVE sub-association: the driver's SCU, supplied by ``archive/node.py``.

    ``connect(called_ae, (host, port), contexts)`` proposes ``contexts`` (abstract
    syntax, transfer syntaxes) and is an async context manager yielding the
    association as a :class:`StoreTarget`; leaving it normally releases the
    association, leaving it with an error aborts it. Raises
    :class:`SubAssociationError` when the association cannot be opened, and when
    it fails while in use.
    """

    def __call__(
        self,
        called_ae: str,
        address: tuple[str, int],
        contexts: Sequence[tuple[str, Sequence[str]]],
    ) -> contextlib.AbstractAsyncContextManager[StoreTarget]: ...


class Counts(msgspec.Struct):
    """Sub-operation counts of one retrieve (PS3.4 C.4.2.1.4)."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = msgspec.field(default_factory=list)

    def record(self, uid: str, status: int | None) -> None:
        self.remaining -= 1
        kind = None if status is None else category(status)
        if kind is StatusCategory.SUCCESS:
            self.completed += 1
        elif kind is StatusCategory.WARNING:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(uid)

    def final_status(self, cancelled: bool) -> int:
        if cancelled:
            return int(Status.CANCEL)
        if self.failed and not (self.completed or self.warning):
            return int(Status.OUT_OF_RESOURCES_SUBOPERATIONS)
        if self.failed or self.warning:
            return int(Status.SUBOPERATIONS_COMPLETE_WITH_FAILURES)
        return int(Status.SUCCESS)


class Retriever:
    """Runs the sub-operations of one C-MOVE or C-GET and reports progress."""

    def __init__(
        self,
        files: InstanceFiles,
        rows: Sequence[InstanceRow],
        cancel: Cancel | None,
        *,
        priority: int,
        originator: tuple[str, int] | None,
        index: RetrieveIndex | None = None,
    ) -> None:
        self.files = files
        #: Where a row is read again when its file went (a replacement, since).
        self.index = index
        #: How many :meth:`run` share the queue (the provider sets it).
        self.workers = 1
        self.queue: deque[InstanceRow] = deque(rows)
        self.counts = Counts(remaining=len(rows))
        self.cancel = cancel
        self.priority = priority
        self.originator = originator
        #: Workers sending (they may put rows back), and a wake-up for the idle
        #: ones waiting for such rows.
        self._sending = 0
        self._changed = asyncio.Event()
        #: The tasks of C-MOVE workers opening an association (they hold no rows
        #: yet), and those of them a C-CANCEL stopped (:meth:`stop_connecting`).
        self._connecting: set[asyncio.Task[object]] = set()
        self._stopped: set[asyncio.Task[object]] = set()

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.requested

    def fail_rest(self, reason: str) -> None:
        if self.queue:
            log.warning("%d sub-operation(s) not performed: %s", len(self.queue), reason)
        while self.queue:
            self.counts.record(self.queue.popleft().sop_instance_uid, None)

    async def run(self, target: StoreTarget) -> None:
        """Send queued instances through ``target`` until the queue is empty or cancelled.

        The next files are opened ahead while the current one is sent, several at
        a time (:func:`~archive.store.sources.to_open`). A worker whose target fails
        puts the files it held ahead back in the queue; so a worker that finds the
        queue empty waits while others still send, and sends what they put back,
        rather than leaving it to fail for want of an association.
        """
        while True:
            await self.send_queued(target)
            if not await self.more_put_back():
                return

    async def send_queued(self, target: StoreTarget) -> None:
        """Send queued instances through ``target`` until the queue is empty or
        cancelled; on a failure, put back the files opened ahead and raise."""
        self._sending += 1
        try:
            await self._send_queued(target)
        finally:
            self._sending -= 1
            self._changed.set()

    def connecting(self, begins: bool) -> None:
        """The calling C-MOVE worker begins (True) or ends opening an association."""
        task = asyncio.current_task()
        assert task is not None
        if begins:
            self._connecting.add(task)
        else:
            self._connecting.discard(task)
        self._changed.set()

    @contextlib.contextmanager
    def stoppable(self) -> Iterator[None]:
        """Around a C-MOVE worker's association attempt: while it is connecting,
        after a C-CANCEL, :meth:`stop_connecting` cancels it and the block ends
        quietly (it holds no rows yet). Without it, the cancel's answer waited for
        the attempt: up to ARTIM for a destination that does not answer."""
        try:
            yield
        except asyncio.CancelledError:
            # Ours (stopped for the C-CANCEL) only: another cancel goes on.
            task = asyncio.current_task()
            if task not in self._stopped or task.uncancel() > 0:
                raise

    def stop_connecting(self) -> None:
        """Cancelled: stop the association attempts in progress."""
        if self.cancelled:
            for task in self._connecting - self._stopped:
                self._stopped.add(task)
                task.cancel()

    async def connect_for_put_back(self) -> bool:
        """C-MOVE, a worker without an association: wait for rows another worker
        puts back; True when this one is to open an association for them (counted
        as :meth:`connecting`). One worker at a time: a few rows need no more, and
        should its association be refused, the next waiter tries."""
        while not self.cancelled:
            if self.queue and not self._connecting:
                self.connecting(True)
                return True
            if not self.queue and not self._sending and not self._connecting:
                return False
            self._changed.clear()
            await self._changed.wait()
        return False

    async def more_put_back(self) -> bool:
        """Wait while the queue is empty and another worker sends; True if rows came."""
        while not self.queue and not self.cancelled:
            if not self._sending:
                return False
            self._changed.clear()
            await self._changed.wait()
        return bool(self.queue) and not self.cancelled

    async def _send_queued(self, target: StoreTarget) -> None:
        contexts = target.store_contexts()
        ahead: deque[tuple[InstanceRow, FileSource]] = deque()
        try:
            while (self.queue or ahead) and not self.cancelled:
                while take := to_open(len(self.queue), self.workers, len(ahead)):
                    rows = [self.queue.popleft() for _ in range(take)]
                    sources = FileSource.open_ahead(self.files, [r.path for r in rows])
                    ahead.extend(zip(rows, sources, strict=True))
                row, source = ahead.popleft()
                status: int | None
                try:
                    status = await self._send(target, row, contexts, source)
                except BaseException as exc:
                    self.counts.record(row.sop_instance_uid, None)
                    if isinstance(exc, OSError):  # its file, half sent (C-MOVE; GetChannel says so)
                        log.warning("sub-operation for instance %s failed while it was sent: %s",
                                    row.sop_instance_uid, exc)  # fmt: skip
                    raise
                self.counts.record(row.sop_instance_uid, status)
        finally:
            while ahead:  # cancelled or failed: those were not sent
                row, source = ahead.pop()
                source.close()
                self.queue.appendleft(row)
                self._changed.set()

    async def _send(
        self,
        target: StoreTarget,
        row: InstanceRow,
        contexts: Sequence[StoreContext],
        source: FileSource,
    ) -> int | None:
        """One C-STORE sub-operation; its status, or None if it could not be sent.

        ``source`` is closed on the way out, however the sub-operation ends."""
        try:
            return await self._store(target, row, contexts, source)
        finally:
            source.close()

    async def _store(
        self,
        target: StoreTarget,
        row: InstanceRow,
        contexts: Sequence[StoreContext],
        source: FileSource,
        *,
        again: bool = True,
    ) -> int | None:
        try:
            context, filtered = convert(row, contexts)
            first = await source.first()
        except NotConvertible as exc:
            log.warning("sub-operation for instance %s failed: %s", row.sop_instance_uid, exc)
            return None
        except FileNotFoundError as exc:
            # A replacement committed since the row was read removes the version
            # it names: the instance is held, at the path its row names now.
            current = await self._replaced(row) if again else None
            if current is None:
                log.error("sub-operation for instance %s failed: cannot read its file: %s",
                          row.sop_instance_uid, exc)  # fmt: skip
                return None
            (moved,) = FileSource.open_ahead(self.files, [current.path])
            try:
                return await self._store(target, current, contexts, moved, again=False)
            finally:
                moved.close()
        except (OSError, FileMetaError) as exc:  # gone, unreadable, or not Part 10
            log.error("sub-operation for instance %s failed: cannot read its file: %s",
                      row.sop_instance_uid, exc)  # fmt: skip
            return None
        changed = _unlike_its_row(source, row)
        if changed:
            # Sent, the peer would store another instance, or a cut one, under
            # this UID, and answer Success (PS3.4 C.4.2.3.1: the SCP sends the
            # identified instances). ``archive check --verify`` lists such files.
            log.error("sub-operation for instance %s failed: its file %s", row.sop_instance_uid,
                      changed)  # fmt: skip
            return None
        ae, message_id = self.originator or (None, None)
        command = CStoreRq(
            message_id=target.next_message_id(),
            affected_sop_class_uid=row.sop_class_uid,
            affected_sop_instance_uid=row.sop_instance_uid,
            priority=self.priority,
            move_originator_ae=ae,
            move_originator_message_id=message_id,
        )
        rsp = await target.store(context.id, command, filtered(source.chunks(first)))
        if category(rsp.status) not in (StatusCategory.SUCCESS, StatusCategory.WARNING):
            log.warning("sub-operation for instance %s: status %#06x", row.sop_instance_uid,
                        rsp.status)  # fmt: skip
            if rsp.error_comment:
                # The destination's free text: PACSs put patient IDs and names
                # there, so it stays out of the logs an operator keeps.
                log.debug("sub-operation for instance %s: the destination says %r",
                          row.sop_instance_uid, rsp.error_comment)  # fmt: skip
        return rsp.status

    async def _replaced(self, row: InstanceRow) -> InstanceRow | None:
        """The instance's row now, if it names another file than ``row`` did."""
        current = None if self.index is None else await self.index.instance(row.sop_instance_uid)
        return current if current is not None and current.path != row.path else None

    def failed_list(self, transfer_syntax: str) -> tuple[bytes | None, str | None]:
        """The final response's identifier, Failed SOP Instance UID List (if any
        failed), and an Error Comment if the list had to be cut.

        In Implicit VR a value's length has 32 bits: every UID goes in. In an
        Explicit VR syntax a UI value's length has 16: those that fit, and the
        comment says how many were left out (PS3.4 C.4.2.1.4.2 asks for all).
        """
        failed = self.counts.failed_uids
        if not failed:
            return None, None
        uids: list[str] = []
        size = 0
        limit = None if transfer_syntax == IMPLICIT_VR_LE else _MAX_UI_LIST
        for uid in failed:
            if not usable_uid(uid):
                continue  # not a UI value (a row made by an older version's check)
            size += len(uid) + 1
            if limit is not None and size > limit:
                break  # the rest does not fit one explicit-VR UI value
            uids.append(uid)
        value = "\\".join(uids).encode("ascii")
        dataset = encode_dataset(
            [Element(FAILED_SOP_INSTANCE_UID_LIST, "UI", value)], transfer_syntax
        )
        left = len(failed) - len(uids)
        return dataset, f"Failed SOP Instance UID List: {left} UIDs left out" if left else None


def _unlike_its_row(source: FileSource, row: InstanceRow) -> str | None:
    """How the opened file differs from what its row says was stored, or None.

    What the first read gave costs nothing to compare: the file's size, and its
    File Meta's SOP Instance UID and transfer syntax (the context was chosen by
    the row's). Its digest would need the whole file read first.
    """
    meta, size = source.reader.meta, source.reader.size
    if meta is None:
        return None
    if meta.media_storage_sop_instance_uid != row.sop_instance_uid:
        return "holds another instance (its File Meta's SOP Instance UID differs)"
    if meta.transfer_syntax_uid != row.transfer_syntax_uid:
        return f"is in transfer syntax {meta.transfer_syntax_uid}, not the indexed one"
    if size != row.size:
        return f"is {size} bytes long, not the {row.size} indexed: changed on disk"
    return None


ResponseType = type[CMoveRsp] | type[CGetRsp]


def _response(
    rsp_type: ResponseType,
    command: CMoveRq | CGetRq,
    status: int,
    counts: Counts,
    *,
    remaining: bool,
    dataset: bytes | None = None,
    comment: str | None = None,
) -> Response:
    return Response(
        rsp_type(
            message_id_being_responded_to=command.message_id,
            affected_sop_class_uid=command.affected_sop_class_uid,
            status=status,
            number_of_remaining_suboperations=counts.remaining if remaining else None,
            number_of_completed_suboperations=counts.completed,
            number_of_failed_suboperations=counts.failed,
            number_of_warning_suboperations=counts.warning,
            error_comment=comment,
            has_dataset=dataset is not None,
        ),
        dataset,
    )


async def progress(
    retriever: Retriever,
    workers: Sequence[asyncio.Task[None]],
    rsp_type: ResponseType,
    command: CMoveRq | CGetRq,
) -> AsyncGenerator[Response, None]:
    """Pending responses while ``workers`` run, at most one per :data:`PENDING_INTERVAL`.

    PS3.4 C.4.2.3.1 leaves pending responses to the SCP ("may"); one per
    sub-operation would double the messages of a C-GET (and the peer's work) for
    a progress display that cannot show more than a few updates a second anyway.
    """
    running = set(workers)
    reported = 0
    try:
        while running:
            retriever.stop_connecting()  # if a C-CANCEL came
            done, _ = await asyncio.wait(
                running, timeout=PENDING_INTERVAL, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                running.discard(task)
                task.result()  # a worker's unexpected error fails the operation
            counts = retriever.counts
            progressed = counts.completed + counts.failed + counts.warning
            # After a C-CANCEL only the final response (FE00) goes: the
            # sub-operations are interrupted (PS3.4 C.4.2.3.1, C.4.3.3.1).
            if running and counts.remaining and progressed != reported and not retriever.cancelled:
                reported = progressed
                yield _response(rsp_type, command, Status.PENDING, counts, remaining=True)
    finally:
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def finish(
    retriever: Retriever,
    rsp_type: ResponseType,
    command: CMoveRq | CGetRq,
    transfer_syntax: str,
    started: float,
    what: str,
) -> Response:
    """The final response, and one INFO line (counts only: no patient data)."""
    cancelled = retriever.cancelled
    if not cancelled:
        # Left in the queue without a cancel: no association could take them.
        retriever.fail_rest("no association to the destination")
    counts = retriever.counts
    status = counts.final_status(cancelled)
    log.info(
        "%s: %d completed, %d failed, %d warning, %d remaining in %.2f s, status %#06x",
        what,
        counts.completed,
        counts.failed,
        counts.warning,
        counts.remaining,
        time.monotonic() - started,
        status,
    )
    failed, comment = retriever.failed_list(transfer_syntax)
    return _response(
        rsp_type, command, status, counts, remaining=cancelled, dataset=failed, comment=comment
    )


async def select(index: RetrieveIndex, request: Request) -> list[InstanceRow] | QueryFailure:
    """The instances a C-MOVE/C-GET identifier selects, or why it cannot be answered."""
    parsed = parse_request(request, purpose="retrieve")
    if isinstance(parsed, QueryFailure):
        return parsed
    try:
        return await index.retrieve(parsed)
    except IndexReadError as exc:
        # Refused: Out of Resources - Unable to calculate number of matches
        # (PS3.4 Tables C.4-2, C.4-3), not an aborted association.
        log.warning("retrieve: %s", exc)
        return QueryFailure(Status.OUT_OF_RESOURCES_MATCHES, "the index could not be read")


class MoveSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What C-MOVE needs from the configuration."""

    #: Move Destination AE title -> (host, port).
    peers: dict[str, tuple[str, int]]
    #: Sub-associations opened at once to the destination, at most.
    associations: int = 4


def c_move_provider(
    index: RetrieveIndex, files: InstanceFiles, settings: MoveSettings, connect: Connect
) -> Provider:
    """The C-MOVE SCP (PS3.4 C.4.2.3): sub-operations over new associations,
    opened by ``connect``."""

    async def c_move(request: Request) -> AsyncIterator[Response]:
        command = request.command
        assert isinstance(command, CMoveRq)
        started = time.monotonic()
        destination = command.move_destination.strip()
        address = settings.peers.get(destination)
        if address is None:
            yield query_failure(
                command,
                QueryFailure(
                    Status.MOVE_DESTINATION_UNKNOWN, f"move destination {destination!r} unknown"
                ),
            )
            return
        selected = await select(index, request)
        if isinstance(selected, QueryFailure):
            yield query_failure(command, selected)
            return
        retriever = Retriever(
            files,
            selected,
            request.cancel,
            priority=command.priority,
            originator=(request.calling_ae, command.message_id),
            index=index,
        )
        if selected:
            contexts = proposals(selected)
            workers = [
                asyncio.ensure_future(
                    _move_worker(retriever, connect, destination, address, contexts)
                )
                for _ in range(min(settings.associations, len(selected)))
            ]
            retriever.workers = len(workers)
            # aclosing: if our caller stops early, the workers are cancelled now.
            async with contextlib.aclosing(
                progress(retriever, workers, CMoveRsp, command)
            ) as responses:
                async for response in responses:
                    yield response
        yield await finish(
            retriever,
            CMoveRsp,
            command,
            request.transfer_syntax,
            started,
            f"C-MOVE to {destination}",
        )

    return c_move


async def _move_worker(
    retriever: Retriever,
    connect: Connect,
    destination: str,
    address: tuple[str, int],
    contexts: Sequence[tuple[str, Sequence[str]]],
) -> None:
    """Associations to the destination, one at a time, sending until the queue is empty.

    Each is released as soon as the queue is empty, not held while the other
    workers finish: a peer's association slots are not taken for nothing, and an
    idle association is not left for the peer's idle timeout to drop under the
    rows another worker may yet put back. For such rows a new one is opened.
    """
    if not retriever.queue or retriever.cancelled:
        return
    retriever.connecting(True)
    while True:
        connecting, sent = True, False
        try:
            with retriever.stoppable():
                async with connect(destination, address, contexts) as target:
                    # From here on, an error aborts the sub-association, and a
                    # C-CANCEL lets the C-STORE in flight finish.
                    connecting = False
                    retriever.connecting(False)
                    await retriever.send_queued(target)
                    sent = True
        except (SubAssociationError, OSError) as exc:
            # OSError: a file failed in the middle of its C-STORE (unreadable, or
            # not convertible); that sub-operation is counted failed and its
            # association, holding half a message, aborted. The file's failure
            # is not the destination's: the others go on a new association.
            file_failed = isinstance(exc, OSError) and not connecting and not sent
            if connecting:
                log.warning("C-MOVE: cannot associate with %s: %s", destination, exc)
            elif sent:  # the release failed: every sub-operation was answered
                log.warning("C-MOVE: release of the association with %s: %s",
                            destination, exc)  # fmt: skip
            elif file_failed:  # its WARNING, naming the instance, is logged
                log.info("C-MOVE: association with %s aborted after a file failed"
                         " while sent; the others go on a new one", destination)  # fmt: skip
            else:
                log.warning("C-MOVE: association with %s ended: %s", destination, exc)
            if not sent and not file_failed:
                return
        finally:
            if connecting:
                retriever.connecting(False)
        if not await retriever.connect_for_put_back():
            return


def c_get_provider(index: RetrieveIndex, files: InstanceFiles) -> Provider:
    """The C-GET SCP (PS3.4 C.4.3.3): sub-operations on the caller's association."""

    async def c_get(request: Request) -> AsyncIterator[Response]:
        command = request.command
        assert isinstance(command, CGetRq)
        assert request.channel is not None
        started = time.monotonic()
        selected = await select(index, request)
        if isinstance(selected, QueryFailure):
            yield query_failure(command, selected)
            return
        retriever = Retriever(
            files, selected, request.cancel, priority=command.priority, originator=None, index=index
        )
        if selected:
            # With an Asynchronous Operations Window, that many sub-operations in
            # flight: the next file goes out while the peer stores the last one.
            channel = request.channel
            workers = [
                asyncio.ensure_future(retriever.run(channel))
                for _ in range(min(channel.window, len(selected)))
            ]
            retriever.workers = len(workers)
            async with contextlib.aclosing(
                progress(retriever, workers, CGetRsp, command)
            ) as responses:
                async for response in responses:
                    yield response
        yield await finish(retriever, CGetRsp, command, request.transfer_syntax, started, "C-GET")

    return c_get
