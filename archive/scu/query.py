"""``archive find/move/get/pull``: the Query/Retrieve SCU (PS3.4 C.4) over the asyncio client.

Theory of operation. Every command opens one association proposing the Q/R SOP
class of the chosen model (Study Root unless told otherwise) in Explicit and
Implicit VR Little Endian; the identifier built by :mod:`archive.scu.identifier`
is encoded in the transfer syntax the peer accepted, and response identifiers are
decoded in it. Responses are handed on as they arrive (``on_match``,
``on_progress``), never held back until the end.

Interruption: an :class:`Interrupt` set by the caller (the CLI sets it on Ctrl-C)
sends a C-CANCEL-RQ (PS3.7 9.3.2.3) for the operation in progress; the peer ends
it with a Cancel (0xFE00) response. If that does not come within
:data:`CANCEL_GRACE` seconds, or the caller interrupts again, the association is
aborted.

C-GET lives in :mod:`archive.scu.get`, ``pull`` in :mod:`archive.scu.pull`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import msgspec

from archive.dicom.dataset import DatasetError, Element, decode_dataset, encode_dataset
from archive.dicom.dimse import CGetRsp, CMoveRsp, Status, StatusCategory, category
from archive.dicom.query_keys import QueryModel
from archive.dicom.uids import (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    PATIENT_ROOT_QR_FIND,
    PATIENT_ROOT_QR_GET,
    PATIENT_ROOT_QR_MOVE,
    STUDY_ROOT_QR_FIND,
    STUDY_ROOT_QR_GET,
    STUDY_ROOT_QR_MOVE,
)
from archive.dicom.uids import name as uid_name
from archive.dicom.ul.pdu import RoleSelection
from archive.errors import ArchiveError
from archive.net import AssociationError, ClientAssociation, Timeouts, associate
from archive.scu.identifier import (
    FAILED_SOP_INSTANCE_UID_LIST,
    to_dicom_json,
)

log = logging.getLogger("archive.scu.query")
T = TypeVar("T")

#: Seconds to wait for the Cancel response after a C-CANCEL-RQ before aborting.
CANCEL_GRACE = 5.0
SOP_CLASSES = {
    QueryModel.PATIENT_ROOT: (PATIENT_ROOT_QR_FIND, PATIENT_ROOT_QR_MOVE, PATIENT_ROOT_QR_GET),
    QueryModel.STUDY_ROOT: (STUDY_ROOT_QR_FIND, STUDY_ROOT_QR_MOVE, STUDY_ROOT_QR_GET),
}
QR_TRANSFER_SYNTAXES = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)


class NotSupported(ArchiveError):
    """The peer accepted the association but not the Q/R SOP class we need."""

    code: ClassVar[str] = "scu.query.not_supported"


class Interrupted(ArchiveError):
    """Ctrl-C before the peer accepted the association: there is no operation to
    cancel yet, so the attempt stops (exit 130)."""

    code: ClassVar[str] = "scu.query.interrupted"


class QueryOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Where to send a Q/R request and how."""

    host: str
    port: int
    calling_ae: str = "ARCHIVE"
    called_ae: str = "ANY-SCP"
    model: QueryModel = QueryModel.STUDY_ROOT
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)
    max_pdu_length: int = 65536


class Interrupt:
    """Set once to cancel the operation in progress, twice to abort the association."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hard = asyncio.Event()

    def set(self) -> None:
        if self.requested.is_set():
            self.hard.set()
        self.requested.set()

    @property
    def is_set(self) -> bool:
        return self.requested.is_set()


def stopper(interrupt: Interrupt | None) -> Callable[[], bool]:
    """Whether ``interrupt`` (if any) is set, as a call for loops to ask."""
    return lambda: interrupt is not None and interrupt.is_set


@dataclass(slots=True)
class FindResult:
    """The outcome of a C-FIND: the final status (None if there was none) and counts."""

    status: int | None = None
    error_comment: str | None = None
    matches: int = 0
    undecodable: int = 0
    cancelled: bool = False

    def describe(self) -> str:
        """``C-FIND status 0x....`` and the Error Comment (0000,0902), if any (PS3.7 E.1)."""
        status = "none" if self.status is None else f"0x{self.status:04X}"
        comment = f": {self.error_comment}" if self.error_comment else ""
        return f"C-FIND status {status}{comment}"


@dataclass(slots=True)
class RetrieveResult:
    """The outcome of a C-MOVE or C-GET, as the latest response reported it (PS3.4 C.4.2.3)."""

    status: int | None = None
    error_comment: str | None = None
    remaining: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)
    cancelled: bool = False
    #: Instances a C-GET wrote to its folder (none on C-MOVE: the destination has them).
    written: int = 0

    @property
    def total(self) -> int | None:
        """Sub-operations in all, once a pending response has said how many remain."""
        if self.remaining is None:
            return None
        return self.remaining + self.completed + self.failed + self.warning

    @property
    def ok(self) -> bool:
        return self.status == Status.SUCCESS

    def describe(self) -> str:
        """One line: the status and the sub-operation counts."""
        status = "no final status" if self.status is None else f"status 0x{self.status:04X}"
        if self.status is not None:
            status += f" ({_status_name(self.status)})"
        comment = f": {self.error_comment}" if self.error_comment else ""
        return (
            f"{status}{comment}; completed {self.completed}, failed {self.failed},"
            f" warning {self.warning}"
        )


#: C-MOVE / C-GET statuses, PS3.4 Tables C.4-2 and C.4-3.
RETRIEVE_STATUSES = {
    0x0000: "success",
    0xFE00: "cancelled",
    0xB000: "sub-operations complete, one or more failures or warnings",
    0xA700: "out of resources",
    0xA701: "out of resources: unable to calculate number of matches",
    0xA702: "out of resources: unable to perform sub-operations",
    0xA801: "move destination unknown",
    0xA900: "identifier does not match SOP class",
}


def _status_name(status: int) -> str:
    if status in RETRIEVE_STATUSES:
        return RETRIEVE_STATUSES[status]
    return "unable to process" if status >> 12 == 0xC else category(status).value


def record_response(
    result: RetrieveResult, rsp: CMoveRsp | CGetRsp, data: bytes | None, transfer_syntax: str
) -> None:
    """Keep what a C-MOVE/C-GET response says: counts, Failed SOP Instance UIDs, and
    the status if final (a Pending one is no outcome: an association aborted after
    it ends with no final status, PS3.7 9.1.3, 9.1.4)."""
    if category(rsp.status) is not StatusCategory.PENDING:
        result.status = rsp.status
        result.error_comment = rsp.error_comment
    result.remaining = rsp.number_of_remaining_suboperations
    result.completed = rsp.number_of_completed_suboperations or 0
    result.failed = rsp.number_of_failed_suboperations or 0
    result.warning = rsp.number_of_warning_suboperations or 0
    if data:
        try:
            elements = decode_dataset(data, transfer_syntax)
        except DatasetError as exc:
            log.warning("undecodable response identifier: %s", exc)
            return
        for element in elements:
            if element.tag == FAILED_SOP_INSTANCE_UID_LIST and isinstance(element.value, bytes):
                text = element.value.decode("ascii", "replace").rstrip("\0 ")
                result.failed_uids = [uid.strip("\0 ") for uid in text.split("\\") if uid]


# ---- the association ----------------------------------------------------------------


async def open_association(
    options: QueryOptions,
    contexts: Sequence[tuple[str, Sequence[str]]],
    roles: Sequence[RoleSelection] = (),
    async_ops: tuple[int, int] | None = None,
    interrupt: Interrupt | None = None,
) -> ClientAssociation:
    """Associate with the peer; an ``interrupt`` while it has not answered (a peer
    that accepts the connection and says nothing) stops the attempt at once with
    :class:`Interrupted`, instead of waiting out the timeout."""
    opening = asyncio.ensure_future(
        associate(
            options.host,
            options.port,
            calling_ae=options.calling_ae,
            called_ae=options.called_ae,
            contexts=contexts,
            roles=roles,
            max_pdu_length=options.max_pdu_length,
            timeouts=options.timeouts,
            async_ops=async_ops,
        )
    )
    if interrupt is None:
        return await opening
    stop = asyncio.ensure_future(interrupt.requested.wait())
    try:
        await asyncio.wait({opening, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not opening.done():
            opening.cancel()
            with contextlib.suppress(asyncio.CancelledError, ArchiveError):
                await opening
    if opening.cancelled():
        raise Interrupted("interrupted before the peer accepted the association")
    return opening.result()


def context_of(assoc: ClientAssociation, sop_class: str) -> tuple[int, str]:
    context = assoc.negotiated.context_for(sop_class)
    if context is None:
        raise NotSupported(f"the peer does not accept {uid_name(sop_class)} ({sop_class})")
    return context.id, context.transfer_syntax


async def _watch(assoc: ClientAssociation, interrupt: Interrupt) -> None:
    """C-CANCEL on the first interrupt; abort after the grace period or a second one."""
    await interrupt.requested.wait()
    log.debug("interrupted: sending C-CANCEL-RQ")
    await assoc.cancel()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(interrupt.hard.wait(), CANCEL_GRACE)
    log.debug("no Cancel response: aborting the association")
    assoc.abort()


async def interruptible(main: Callable[[Interrupt], Awaitable[T]]) -> T:
    """Run ``main`` with SIGINT (Ctrl-C) setting its :class:`Interrupt` instead of
    raising KeyboardInterrupt: the first C-CANCELs, the second aborts."""
    interrupt = Interrupt()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupt.set)
    try:
        return await main(interrupt)
    finally:
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGINT)


async def abortable(work: Coroutine[Any, Any, None], interrupt: Interrupt | None) -> None:
    """Run ``work`` to its end, or cancel it at the second interrupt.

    For work that stops taking more at the first interrupt by itself (``archive
    store`` and ``import`` finish the files in flight): the second means now.
    """
    if interrupt is None:
        await work
        return
    async with asyncio.TaskGroup() as group:
        task = group.create_task(work)
        hard = group.create_task(interrupt.hard.wait())
        # A child cancelled by another, not by the group, ends quietly.
        task.add_done_callback(lambda _: hard.cancel())
        hard.add_done_callback(lambda _: task.cancel())


class Watcher:
    """Owns the :func:`_watch` task of one operation (so it never outlives it).

    ``async with Watcher(assoc, interrupt) as watcher:`` around the responses: an
    association error after an interrupt is the abort we asked for, not a
    failure, so it ends the block quietly; ``watcher.interrupted`` says so.
    """

    def __init__(self, assoc: ClientAssociation, interrupt: Interrupt | None) -> None:
        self.interrupt = interrupt
        self.task: asyncio.Task[None] | None = None
        self.assoc = assoc

    @property
    def interrupted(self) -> bool:
        return self.interrupt is not None and self.interrupt.is_set

    async def __aenter__(self) -> Watcher:
        if self.interrupt is not None:
            self.task = asyncio.get_running_loop().create_task(_watch(self.assoc, self.interrupt))
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> bool:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                if not self.task.cancelled():  # pragma: no cover - we were cancelled
                    raise
        return isinstance(exc, AssociationError) and self.interrupted


async def find_on(
    assoc: ClientAssociation,
    sop_class: str,
    identifier: Sequence[Element],
    on_match: Callable[[dict[str, Any]], None],
    interrupt: Interrupt | None,
) -> FindResult:
    context_id, ts = context_of(assoc, sop_class)
    result = FindResult()
    async with Watcher(assoc, interrupt) as watcher:
        async for rsp, data in assoc.find(context_id, encode_dataset(identifier, ts)):
            if category(rsp.status) is StatusCategory.PENDING:
                if data is None:
                    continue
                try:
                    match = to_dicom_json(decode_dataset(data, ts))
                except DatasetError as exc:
                    result.undecodable += 1
                    log.warning("undecodable C-FIND response identifier: %s", exc)
                    continue
                result.matches += 1
                on_match(match)
            else:
                result.status, result.error_comment = rsp.status, rsp.error_comment
    result.cancelled = watcher.interrupted
    return result


async def find_matches(
    options: QueryOptions,
    identifier: Sequence[Element],
    on_match: Callable[[dict[str, Any]], None],
    *,
    interrupt: Interrupt | None = None,
) -> FindResult:
    """C-FIND (PS3.4 C.4.1): each match goes to ``on_match`` in the DICOM JSON Model."""
    sop_class = SOP_CLASSES[options.model][0]
    contexts = [(sop_class, QR_TRANSFER_SYNTAXES)]
    async with await open_association(options, contexts, interrupt=interrupt) as assoc:
        return await find_on(assoc, sop_class, identifier, on_match, interrupt)


#: Starts a C-MOVE or C-GET given the context ID and the encoded identifier.
Responses = Callable[[int, bytes], AsyncIterator[tuple[CMoveRsp | CGetRsp, bytes | None]]]


async def retrieve_on(
    assoc: ClientAssociation,
    sop_class: str,
    identifier: Sequence[Element],
    responses: Responses,
    result: RetrieveResult,
    on_progress: Callable[[RetrieveResult], None] | None,
    interrupt: Interrupt | None,
) -> RetrieveResult:
    """Run a C-MOVE or C-GET (PS3.4 C.4.2, C.4.3), keeping each response in ``result``."""
    context_id, ts = context_of(assoc, sop_class)
    async with Watcher(assoc, interrupt) as watcher:
        async for rsp, data in responses(context_id, encode_dataset(identifier, ts)):
            record_response(result, rsp, data, ts)
            if on_progress is not None:
                on_progress(result)
    result.cancelled = watcher.interrupted
    return result


async def move_on(
    assoc: ClientAssociation,
    sop_class: str,
    identifier: Sequence[Element],
    destination: str,
    on_progress: Callable[[RetrieveResult], None] | None,
    interrupt: Interrupt | None,
    timeout: float | None,
) -> RetrieveResult:
    def responses(context_id: int, data: bytes) -> AsyncIterator[tuple[CMoveRsp, bytes | None]]:
        return assoc.move(context_id, data, destination, timeout=timeout)

    return await retrieve_on(
        assoc, sop_class, identifier, responses, RetrieveResult(), on_progress, interrupt
    )


async def move_instances(
    options: QueryOptions,
    identifier: Sequence[Element],
    destination: str,
    *,
    on_progress: Callable[[RetrieveResult], None] | None = None,
    interrupt: Interrupt | None = None,
    timeout: float | None = None,
) -> RetrieveResult:
    """C-MOVE (PS3.4 C.4.2) of what ``identifier`` names to ``destination``.

    ``timeout`` bounds the wait for each response (default: the DIMSE timeout).
    """
    sop_class = SOP_CLASSES[options.model][1]
    contexts = [(sop_class, QR_TRANSFER_SYNTAXES)]
    async with await open_association(options, contexts, interrupt=interrupt) as assoc:
        return await move_on(
            assoc, sop_class, identifier, destination, on_progress, interrupt, timeout
        )
