"""A C-FIND, C-MOVE or C-GET running on an association while the driver keeps reading.

Such an operation can last minutes and answers with many pending responses, and
the peer may cancel it (C-CANCEL-RQ, PS3.7 9.3.2.3) or, for C-GET, answer the
C-STORE sub-operations we send on its association (PS3.4 C.4.3.3). So the server
runs the provider in a task of its own and goes on reading; what it reads for the
operation comes here: :meth:`Operation.deliver` sets the cancel flag or resolves
the sub-operation waiting for that C-STORE-RSP.

The identifier is read whole before the operation starts
(``Association.read_dataset``): it is small (a few hundred bytes), bounded by
:data:`MAX_IDENTIFIER`, and the provider needs all of it before it can do
anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence

from archive.dicom.dimse import (
    CCancelRq,
    Command,
    CStoreRq,
    CStoreRsp,
)
from archive.dicom.errors import LocalProtocolError
from archive.dicom.ul.negotiation import AcceptedContext
from archive.net.association import (
    Association,
    AssociationAborted,
    AssociationTimeout,
    MessageIds,
)
from archive.services import Cancel

log = logging.getLogger("archive.retrieve")

#: Largest C-FIND/C-MOVE/C-GET identifier we read (bytes). Real ones are under
#: 2 KiB; this only stops a peer from making us buffer without end.
MAX_IDENTIFIER = 1 << 20


class GetChannel:
    """C-STORE sub-operations on the requesting association (C-GET), as a StoreTarget.

    We are the requestor of these messages, so their Message IDs are ours to
    choose (PS3.7 9.1.1.1.1); a response is matched to its request by Message ID
    Being Responded To.
    """

    def __init__(self, assoc: Association, dimse_timeout: float) -> None:
        self._assoc = assoc
        self._timeout = dimse_timeout
        self._pending: dict[int, asyncio.Future[CStoreRsp]] = {}
        self._message_ids = MessageIds()
        #: loop.time() of the last C-STORE-RSP: see store().
        self._answered_at = 0.0
        negotiated = assoc.negotiated
        assert negotiated is not None
        # The peer may act as SCP on a context only if role selection gave it
        # the SCP role (PS3.7 D.3.3.4); without it, sub-operations cannot go.
        self._contexts = [c for c in negotiated.contexts.values() if c.scp_role]
        #: Sub-operations we may have in flight: what our reply allows the peer to
        #: perform at once (PS3.7 D.3.3.3); 1 unless the peer proposed a window.
        self.window = max(1, negotiated.async_ops[1])

    def store_contexts(self) -> Sequence[AcceptedContext]:
        return self._contexts

    def next_message_id(self) -> int:
        return self._message_ids.next()

    async def store(
        self, context_id: int, command: CStoreRq, chunks: AsyncIterator[bytes | memoryview]
    ) -> CStoreRsp:
        waiter: asyncio.Future[CStoreRsp] = asyncio.get_running_loop().create_future()
        self._pending[command.message_id] = waiter
        try:
            try:
                await self._assoc.send_streaming(context_id, command, chunks)
            except LocalProtocolError:
                if self._assoc.ul.can_send_data:
                    raise  # a bug of ours
                # Another sub-operation's timeout aborted the association while
                # this one was sending: not an internal error.
                raise AssociationAborted(
                    "association aborted during a C-STORE sub-operation"
                ) from None
            except OSError as exc:
                # The file failed in the middle of its C-STORE (unreadable, or a
                # data set the conversion cannot follow): a message cannot be
                # left half sent (PS3.8 7.3), so the caller's association ends.
                # Not an internal error, and the rest of the C-GET cannot go on.
                detail = f"a file failed while it was sent: {exc}"
                log.warning("C-GET: the file of instance %s failed while it was sent: %s;"
                            " the association is aborted",
                            command.affected_sop_instance_uid, exc)  # fmt: skip
                self._assoc.abort(detail)
                raise AssociationAborted(detail) from exc
            # The DIMSE timeout measures the peer's silence, not this request's
            # age: with a window of N sub-operations in flight, answered in
            # order, the last one sent waits for the N-1 before it, and a peer
            # answering steadily must not be taken for a dead one (PS3.7 D.3.3.3).
            loop = asyncio.get_running_loop()
            sent_at = loop.time()
            while True:
                left = max(sent_at, self._answered_at) + self._timeout - loop.time()
                if left <= 0:
                    # Whether the peer stored the instance is unknown and the C-GET
                    # cannot go on: abort, so that the peer is told and the server
                    # logs the association as timed out rather than just closed.
                    detail = f"no C-STORE-RSP within {self._timeout:g} s on the C-GET association"
                    self._assoc.timed_out(detail)
                    raise AssociationTimeout(detail)
                done, _ = await asyncio.wait({waiter}, timeout=left)
                if done:
                    return waiter.result()
        finally:
            self._pending.pop(command.message_id, None)

    def deliver(self, rsp: CStoreRsp) -> bool:
        waiter = self._pending.get(rsp.message_id_being_responded_to)
        if waiter is None or waiter.done():
            return False
        self._answered_at = asyncio.get_running_loop().time()
        waiter.set_result(rsp)
        return True

    def close(self, reason: str) -> None:
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(AssociationAborted(reason))


class Operation:
    """One running C-FIND/C-MOVE/C-GET: its task, cancel flag and sub-operation channel."""

    def __init__(self, message_id: int, cancel: Cancel, channel: GetChannel | None) -> None:
        self.message_id = message_id
        self.cancel = cancel
        self.channel = channel
        #: The final response has gone out: the peer may send its next request
        #: before the task has quite finished.
        self.final_sent = False
        self.task: asyncio.Task[None]  # set by start()

    def start(self, coroutine: Coroutine[object, object, None]) -> Operation:
        self.task = asyncio.get_running_loop().create_task(coroutine)
        return self

    def deliver(self, command: Command) -> bool:
        """Take a command read while the operation runs; False if it is not for us."""
        if isinstance(command, CCancelRq):
            # A cancel for another Message ID (or a finished one) is ignored:
            # there is nothing it could stop (PS3.7 9.3.2.3).
            if command.message_id_being_responded_to == self.message_id:
                self.cancel.set()
            return True
        if isinstance(command, CStoreRsp):
            if self.channel is not None:
                self.channel.deliver(command)
            return True
        return False

    async def stop(self, reason: str) -> None:
        """The association is gone: end the task and fail its pending sub-operations."""
        if self.channel is not None:
            self.channel.close(reason)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
