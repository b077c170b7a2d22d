"""The requestor side (SCU) on the same asyncio core as the server.

``await associate(...)`` opens a TCP connection, negotiates, and returns a
:class:`ClientAssociation` (an async context manager that releases on exit, or
aborts if the block raised). Failures are typed: :class:`AssociationRejected`
with the RJ's result/source/reason, :class:`AssociationAborted`,
:class:`AssociationTimeout`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import NoReturn, TypeVar

from archive.dicom.dimse import (
    CCancelRq,
    CEchoRq,
    CEchoRsp,
    CFindRq,
    CFindRsp,
    CGetRq,
    CGetRsp,
    CMoveRq,
    CMoveRsp,
    Command,
    CommandReceived,
    CStoreRq,
    CStoreRsp,
    DatasetFragment,
    Status,
    StatusCategory,
    category,
)
from archive.dicom.errors import RemoteProtocolError
from archive.dicom.uids import IMPLICIT_VR_LE, VERIFICATION, shown_uid, usable_uid
from archive.dicom.ul.machine import Closed, ProviderAbort, Role, UpperLayer
from archive.dicom.ul.negotiation import AcceptedContext, accepted, build_request
from archive.dicom.ul.pdu import (
    AAbort,
    AAssociateAc,
    AAssociateRj,
    AReleaseRq,
    AsyncOperationsWindow,
    RoleSelection,
    SopClassExtended,
)
from archive.net.association import (
    Association,
    AssociationAborted,
    AssociationRejected,
    AssociationTimeout,
    DatasetTooLarge,
    MessageIds,
    Outcome,
    Timeouts,
)
from archive.net.connection import Connection

log = logging.getLogger("archive.net")

#: Maximum Length Received we advertise as a requestor when not told otherwise.
DEFAULT_MAX_PDU = 65536
#: Largest response identifier (C-FIND match, C-MOVE/C-GET failed UID list) we keep.
MAX_RESPONSE_DATASET = 16 << 20

#: What a C-GET SCU does with each C-STORE sub-operation it receives: given the
#: request, the context's transfer syntax and the data set fragments (to be read
#: to the end), it returns the C-STORE status to answer (PS3.4 C.4.3.3).
StoreHandler = Callable[[CStoreRq, str, AsyncIterator[memoryview]], Awaitable[int]]
_Rsp = TypeVar("_Rsp", CFindRsp, CMoveRsp, CGetRsp)


async def associate(
    host: str,
    port: int,
    *,
    calling_ae: str,
    called_ae: str,
    contexts: Sequence[tuple[str, Sequence[str]]],
    roles: Sequence[RoleSelection] = (),
    extended: Sequence[SopClassExtended] = (),
    max_pdu_length: int = DEFAULT_MAX_PDU,
    timeouts: Timeouts | None = None,
    async_ops: tuple[int, int] | None = None,
) -> ClientAssociation:
    """Open an association proposing ``contexts`` (abstract syntax, transfer syntaxes).

    ``async_ops`` proposes an Asynchronous Operations Window (PS3.7 D.3.3.3):
    (operations we invoke at once, operations we accept outstanding). A C-GET
    requestor proposes (1, N): the peer may then send up to N C-STORE
    sub-operations before their responses, which our handler answers in order.
    """
    timeouts = timeouts or Timeouts()
    rq = build_request(
        calling_ae,
        called_ae,
        contexts,
        max_pdu_length=max_pdu_length,
        roles=roles,
        extended=extended,
        async_ops=AsyncOperationsWindow(*async_ops) if async_ops else None,
    )
    ul = UpperLayer(Role.REQUESTOR, max_pdu_length)
    ul.send(rq)  # AE-1: Sta4, awaiting the transport
    conn = Connection(ul, high_water=4 * (max_pdu_length or (1 << 20)) + 64)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeouts.connect):
            await loop.create_connection(lambda: conn, host, port)
    except TimeoutError as exc:
        raise AssociationTimeout(
            f"no connection to {host}:{port} within {timeouts.connect:g} s"
        ) from exc
    except OSError as exc:
        raise AssociationAborted(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    assoc = Association(conn, ul, timeouts)
    ul.connection_made()  # AE-2: the A-ASSOCIATE-RQ goes out
    try:
        event = await assoc.next_event()
    except BaseException:
        # Cancelled (a caller's timeout, a task group) while negotiating: the
        # transport must not outlive us, or the loop cannot close cleanly.
        conn.close()
        raise
    if isinstance(event, AAssociateAc):
        try:
            assoc.negotiated = accepted(rq, event)
        except RemoteProtocolError as exc:
            assoc.abort_for(exc)
            conn.close()
            raise AssociationAborted(f"bad A-ASSOCIATE-AC: {exc}") from exc
        return ClientAssociation(assoc)
    conn.close()
    if isinstance(event, AAssociateRj):
        raise AssociationRejected(event)
    if assoc.outcome is Outcome.TIMEOUT:
        raise AssociationTimeout(f"no association response within {timeouts.artim:g} s")
    raise AssociationAborted(_ended(assoc, event))


def _ended(assoc: Association, event: object) -> str:
    if isinstance(event, AAbort):
        return f"association aborted by the peer (source {event.source}, reason {event.reason})"
    if isinstance(event, ProviderAbort):
        return f"association aborted: {event.detail or 'provider abort'}"
    return f"association ended: {assoc.detail or 'connection closed'}"


class ClientAssociation:
    """An established association as SCU."""

    #: As a C-MOVE's StoreTarget: one C-STORE at a time (store() reads its answer).
    window = 1

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        assert assoc.negotiated is not None
        self.negotiated = assoc.negotiated
        self._message_ids = MessageIds()
        #: (context ID, Message ID) of the C-FIND/C-MOVE/C-GET in progress.
        self._operation: tuple[int, int] | None = None

    async def __aenter__(self) -> ClientAssociation:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None and self.assoc.ul.can_send_data:
            await self.release()
        else:
            self.abort()

    def next_message_id(self) -> int:
        return self._message_ids.next()

    async def request(
        self, context_id: int, command: Command, dataset: bytes | memoryview | None = None
    ) -> Command:
        """Send a request and wait (DIMSE timeout) for the response command."""
        await self.assoc.send(context_id, command, dataset)
        return await self._response()

    async def _response(self) -> Command:
        """The next response command (DIMSE timeout); typed errors if none comes."""
        while True:
            item = await self.assoc.receive(timeout=self.assoc.timeouts.dimse)
            if isinstance(item, CommandReceived):
                return item.command
            if isinstance(item, AReleaseRq | AAbort | ProviderAbort | Closed):
                await self._lost(item, self.assoc.timeouts.dimse)

    async def _lost(self, item: object, wait: float) -> NoReturn:
        """The association ended (``item``) while we waited ``wait`` s for a response."""
        if self.assoc.outcome is Outcome.TIMEOUT:
            await self.assoc.wait_closed()
            raise AssociationTimeout(f"no response within {wait:g} s")
        self.abort()
        raise AssociationAborted(_ended(self.assoc, item))

    async def _dataset(self) -> bytes:
        """The data set following the command just received, read whole (bounded)."""
        try:
            return await self.assoc.read_dataset(MAX_RESPONSE_DATASET, self.assoc.timeouts.dimse)
        except DatasetTooLarge as exc:
            self.abort()
            raise AssociationAborted(f"response {exc}") from None

    async def _responses(
        self,
        context_id: int,
        command: CFindRq | CMoveRq | CGetRq,
        identifier: bytes,
        response_type: type[_Rsp],
        on_store: StoreHandler | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[tuple[_Rsp, bytes | None]]:
        """Send a C-FIND/C-MOVE/C-GET request; yield each response (PS3.7 9.3.2.2,
        9.3.4.2, 9.3.3.2) and its data set, up to the final (non-Pending) one.

        The one generator between the association and the caller: a C-FIND yields
        once per match, so find/move/get return this iterator rather than wrap it.
        """
        await self.assoc.send(context_id, command, identifier)
        self._operation = (context_id, command.message_id)
        # Responses are small, except the C-STORE sub-operations of a C-GET.
        self.assoc.quickack_datasets = on_store is not None
        wait = self.assoc.timeouts.dimse if timeout is None else timeout
        try:
            while True:
                item = await self.assoc.receive(timeout=wait)
                if isinstance(item, CommandReceived):
                    received = item.command
                    if isinstance(received, CStoreRq) and on_store is not None:
                        await self._store_suboperation(item.context_id, received, on_store)
                        continue
                    # The response classes are siblings: isinstance is an exact type test.
                    if (
                        not isinstance(received, response_type)
                        or received.message_id_being_responded_to != command.message_id
                    ):
                        self.abort()
                        raise AssociationAborted(
                            f"unexpected {type(received).__name__} during "
                            f"{type(command).__name__[:-2]}"
                        )
                    data = await self._dataset() if received.has_dataset else None
                    yield received, data
                    if category(received.status) is not StatusCategory.PENDING:
                        return
                elif isinstance(item, DatasetFragment):
                    continue
                else:
                    await self._lost(item, wait)
        finally:
            self._operation = None
            self.assoc.quickack_datasets = True

    async def _store_suboperation(
        self, context_id: int, command: CStoreRq, on_store: StoreHandler
    ) -> None:
        """Answer one C-STORE sub-operation of a C-GET (we are its SCP)."""
        context = self.negotiated.contexts.get(context_id)
        fragments = self.assoc.fragments(self.assoc.timeouts.dimse)
        if context is None or not context.scp_role:
            status = int(Status.SOP_CLASS_NOT_SUPPORTED)
        elif command.affected_sop_class_uid != context.abstract_syntax:
            # Stored under the class of its context, or not at all (PS3.7 9.1).
            status = int(Status.SOP_CLASS_NOT_SUPPORTED)
            log.warning(
                "C-GET sub-operation for instance %s of SOP Class %s on a context for %s:"
                " refused", shown_uid(command.affected_sop_instance_uid),
                shown_uid(command.affected_sop_class_uid), context.abstract_syntax,
            )  # fmt: skip
        elif not usable_uid(command.affected_sop_instance_uid):
            status = int(Status.INVALID_OBJECT_INSTANCE)
            log.warning(
                "C-GET sub-operation refused: SOP Instance UID %s is not a valid UID",
                shown_uid(command.affected_sop_instance_uid),
            )
        else:
            status = await on_store(command, context.transfer_syntax, fragments)
        async for _ in fragments:  # whatever the handler left unread
            pass
        await self.assoc.send(
            context_id,
            CStoreRsp(
                message_id_being_responded_to=command.message_id,
                affected_sop_class_uid=command.affected_sop_class_uid,
                affected_sop_instance_uid=command.affected_sop_instance_uid,
                status=status,
            ),
        )

    def _abstract_syntax(self, context_id: int) -> str:
        return self.negotiated.contexts[context_id].abstract_syntax

    def find(
        self, context_id: int, identifier: bytes, *, priority: int = 0
    ) -> AsyncIterator[tuple[CFindRsp, bytes | None]]:
        """C-FIND (PS3.7 9.1.2): each response and its identifier, the final one last."""
        rq = CFindRq(
            message_id=self.next_message_id(),
            affected_sop_class_uid=self._abstract_syntax(context_id),
            priority=priority,
        )
        return self._responses(context_id, rq, identifier, CFindRsp)

    def move(
        self,
        context_id: int,
        identifier: bytes,
        destination: str,
        *,
        priority: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[tuple[CMoveRsp, bytes | None]]:
        """C-MOVE (PS3.7 9.1.4) to ``destination``: the responses, the final one last.

        ``timeout`` bounds the wait for each response (default: the DIMSE
        timeout); an SCP need not send pending responses, so a long move may
        need more.
        """
        rq = CMoveRq(
            message_id=self.next_message_id(),
            affected_sop_class_uid=self._abstract_syntax(context_id),
            move_destination=destination,
            priority=priority,
        )
        return self._responses(context_id, rq, identifier, CMoveRsp, timeout=timeout)

    def get(
        self,
        context_id: int,
        identifier: bytes,
        on_store: StoreHandler,
        *,
        priority: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[tuple[CGetRsp, bytes | None]]:
        """C-GET (PS3.7 9.1.3): sub-operations go to ``on_store``; yields the responses."""
        rq = CGetRq(
            message_id=self.next_message_id(),
            affected_sop_class_uid=self._abstract_syntax(context_id),
            priority=priority,
        )
        return self._responses(context_id, rq, identifier, CGetRsp, on_store, timeout)

    async def cancel(self) -> None:
        """C-CANCEL-RQ (PS3.7 9.3.2.3) for the C-FIND/C-MOVE/C-GET in progress, if any."""
        if self._operation is not None:
            context_id, message_id = self._operation
            await self.assoc.send(context_id, CCancelRq(message_id_being_responded_to=message_id))

    def store_contexts(self) -> Sequence[AcceptedContext]:
        """Contexts we may send C-STORE-RQ on (services.StoreTarget)."""
        return [c for c in self.negotiated.contexts.values() if c.scu_role]

    async def store(
        self,
        context_id: int,
        command: CStoreRq,
        chunks: AsyncIterator[bytes | memoryview],
    ) -> CStoreRsp:
        """C-STORE (PS3.7 9.1.1) with the data set streamed from ``chunks``."""
        await self.assoc.send_streaming(context_id, command, chunks)
        rsp = await self._response()
        if not isinstance(rsp, CStoreRsp):
            raise AssociationAborted(f"unexpected {type(rsp).__name__} in answer to C-STORE-RQ")
        self._check_answers(rsp.message_id_being_responded_to, command.message_id)
        return rsp

    def _check_answers(self, responded_to: int, message_id: int) -> None:
        """A response answers the request it names (PS3.7 9.3.1.2): one naming
        another is no answer to ours, and taking it for one would count a file
        the peer may not hold as stored. DCMTK's SCUs abort too."""
        if responded_to != message_id:
            self.abort()
            raise AssociationAborted(
                f"the response answers message {responded_to}, not ours ({message_id})"
            )

    async def echo(self) -> int:
        """C-ECHO (PS3.7 9.1.5); returns the response status."""
        context = self.negotiated.context_for(VERIFICATION)
        if context is None:
            raise AssociationAborted("the peer did not accept the Verification SOP class")
        message_id = self.next_message_id()
        rsp = await self.request(
            context.id, CEchoRq(message_id=message_id, affected_sop_class_uid=VERIFICATION)
        )
        if not isinstance(rsp, CEchoRsp):
            raise AssociationAborted(f"unexpected {type(rsp).__name__} in answer to C-ECHO-RQ")
        self._check_answers(rsp.message_id_being_responded_to, message_id)
        return rsp.status

    async def release(self) -> None:
        await self.assoc.release()

    def abort(self) -> None:
        self.assoc.abort()
        self.assoc.conn.close()


ECHO_CONTEXTS: Sequence[tuple[str, Sequence[str]]] = ((VERIFICATION, (IMPLICIT_VR_LE,)),)
