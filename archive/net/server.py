"""The listening side: one task per association on one event loop.

The server owns every association task it starts and ends them on shutdown:
stop listening, give open associations ``shutdown_grace`` seconds to finish,
then abort the rest. Association policy (AE titles, hosts, the concurrency limit,
presentation contexts) is decided here from the frozen config; DIMSE requests go
to the service providers of :mod:`archive.services`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections.abc import AsyncGenerator, AsyncIterator

import msgspec

from archive.config import Config
from archive.dicom.dimse import (
    CCancelRq,
    CFindRq,
    CGetRq,
    CMoveRq,
    Command,
    CommandReceived,
    DatasetFragment,
    Status,
)
from archive.dicom.errors import (
    AbortReason,
    AbortSource,
    RejectReason,
    RejectResult,
    RejectSource,
    RemoteProtocolError,
)
from archive.dicom.uids import name as uid_name
from archive.dicom.ul.machine import Role, UpperLayer
from archive.dicom.ul.negotiation import (
    AcceptedContext,
    AcceptorPolicy,
    Negotiated,
    negotiate,
)
from archive.dicom.ul.pdu import AAssociateAc, AAssociateRj, AAssociateRq, AReleaseRq
from archive.net.association import (
    Association,
    AssociationError,
    DatasetEnded,
    DatasetTooLarge,
    MessageEvent,
    Outcome,
    Timeouts,
)
from archive.net.connection import Connection
from archive.net.memory import BurstRelease
from archive.net.operation import MAX_IDENTIFIER, GetChannel, Operation
from archive.services import (
    Cancel,
    DatasetInterrupted,
    Provider,
    Registry,
    Request,
    Response,
    failure,
)

log = logging.getLogger("archive.net")

#: Requests that run as an :class:`Operation` while the association is read on.
_OPERATIONS = (CFindRq, CMoveRq, CGetRq)
#: The Pending statuses (PS3.7 C.4): an operation's response with any other is its
#: last. Pending responses are written together, a burst (a page of C-FIND
#: matches) at a time.
_COALESCED = frozenset({int(Status.PENDING), int(Status.PENDING_WARNING)})
#: Read timeout while an operation runs: the peer is rightly silent, waiting for
#: our responses (the operation's own sends are bounded by the network timeout).
_WHILE_OPERATING = 365 * 86400.0


def timeouts_from(config: Config) -> Timeouts:
    t = config.timeouts
    return Timeouts(artim=t.artim, network=t.network, dimse=t.dimse, connect=t.connect)


#: File descriptors one association may hold at once: its socket and the
#: duplicate that re-arms QUICKACK (``connection.quickack_socket``), an instance
#: file being written or sent, and a spare (a file opened ahead, a C-MOVE's
#: sub-association).
FDS_PER_ASSOCIATION = 4
#: File descriptors kept for the rest of the node: the index's connections and
#: their WAL and shared-memory files, the listening socket, the log, the
#: event loop's own.
FDS_RESERVED = 64


def association_budget(wanted: int) -> tuple[int, int]:
    """How many of ``wanted`` associations the descriptor limit can serve, and
    that limit. The soft limit (``ulimit -n``) is raised first as far as the
    hard limit allows, to what ``wanted`` needs. An association that found no
    descriptor was closed unanswered (no A-ASSOCIATE-RJ), and those accepted
    failed their stores (0xA700) for want of one for the instance file."""
    need = FDS_RESERVED + FDS_PER_ASSOCIATION * wanted
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < need:
            raised = need if hard == resource.RLIM_INFINITY else min(need, hard)
            if raised > soft:
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
                soft = raised
    except (OSError, ValueError):  # pragma: no cover - no such limit here
        return wanted, -1
    if soft == resource.RLIM_INFINITY:
        return wanted, -1
    return max(1, min(wanted, (soft - FDS_RESERVED) // FDS_PER_ASSOCIATION)), soft


class Server:
    """A DICOM acceptor listening on one address."""

    def __init__(self, config: Config, policy: AcceptorPolicy, registry: Registry) -> None:
        self.config = config
        self.policy = policy
        self.registry = registry
        self.timeouts = timeouts_from(config)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._active = 0
        #: Gives back the memory of a burst of connections once it is over.
        self._memory = BurstRelease()
        #: max_associations, or fewer if the file descriptors cannot serve it.
        self.max_associations = config.association.max_associations
        # Unconsumed input above this pauses reading: a few PDUs' worth.
        max_pdu = config.association.max_pdu_length or (1 << 20)
        self._high_water = 4 * (max_pdu + 6)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active(self) -> int:
        return self._active

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        node = self.config.node
        wanted = self.config.association.max_associations
        self.max_associations, limit = association_budget(wanted)
        if self.max_associations < wanted:
            log.warning(
                "association.max_associations = %d needs ~%d file descriptors, the limit"
                " (ulimit -n) is %d: at most %d associations are accepted, the others are"
                " rejected (local limit exceeded); raise the limit or lower the setting",
                wanted, FDS_RESERVED + FDS_PER_ASSOCIATION * wanted, limit,
                self.max_associations,
            )  # fmt: skip
        if self.config.association.check_calling_host:
            self.policy = msgspec.structs.replace(
                self.policy, calling_hosts=await _resolve_peers(self.config)
            )
        self._server = await loop.create_server(
            self._connection,
            host=node.host,
            port=node.port,
            backlog=node.backlog,
            reuse_address=True,
        )

    def _connection(self) -> Connection:
        ul = UpperLayer(Role.ACCEPTOR, self.config.association.max_pdu_length)
        conn = Connection(ul, high_water=self._high_water)
        task = asyncio.get_running_loop().create_task(self._association(conn))
        self._tasks.add(task)
        self._memory.opened(len(self._tasks))
        task.add_done_callback(self._ended)
        return conn

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._memory.closed(len(self._tasks))

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, let associations finish within ``grace`` s, abort the rest."""
        if self._server is not None:
            self._server.close()
            log.info("stopped listening")
        self._memory.cancel()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        if self._server is not None:
            await self._server.wait_closed()

    # ---- one association ------------------------------------------------------------

    async def _association(self, conn: Connection) -> None:
        assoc = Association(conn, conn.ul, self.timeouts)
        rq: AAssociateRq | None = None
        counted = False
        try:
            await conn.opened
            conn.ul.connection_made()
            event = await assoc.next_event()
            if not isinstance(event, AAssociateRq):
                assoc.flush()
                await assoc.wait_closed()
                return
            rq = event
            # Count associations from their request on: a burst of connections
            # that never send one cannot lock real associations out (ARTIM
            # closes them).
            self._active += 1
            counted = True
            reply = self._decide(rq, conn)
            if isinstance(reply, AAssociateRj):
                assoc.reject(reply)
                # Not an association: the wait for the peer to close (ARTIM
                # at most) must not hold a slot, or rejected requests left
                # open would keep real callers out for that long.
                self._active -= 1
                counted = False
                await assoc.wait_closed()
                return
            ac, assoc.negotiated = reply
            conn.ul.send(ac)
            assoc.flush()
            await self._serve(assoc)
        except asyncio.CancelledError:
            assoc.abort("shutdown")
            conn.close()
            raise
        except AssociationError:
            pass  # the outcome (timeout, abort) is recorded and logged below
        except Exception:
            log.exception("association from %s failed", conn.peer[0])
            assoc.abort("internal error")
        finally:
            conn.close()
            if counted:
                self._active -= 1
            self._log(assoc, rq)

    def _decide(
        self, rq: AAssociateRq, conn: Connection
    ) -> AAssociateRj | tuple[AAssociateAc, Negotiated]:
        if self._active > self.max_associations:
            return AAssociateRj(
                RejectResult.TRANSIENT,
                RejectSource.SERVICE_PROVIDER_PRESENTATION,
                RejectReason.LOCAL_LIMIT_EXCEEDED,
            )
        return negotiate(rq, self.policy, peer_host=conn.peer[0])

    async def _serve(self, assoc: Association) -> None:
        """The established association: requests in, responses out, until it ends."""
        operation: Operation | None = None
        try:
            while True:
                if operation is None:
                    # Also after a request whose data set an A-RELEASE-RQ cut
                    # short (it was not carried out): the peer waits for our
                    # answer, and no timer runs in Sta8.
                    if assoc.release_requested:
                        await assoc.answer_release()
                        return
                    item = await assoc.receive()
                else:
                    received = await _receive_during(assoc, operation)
                    if received is None:  # the operation finished first
                        operation.task.result()  # its failure fails the association
                        operation = None
                        continue
                    item = received
                if type(item) is CommandReceived:
                    if operation is not None:
                        if operation.deliver(item.command):
                            continue
                        if operation.final_sent:  # done but for its task's last step
                            await operation.task
                            operation = None
                    if operation is not None:
                        # A new request while one runs: the peer broke the (1, 1)
                        # asynchronous operations window we agreed (PS3.7 D.3.3.3).
                        # Waiting without reading could leave a C-GET waiting for
                        # C-STORE-RSPs nobody reads; end it instead.
                        assoc.abort("request while an operation was outstanding")
                        await assoc.wait_closed()
                        return
                    if isinstance(item.command, _OPERATIONS):
                        operation = await self._start(assoc, item)
                    elif not item.command.command_field & 0x8000:
                        await self._request(assoc, item)
                    # else: a response or C-CANCEL with nothing running: ignored
                elif isinstance(item, DatasetFragment):
                    continue  # the rest of a data set nobody wanted; already answered
                elif isinstance(item, AReleaseRq):
                    # Answered at the top; with an operation running, once it
                    # ends, reading on meanwhile (an abort, a C-GET's C-STORE-RSPs):
                    # its responses may still go out (AR-7).
                    continue
                else:
                    await assoc.wait_closed()
                    return
        finally:
            if operation is not None:
                if not operation.task.done():
                    await operation.stop("association ended")
                else:
                    _retrieve(operation.task)

    async def _start(self, assoc: Association, received: CommandReceived) -> Operation | None:
        """Read a C-FIND/C-MOVE/C-GET identifier and start the operation's task."""
        command = received.command
        assert isinstance(command, _OPERATIONS)
        try:
            identifier = await assoc.read_dataset(MAX_IDENTIFIER) if command.has_dataset else b""
        except DatasetTooLarge as exc:
            response = failure(command, Status.CANNOT_UNDERSTAND, str(exc))
            if response is not None:
                await assoc.send(received.context_id, response.command)
            return None
        except DatasetEnded:
            return None  # the association ended in the middle of it
        cancel = Cancel()
        channel = GetChannel(assoc, self.timeouts.dimse) if isinstance(command, CGetRq) else None
        operation = Operation(command.message_id, cancel, channel)
        return operation.start(
            self._request(assoc, received, identifier=identifier, operation=operation)
        )

    async def _request(
        self,
        assoc: Association,
        received: CommandReceived,
        *,
        identifier: bytes | None = None,
        operation: Operation | None = None,
    ) -> None:
        negotiated = assoc.negotiated
        assert negotiated is not None
        context = negotiated.contexts.get(received.context_id)
        if context is None:
            assoc.abort_for(
                RemoteProtocolError(
                    f"message on presentation context {received.context_id}, not accepted",
                    abort=(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU_PARAMETER),
                )
            )
            return
        command = received.command
        if isinstance(command, CCancelRq):
            return  # nothing is running, so there is nothing to cancel
        dataset = _fragments(assoc) if command.has_dataset and identifier is None else None
        provider = self.registry.provider_for(command, context.abstract_syntax)
        why = _not_served(command, context, provider)
        if why is not None:
            log.warning(
                "%s for SOP Class %s on presentation context %d (%s): %s, refused",
                type(command).__name__,
                uid_name(getattr(command, "affected_sop_class_uid", "") or "?"),
                received.context_id,
                uid_name(context.abstract_syntax),
                why,
            )
            # The reason is the Error Comment too (LO: 64 characters at most).
            await self._refuse(assoc, received, dataset, Status.SOP_CLASS_NOT_SUPPORTED, why)
            return
        assert provider is not None  # without one, _not_served gave a reason
        request = Request(
            command=command,
            context_id=received.context_id,
            abstract_syntax=context.abstract_syntax,
            transfer_syntax=context.transfer_syntax,
            calling_ae=negotiated.calling_ae,
            called_ae=negotiated.called_ae,
            peer_host=assoc.conn.peer[0],
            dataset=dataset,
            identifier=identifier,
            cancel=operation.cancel if operation else None,
            channel=operation.channel if operation else None,
            extended=negotiated.extended.get(context.abstract_syntax, b""),
        )
        try:
            async with _closing(provider(request)) as responses:
                async for response in responses:
                    if not assoc.ul.can_send_data:
                        break
                    pending = response.command.status in _COALESCED  # type: ignore[union-attr]
                    await assoc.send(
                        received.context_id, response.command, response.dataset, coalesce=pending
                    )
                    if operation is not None and not pending:
                        operation.final_sent = True
        except DatasetInterrupted:
            # The association ended, or an A-RELEASE-RQ cut the data set short
            # (_serve answers it); the provider has cleaned up.
            return

    @staticmethod
    async def _refuse(
        assoc: Association,
        received: CommandReceived,
        dataset: AsyncIterator[memoryview] | None,
        status: int,
        comment: str,
    ) -> None:
        """Answer a request with a failure, after reading its data set to the end
        (the peer sends it whatever we answer)."""
        if dataset is not None:
            try:
                async for _ in dataset:
                    pass
            except DatasetInterrupted:
                return  # the association ended, or a release came first (see _serve)
        response = failure(received.command, status, comment)
        if response is not None:
            await assoc.send(received.context_id, response.command)

    def _log(self, assoc: Association, rq: AAssociateRq | None) -> None:
        host, port = assoc.conn.peer
        calling = rq.calling_ae if rq else "-"
        called = rq.called_ae if rq else "-"
        accepted = len(assoc.negotiated.contexts) if assoc.negotiated else 0
        proposed = len(rq.contexts) if rq else 0
        outcome = assoc.outcome.value if assoc.outcome is not Outcome.OPEN else "closed"
        detail = f" ({assoc.detail})" if assoc.detail else ""
        log.info(
            "association %s:%d %s->%s contexts %d/%d %.3fs %s%s",
            host,
            port,
            calling,
            called,
            accepted,
            proposed,
            assoc.duration,
            outcome,
            detail,
        )


async def _resolve_peers(config: Config) -> dict[str, frozenset[str]]:
    """Each peer's host as the addresses a connection from it can come from.

    Resolved once at start-up so that a peer configured by name matches the
    numeric peer address of its connections; the literal is kept as well.
    """
    loop = asyncio.get_running_loop()
    hosts: dict[str, frozenset[str]] = {}
    for peer in config.peers:
        addresses = {peer.host}
        try:
            infos = await loop.getaddrinfo(peer.host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            log.warning("peer %s: cannot resolve %s: %s", peer.ae_title, peer.host, exc)
            infos = []
        addresses.update(str(info[4][0]) for info in infos)
        hosts[peer.ae_title] = frozenset(addresses)
    return hosts


async def _receive_during(assoc: Association, operation: Operation) -> MessageEvent | None:
    """The next item read while ``operation`` runs; None if the operation ends first.

    Cancelling the read is safe: it can only be waiting for the socket then, with
    whatever it had decoded kept in the association.
    """
    reading = asyncio.ensure_future(assoc.receive(timeout=_WHILE_OPERATING))
    try:
        await asyncio.wait({reading, operation.task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Also when we are cancelled (shutdown): the read must not outlive us.
        if not reading.done():
            reading.cancel()
            await asyncio.wait({reading})  # unlike ``await reading``, keeps our own cancel
    return reading.result() if not reading.cancelled() else None


def _closing(
    responses: AsyncIterator[Response],
) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Response]]:
    """Close a provider's generator on leaving the block, not whenever the GC gets to
    it: its ``finally`` ends the C-MOVE/C-GET worker tasks it started."""
    if isinstance(responses, AsyncGenerator):
        return contextlib.aclosing(responses)
    return contextlib.nullcontext(responses)


async def _fragments(assoc: Association) -> AsyncIterator[memoryview]:
    """The current message's data set fragments, for a provider (services' error)."""
    try:
        async for data in assoc.fragments():
            yield data
    except DatasetEnded as exc:
        raise DatasetInterrupted(str(exc)) from None


@contextlib.asynccontextmanager
async def serving(
    config: Config, policy: AcceptorPolicy, registry: Registry
) -> AsyncIterator[Server]:
    """Run a server for the duration of the block (tests, embedding)."""
    server = Server(config, policy, registry)
    await server.start()
    try:
        yield server
    finally:
        await server.shutdown(config.node.shutdown_grace)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Take a finished operation's outcome once its association has ended some
    other way (both may time out on one silent peer, the read first): a failure
    of the association's own is recorded with it; anything else is a bug, logged.
    Left unretrieved, asyncio reports it at garbage collection, out of context."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, AssociationError):
        log.error("operation failed after its association ended", exc_info=exc)


def _not_served(
    command: Command, context: AcceptedContext, provider: Provider | None
) -> str | None:
    """Why a request is not carried out on its presentation context (answered
    0122 SOP Class not supported, PS3.7 C.5), or None; ``provider``: the one the
    registry has for it."""
    if not context.scu_role:
        # The requestor gave the SCU role up for this class (PS3.7 D.3.3.4: a
        # context proposed to receive C-GET's sub-operations on, accepted for
        # any syntax we send): it may invoke nothing there, as our SCU side
        # answers the mirror case (net/client.py).
        return "the requestor has no SCU role on this presentation context"
    affected = getattr(command, "affected_sop_class_uid", None)
    if affected is not None and affected != context.abstract_syntax:
        # A message belongs to the SOP Class of its presentation context
        # (PS3.7 9.1, PS3.8 7.1.1.13), not served under a class nobody negotiated.
        return "SOP Class is not the presentation context's"
    if provider is None:
        # No such operation for this SOP Class here (a C-STORE on a Q/R
        # context, a C-ECHO on a storage one, a C-FIND where Q/R is off).
        return "operation not served for this SOP Class"
    return None
