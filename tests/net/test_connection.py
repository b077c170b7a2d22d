"""The transport driver (archive/net/connection.py) with a fake transport: reads
into PDU buffers, timeouts while a PDU trickles in, end of stream mid-PDU."""

from __future__ import annotations

import asyncio
import struct
from typing import Any, cast

import pytest

from archive.dicom.ul.framing import FrameReader
from archive.dicom.ul.machine import Role, UpperLayer
from archive.net import connection as connection_module
from archive.net.connection import Connection

LENGTH = 200_000


class FakeTransport:
    def __init__(self) -> None:
        self.paused = 0
        self.resumed = 0
        self.queued = 0  # bytes the peer has not read yet
        self.closing = False
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.queued

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        self.resumed += 1


def connection(*, established: bool = True) -> Connection:
    ul = UpperLayer(Role.ACCEPTOR, 256 << 10)
    conn = Connection(ul, high_water=1 << 20)
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    # As once the association is established: P-DATA may get buffers of its own.
    conn._reader = FrameReader(256 << 10, lambda: established)
    return conn


def receive(conn: Connection, data: bytes) -> None:
    """What the loop does with ``data`` arriving: reads into get_buffer's buffers."""
    while data:
        buffer = conn.get_buffer(-1)
        n = min(len(buffer), len(data))
        buffer[:n] = data[:n]
        conn.buffer_updated(n)
        data = data[n:]


def p_data(length: int = LENGTH) -> bytes:
    return struct.pack(">BxL", 0x04, length) + b"\x01" * length


def test_a_pdu_trickling_in_keeps_an_idle_wait_alive_until_it_stops() -> None:
    async def main() -> tuple[float, float]:
        conn = connection()
        loop = asyncio.get_running_loop()
        data = p_data()
        receive(conn, data[:1000])  # the header: the rest now goes to its buffer
        start = loop.time()

        async def trickle() -> None:
            for k in range(1, 16):  # 0.75 s of 1 KB every 50 ms
                await asyncio.sleep(0.05)
                receive(conn, data[1000 * k : 1000 * (k + 1)])

        feeding = asyncio.ensure_future(trickle())
        timed_out = not await conn.wait_readable(0.3, per_read=True)
        waited = loop.time() - start
        assert timed_out, "no whole PDU arrived: the wait must end in a timeout"
        await feeding
        return waited, conn._partial_read_at - start

    waited, last_read = asyncio.run(main())
    # Not 0.3 s after the wait began: 0.3 s after the last byte arrived.
    assert last_read > 0.6
    assert last_read + 0.25 <= waited <= last_read + 0.6


def test_a_pdu_trickling_in_does_not_extend_a_fixed_deadline() -> None:
    """ARTIM and the other deadlines from entering a state: bytes must not move them."""

    async def main() -> float:
        conn = connection()
        loop = asyncio.get_running_loop()
        data = p_data()
        receive(conn, data[:1000])
        start = loop.time()

        async def trickle() -> None:
            for k in range(1, 16):
                await asyncio.sleep(0.05)
                receive(conn, data[1000 * k : 1000 * (k + 1)])

        feeding = asyncio.ensure_future(trickle())
        assert not await conn.wait_readable(0.3)
        waited = loop.time() - start
        await feeding
        return waited

    assert 0.25 <= asyncio.run(main()) <= 0.5


def test_a_whole_pdu_wakes_the_wait_and_reaches_the_machine_once() -> None:
    async def main() -> None:
        conn = connection()
        data = p_data()
        waiting = asyncio.ensure_future(conn.wait_readable(5))
        await asyncio.sleep(0)
        receive(conn, data[:70_000])
        await asyncio.sleep(0.01)
        assert not waiting.done()  # part of a PDU: nothing for the machine yet
        receive(conn, data[70_000:])
        assert await waiting
        assert conn.ul.buffered == len(data)

    asyncio.run(main())


def test_the_stream_ending_mid_pdu_hands_the_machine_what_was_read_once() -> None:
    async def main() -> None:
        conn = connection()
        data = p_data()
        receive(conn, data[:100_000])
        assert conn.ul.buffered == 0  # held in the PDU's buffer
        conn.eof_received()
        assert conn.ul.buffered == 100_000
        conn.connection_lost(None)
        assert conn.ul.buffered == 100_000  # not handed twice
        assert conn.closed

    asyncio.run(main())


def test_reading_pauses_over_the_high_water_mark_with_whole_pdus_only() -> None:
    async def main() -> None:
        conn = connection()
        transport = conn.transport
        assert isinstance(transport, FakeTransport)
        for _ in range(5):
            receive(conn, p_data())
        # 5 x 200 KB: under 1 MiB, no pause; the sixth goes over.
        assert transport.paused == 0
        receive(conn, p_data())
        assert transport.paused == 1

    asyncio.run(main())


def test_a_close_with_bytes_the_peer_does_not_read_is_cut_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """close() lets the transport write out what is queued, but not for good: a
    peer that reads nothing is cut (abort) after CLOSE_GRACE. One that reads, or
    a close with nothing queued, is never cut."""
    monkeypatch.setattr(connection_module, "CLOSE_GRACE", 0.05)

    async def scenario() -> None:
        stuck, drained, idle = connection(), connection(), connection()
        transports = [cast(FakeTransport, c.transport) for c in (stuck, drained, idle)]
        transports[0].queued = transports[1].queued = 1000
        for conn in (stuck, drained, idle):
            conn.close()
        assert [t.closing for t in transports] == [True, True, True]
        drained.connection_lost(None)  # the peer read it all: the transport is gone
        await asyncio.sleep(0.2)
        assert [t.aborted for t in transports] == [True, False, False]

    asyncio.run(scenario())
