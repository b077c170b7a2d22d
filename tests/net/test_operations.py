"""C-FIND/C-MOVE/C-GET as operations: the driver reads on while a provider runs.

The providers here are fakes (no index): what is under test is the driver's part,
C-CANCEL reaching a running operation, C-GET sub-operations sent on the caller's
association with their C-STORE-RSPs routed back, the idle timeout not firing
while we answer, and a second request during an operation ending the
association. Our SCU is the peer; pynetdicom's and DCMTK's are in tests/interop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from archive.config import Config, parse_config
from archive.dicom import uids
from archive.dicom.dimse import (
    CEchoRq,
    CFindRq,
    CFindRsp,
    CGetRq,
    CGetRsp,
    CommandReceived,
    CStoreRq,
    DatasetFragment,
    Status,
)
from archive.dicom.errors import AbortSource
from archive.dicom.ul.negotiation import default_acceptor_policy
from archive.dicom.ul.pdu import AAbort, RoleSelection
from archive.net import Timeouts, associate, serving
from archive.services import Registry, Request, Response, c_echo
from archive.services.base import Provider

CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = uids.STUDY_ROOT_QR_FIND
GET = uids.STUDY_ROOT_QR_GET
ECHO = uids.VERIFICATION
ELE = uids.EXPLICIT_VR_LE
SHORT = Timeouts(artim=3.0, network=2.0, dimse=5.0, connect=3.0)


def config() -> Config:
    return parse_config(
        '[node]\nhost = "127.0.0.1"\nport = 0\n'
        "[timeouts]\nnetwork = 1.0\nartim = 3.0\ndimse = 5.0\n"
    )


def slow_find(
    ticks: list[int], matches: int = 1000, pause: float = 0.01, identifier: bytes | None = b"IDENT!"
) -> Provider:
    """Pending responses every ``pause`` s until cancelled; ``ticks`` records them."""

    async def provider(request: Request) -> AsyncIterator[Response]:
        command = request.command
        assert isinstance(command, CFindRq)
        if identifier is not None:
            assert request.identifier == identifier
        assert request.cancel is not None
        for n in range(matches):
            if request.cancel.requested:
                yield Response(CFindRsp(message_id_being_responded_to=command.message_id,
                                        status=Status.CANCEL))  # fmt: skip
                return
            await asyncio.sleep(pause)
            ticks.append(n)
            yield Response(
                CFindRsp(message_id_being_responded_to=command.message_id,
                         status=Status.PENDING, has_dataset=True),
                b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ",
            )  # fmt: skip
        yield Response(CFindRsp(message_id_being_responded_to=command.message_id, status=0))

    return provider


def test_cancel_stops_a_running_find() -> None:
    ticks: list[int] = []

    async def main() -> list[int]:
        registry = Registry({CFindRq: slow_find(ticks), CEchoRq: c_echo})
        cfg = config()
        async with serving(cfg, default_acceptor_policy(cfg), registry) as server:
            assoc = await associate("127.0.0.1", server.port, calling_ae="SCU",
                                    called_ae="ARCHIVE",
                                    contexts=[(FIND, [ELE]), (uids.VERIFICATION, [ELE])],
                                    timeouts=SHORT)  # fmt: skip
            statuses: list[int] = []
            async with assoc:
                ctx = assoc.negotiated.context_for(FIND)
                assert ctx is not None
                async for rsp, _data in assoc.find(ctx.id, b"IDENT!"):
                    statuses.append(rsp.status)
                    if len(statuses) == 5:
                        await assoc.cancel()
                # The association is still usable after the cancel.
                assert await assoc.echo() == 0
            return statuses

    statuses = asyncio.run(main())
    assert statuses[-1] == Status.CANCEL
    assert all(s == Status.PENDING for s in statuses[:-1])
    # At most a response or two were in flight when the cancel arrived.
    assert 5 <= len(statuses) - 1 <= 8
    assert len(ticks) < 12


def test_idle_timeout_does_not_fire_during_a_long_operation() -> None:
    """network = 1 s, and the operation answers for ~1.5 s without a PDU from the peer."""
    ticks: list[int] = []

    async def main() -> list[int]:
        registry = Registry({CFindRq: slow_find(ticks, matches=15, pause=0.1)})
        cfg = config()
        async with serving(cfg, default_acceptor_policy(cfg), registry) as server:
            assoc = await associate("127.0.0.1", server.port, calling_ae="SCU",
                                    called_ae="ARCHIVE", contexts=[(FIND, [ELE])],
                                    timeouts=SHORT)  # fmt: skip
            async with assoc:
                ctx = assoc.negotiated.context_for(FIND)
                assert ctx is not None
                return [rsp.status async for rsp, _ in assoc.find(ctx.id, b"IDENT!")]

    statuses = asyncio.run(main())
    assert statuses == [Status.PENDING] * 15 + [Status.SUCCESS]


def fake_get(payload: bytes, count: int) -> Provider:
    """C-GET sending ``count`` C-STORE sub-operations through request.channel."""

    async def provider(request: Request) -> AsyncIterator[Response]:
        command = request.command
        assert isinstance(command, CGetRq)
        channel = request.channel
        assert channel is not None
        (context,) = [c for c in channel.store_contexts() if c.abstract_syntax == CT]
        completed = failed = 0
        for n in range(count):

            async def chunks() -> AsyncIterator[bytes]:
                yield payload[:10]
                yield payload[10:]

            rsp = await channel.store(
                context.id,
                CStoreRq(message_id=channel.next_message_id(), affected_sop_class_uid=CT,
                         affected_sop_instance_uid=f"1.2.3.{n}"),
                chunks(),
            )  # fmt: skip
            if rsp.status == 0:
                completed += 1
            else:
                failed += 1
            yield Response(CGetRsp(message_id_being_responded_to=command.message_id,
                                   status=Status.PENDING,
                                   number_of_remaining_suboperations=count - n - 1,
                                   number_of_completed_suboperations=completed,
                                   number_of_failed_suboperations=failed,
                                   number_of_warning_suboperations=0))  # fmt: skip
        final = Status.SUBOPERATIONS_COMPLETE_WITH_FAILURES if failed else Status.SUCCESS
        yield Response(CGetRsp(message_id_being_responded_to=command.message_id,
                               status=final,
                               number_of_completed_suboperations=completed,
                               number_of_failed_suboperations=failed,
                               number_of_warning_suboperations=0))  # fmt: skip

    return provider


def test_get_suboperations_on_the_callers_association() -> None:
    payload = bytes(range(256)) * 40

    async def main() -> tuple[list[tuple[int, int | None]], list[tuple[str, bytes]]]:
        registry = Registry({CGetRq: fake_get(payload, 4)})
        cfg = config()
        received: list[tuple[str, bytes]] = []

        async def on_store(rq: CStoreRq, ts: str, fragments: AsyncIterator[memoryview]) -> int:
            data = b"".join([bytes(f) async for f in fragments])
            received.append((rq.affected_sop_instance_uid, data))
            return 0 if len(received) != 3 else 0xA700  # the third one fails

        async with serving(cfg, default_acceptor_policy(cfg), registry) as server:
            assoc = await associate(
                "127.0.0.1", server.port, calling_ae="SCU", called_ae="ARCHIVE",
                contexts=[(GET, [ELE]), (CT, [ELE])],
                roles=[RoleSelection(CT, scu_role=False, scp_role=True)],
                timeouts=SHORT,
            )  # fmt: skip
            async with assoc:
                ctx = assoc.negotiated.context_for(GET)
                assert ctx is not None
                responses = [
                    (rsp.status, rsp.number_of_failed_suboperations)
                    async for rsp, _ in assoc.get(ctx.id, b"IDENT!", on_store)
                ]
        return responses, received

    responses, received = asyncio.run(main())
    assert [uid for uid, _ in received] == ["1.2.3.0", "1.2.3.1", "1.2.3.2", "1.2.3.3"]
    assert all(data == payload for _, data in received)
    assert responses == [(0xFF00, 0), (0xFF00, 0), (0xFF00, 1), (0xFF00, 1), (0xB000, 1)]


def test_a_second_request_while_an_operation_runs_aborts() -> None:
    """The (1, 1) asynchronous operations window broken: the association ends with
    an A-ABORT at once, instead of the server waiting without reading."""
    ticks: list[int] = []

    async def main() -> tuple[object, float]:
        registry = Registry({CFindRq: slow_find(ticks, pause=0.05), CEchoRq: c_echo})
        cfg = config()
        async with serving(cfg, default_acceptor_policy(cfg), registry) as server:
            client = await associate("127.0.0.1", server.port, calling_ae="SCU",
                                     called_ae="ARCHIVE",
                                     contexts=[(FIND, [ELE]), (uids.VERIFICATION, [ELE])],
                                     timeouts=SHORT)  # fmt: skip
            find = client.negotiated.context_for(FIND)
            echo = client.negotiated.context_for(uids.VERIFICATION)
            assert find is not None
            assert echo is not None
            started = time.monotonic()
            rq = CFindRq(message_id=1, affected_sop_class_uid=FIND)
            await client.assoc.send(find.id, rq, b"IDENT!")
            await client.assoc.send(echo.id, CEchoRq(message_id=2, affected_sop_class_uid=ECHO))
            while True:
                item = await client.assoc.receive(timeout=5.0)
                if not isinstance(item, CommandReceived | DatasetFragment):
                    client.abort()
                    return item, time.monotonic() - started

    ended, seconds = asyncio.run(main())
    assert isinstance(ended, AAbort)
    assert ended.source == AbortSource.SERVICE_USER
    assert seconds < 2.0  # the 1,000-match query would take 50 s


def test_a_burst_of_pending_responses_goes_out_in_one_write(monkeypatch: Any) -> None:
    """Matches yielded without a pause (a page of C-FIND results) are written together,
    in order, with the final response that follows them."""
    from archive.net.connection import Connection

    writes: list[int] = []
    original = Connection.write

    def counting(self: Connection, chunks: list[bytes | memoryview]) -> None:
        writes.append(sum(len(c) for c in chunks))
        original(self, chunks)

    async def burst(request: Request) -> AsyncIterator[Response]:
        command = request.command
        assert isinstance(command, CFindRq)
        for n in range(40):
            yield Response(
                CFindRsp(message_id_being_responded_to=command.message_id,
                         status=Status.PENDING, has_dataset=True),
                b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY " + bytes([n]) * 2,
            )  # fmt: skip
        yield Response(CFindRsp(message_id_being_responded_to=command.message_id, status=0))

    async def main() -> list[bytes | None]:
        registry = Registry({CFindRq: burst})
        cfg = config()
        async with serving(cfg, default_acceptor_policy(cfg), registry) as server:
            assoc = await associate("127.0.0.1", server.port, calling_ae="SCU",
                                    called_ae="ARCHIVE", contexts=[(FIND, [ELE])],
                                    timeouts=SHORT)  # fmt: skip
            async with assoc:
                ctx = assoc.negotiated.context_for(FIND)
                assert ctx is not None
                monkeypatch.setattr(Connection, "write", counting)
                got = [data async for _rsp, data in assoc.find(ctx.id, b"IDENT!")]
                monkeypatch.setattr(Connection, "write", original)
                return got

    got = asyncio.run(main())
    assert got[:-1] == [b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY " + bytes([n]) * 2
                        for n in range(40)]  # fmt: skip
    assert got[-1] is None
    # Our SCU's C-FIND-RQ is one write; the 40 matches and the final response one more
    # (without coalescing: 41).
    assert len(writes) == 2, writes


def test_matches_stop_when_the_scu_stops_reading() -> None:
    """Pending responses are written with flow control: an SCU that reads nothing
    holds back the query (its buffers fill, the provider waits), and after the
    network timeout (1 s here) the association is aborted, instead of every match
    piling up in our memory."""
    import socket

    from archive.dicom.dimse import message_pdus
    from tests.net.rawpeer import RawPeer

    yielded: list[int] = []
    total = 100_000

    async def endless(request: Request) -> AsyncIterator[Response]:
        command = request.command
        assert isinstance(command, CFindRq)
        for n in range(total):
            yielded.append(n)
            yield Response(
                CFindRsp(message_id_being_responded_to=command.message_id,
                         status=Status.PENDING, has_dataset=True),
                b"\x08\x00\x52\x00\xe8\x03\x00\x00" + b"S" * 1000,
            )  # fmt: skip
        yield Response(CFindRsp(message_id_being_responded_to=command.message_id, status=0))

    def silent_scu(port: int) -> float:
        with RawPeer("127.0.0.1", port, timeout=10.0) as peer:
            peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            peer.associate(contexts=[(FIND, [ELE])])
            rq = CFindRq(message_id=1, affected_sop_class_uid=FIND)
            for pdu in message_pdus(1, rq, b"IDENT!", 16384):
                peer.send(bytes(pdu))
            time.sleep(2.5)  # reads nothing meanwhile
            closed_at, _ = peer.wait_closed(timeout=10.0)
            return closed_at - peer.connected_at

    async def main() -> float:
        registry = Registry({CFindRq: endless})
        cfg = config()
        async with serving(cfg, default_acceptor_policy(cfg), registry) as server:
            return await asyncio.to_thread(silent_scu, server.port)

    lasted = asyncio.run(main())
    assert len(yielded) < total // 5, len(yielded)  # held back, not all buffered (was: all)
    assert lasted < 10.0
