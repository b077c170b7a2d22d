"""FAIR_TURN: an association hands out 32 items, then lets the loop serve others.

The yield must come before an item is taken: the server cancels a read when the
operation it raced ends first (``server._receive_during``), and a read cancelled
while it held an item lost that request (the peer then waited for an answer
until its timeout). Found by a review of the change, with the real
``Association.receive`` and ``_receive_during`` and only the socket stubbed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from archive.dicom.dimse import CommandReceived
from archive.dicom.ul import codec
from archive.dicom.ul.pdu import PDataTf
from archive.net import association
from archive.net.operation import Cancel, Operation
from archive.net.server import _receive_during
from tests.net.rawpeer import echo_pdu


class _Conn:
    quickack_on_read = False
    closed = False

    def quickack(self) -> None:
        pass


async def _race(turn_before: int) -> object:
    """The operation's last step and the peer's next request (a C-ECHO-RQ) land
    in one loop iteration, the request read after; ``turn_before`` items were
    handed out before."""
    assoc = association.Association(_Conn(), None, None)  # type: ignore[arg-type]
    assoc._turn = turn_before
    arrived: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    delivered: list[object] = []

    async def next_event(timeout: float | None = None) -> Any:  # the socket
        if delivered:
            await asyncio.Event().wait()
        event = await arrived
        delivered.append(event)
        return event

    assoc.next_event = next_event  # type: ignore[method-assign]
    pdata = codec.decode(echo_pdu(message_id=7))
    assert isinstance(pdata, PDataTf)

    async def last_steps() -> None:
        for _ in range(3):
            await asyncio.sleep(0)

    async def peer() -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        arrived.set_result(pdata)

    operation = Operation(1, Cancel(), None).start(last_steps())
    sender = asyncio.ensure_future(peer())
    got = await _receive_during(assoc, operation)
    if got is None:  # the operation ended first: the serve loop reads on
        got = await asyncio.wait_for(assoc.receive(), 1.0)
    await sender
    return got


@pytest.mark.parametrize("turn_before", [0, association.FAIR_TURN - 1, association.FAIR_TURN])
def test_a_read_cancelled_at_its_turn_loses_no_request(turn_before: int) -> None:
    got = asyncio.run(_race(turn_before))
    assert isinstance(got, CommandReceived)
    assert got.command.message_id == 7


def test_buffered_requests_are_served_a_turn_at_a_time() -> None:
    """A peer that sends requests without waiting for their answers (breaking the
    (1, 1) operations window) has ~1 MiB of them read ahead: they were all handed
    out without the loop running anything else (a probe's C-ECHO on another
    association waited 0.57 s median, 0.83 s at worst, in a review's run). With
    100 requests buffered, the others now get a turn every FAIR_TURN of them."""

    async def main() -> tuple[int, int]:
        assoc = association.Association(_Conn(), None, None)  # type: ignore[arg-type]
        burst = codec.decode(b"".join([echo_pdu(message_id=n) for n in range(1, 2)]))
        assert isinstance(burst, PDataTf)
        pdvs = list(burst.pdvs) * 100  # 100 C-ECHO-RQs, read already

        async def next_event(timeout: float | None = None) -> Any:
            await asyncio.Event().wait()  # nothing more from the socket

        assoc.next_event = next_event  # type: ignore[method-assign]
        assoc._pdvs.extend(pdvs)
        turns = 0
        stop = False

        async def other() -> None:  # another association's task
            nonlocal turns
            while not stop:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(other())
        await asyncio.sleep(0)
        before = turns
        served = 0
        for _ in range(100):
            item = await assoc.receive()
            assert isinstance(item, CommandReceived)
            served += 1
        stop = True
        await task
        return served, turns - before

    served, turns = asyncio.run(main())
    assert served == 100
    assert turns >= 100 // association.FAIR_TURN
