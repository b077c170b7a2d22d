"""The requestor side (SCU) on the same asyncio core as the server.

``await associate(...)`` opens a TCP connection, negotiates, and returns a
:class:`ClientAssociation` (an async context manager that releases on exit, or
aborts if the block raised). Failures are typed: :class:`AssociationRejected`
with the RJ's result/source/reason, :class:`AssociationAborted`,
:class:`AssociationTimeout`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

from archive.dicom.dimse import CEchoRq, CEchoRsp, Command, CommandReceived, CStoreRq, CStoreRsp
from archive.dicom.errors import RemoteProtocolError
from archive.dicom.uids import IMPLICIT_VR_LE, VERIFICATION
from archive.dicom.ul.machine import Closed, ProviderAbort, Role, UpperLayer
from archive.dicom.ul.negotiation import accepted, build_request
from archive.dicom.ul.pdu import AAbort, AAssociateAc, AAssociateRj, AReleaseRq, RoleSelection
from archive.net.association import (
    Association,
    AssociationAborted,
    AssociationRejected,
    AssociationTimeout,
    Outcome,
    Timeouts,
)
from archive.net.connection import Connection

#: Maximum Length Received we advertise as a requestor when not told otherwise.
DEFAULT_MAX_PDU = 65536


async def associate(
    host: str,
    port: int,
    *,
    calling_ae: str,
    called_ae: str,
    contexts: Sequence[tuple[str, Sequence[str]]],
    roles: Sequence[RoleSelection] = (),
    max_pdu_length: int = DEFAULT_MAX_PDU,
    timeouts: Timeouts | None = None,
) -> ClientAssociation:
    """Open an association proposing ``contexts`` (abstract syntax, transfer syntaxes)."""
    timeouts = timeouts or Timeouts()
    rq = build_request(calling_ae, called_ae, contexts, max_pdu_length=max_pdu_length, roles=roles)
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
    event = await assoc.next_event()
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

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        assert assoc.negotiated is not None
        self.negotiated = assoc.negotiated
        self._last_id = 0

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
        """1..65535, wrapping (Message ID is a US, PS3.7 E.1; 0 is avoided)."""
        self._last_id = self._last_id % 0xFFFF + 1
        return self._last_id

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
                if self.assoc.outcome is Outcome.TIMEOUT:
                    await self.assoc.wait_closed()
                    raise AssociationTimeout(f"no response within {self.assoc.timeouts.dimse:g} s")
                self.abort()
                raise AssociationAborted(_ended(self.assoc, item))

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
        return rsp

    async def echo(self) -> int:
        """C-ECHO (PS3.7 9.1.5); returns the response status."""
        context = self.negotiated.context_for(VERIFICATION)
        if context is None:
            raise AssociationAborted("the peer did not accept the Verification SOP class")
        rsp = await self.request(
            context.id,
            CEchoRq(message_id=self.next_message_id(), affected_sop_class_uid=VERIFICATION),
        )
        if not isinstance(rsp, CEchoRsp):
            raise AssociationAborted(f"unexpected {type(rsp).__name__} in answer to C-ECHO-RQ")
        return rsp.status

    async def release(self) -> None:
        await self.assoc.release()

    def abort(self) -> None:
        self.assoc.abort()
        self.assoc.conn.close()


ECHO_CONTEXTS: Sequence[tuple[str, Sequence[str]]] = ((VERIFICATION, (IMPLICIT_VR_LE,)),)
