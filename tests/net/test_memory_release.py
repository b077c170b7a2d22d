"""The memory a burst of connections took goes back once it is over
(:mod:`archive.net.memory`): the rule on a real loop, then a real ``archive serve``
after a storm of half-sent data sets."""

from __future__ import annotations

import asyncio
import ctypes
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from archive.dicom.dimse import CStoreRq, command_pdus
from archive.dicom.uids import EXPLICIT_VR_LE
from archive.dicom.ul.pdata import p_data_header
from archive.net.memory import BurstRelease, give_back_memory
from tests.conftest import fd_limit_at_least
from tests.interop.conftest import free_port
from tests.net.rawpeer import associate_rq
from tests.store.helpers import CT_IMAGE, HOST, pid_rss, serve, terminate

QUIET = 0.05


def run_with(steps: list[tuple[str, int]], peak: int = 8) -> list[int]:
    """Open and close connections as ``steps`` say ("open"/"close" N times, or
    "wait" N quiet periods); the number of connections open at each give-back."""

    async def main() -> list[int]:
        open_now = [0]
        given: list[int] = []
        release = BurstRelease(lambda: given.append(open_now[0]), peak=peak, quiet=QUIET)
        for what, n in steps:
            for _ in range(n):
                if what == "open":
                    open_now[0] += 1
                    release.opened(open_now[0])
                elif what == "close":
                    open_now[0] -= 1
                    release.closed(open_now[0])
            if what == "wait":
                await asyncio.sleep(n * QUIET * 1.5)
                await asyncio.sleep(0.05)  # the executor's call has run
        return given

    return asyncio.run(main())


def test_memory_goes_back_once_a_burst_is_over() -> None:
    assert run_with([("open", 8), ("close", 8), ("wait", 1)]) == [0]


def test_not_before_the_quiet_period() -> None:
    assert run_with([("open", 8), ("close", 8)]) == []


def test_a_small_peak_keeps_its_memory() -> None:
    assert run_with([("open", 7), ("close", 7), ("wait", 2)]) == []


def test_a_fall_to_a_quarter_of_the_peak_is_enough() -> None:
    """A monitor's association held open does not keep a storm's memory."""
    assert run_with([("open", 8), ("close", 6), ("wait", 1)]) == [2]
    assert run_with([("open", 8), ("close", 5), ("wait", 2)]) == []


def test_a_new_storm_before_the_quiet_period_ends_keeps_the_memory() -> None:
    steps = [("open", 8), ("close", 8), ("open", 8), ("wait", 2), ("close", 8), ("wait", 1)]
    assert run_with(steps) == [0]  # once, after the second storm


def test_a_connection_coming_and_going_does_not_hold_it_off() -> None:
    steps = [("open", 8), ("close", 8), ("open", 1), ("close", 1), ("open", 1), ("wait", 1)]
    assert run_with(steps) == [1]


def test_a_monitor_coming_and_going_does_not_put_the_tail_s_give_back_off() -> None:
    # A review: with fewer than 4 outliving a give-back, a quarter of the new
    # peak was 0, and every new connection cancelled the tail's timer: one that
    # came more often than the quiet time put it off for good.
    steps = [("open", 16), ("close", 13), ("wait", 1), ("close", 3), ("open", 1), ("wait", 1)]
    assert run_with(steps) == [3, 1]


def test_the_tail_s_give_back_is_the_last() -> None:
    # The monitor open at the tail's give-back does not make a third one.
    steps = [("open", 16), ("close", 13), ("wait", 1), ("close", 3), ("open", 1), ("wait", 1)]
    assert run_with([*steps, ("close", 1), ("wait", 1)]) == [3, 1]


def test_what_outlived_a_give_back_goes_back_when_the_last_connection_ends() -> None:
    """What stayed open is the new peak; a fall from it gives nothing back until
    the last of those ends, then once, and no more after."""
    steps = [("open", 16), ("close", 12), ("wait", 1), ("close", 3), ("wait", 2)]
    assert run_with(steps) == [4]
    steps = [("open", 16), ("close", 12), ("wait", 1), ("close", 4), ("wait", 1)]
    assert run_with(steps) == [4, 0]
    steps += [("open", 1), ("close", 1), ("wait", 2)]
    assert run_with(steps) == [4, 0]


def glibc() -> bool:
    return hasattr(ctypes.CDLL(None), "malloc_trim")


needs_glibc = pytest.mark.skipif(not glibc(), reason="no malloc_trim: not glibc")


@needs_glibc
def test_give_back_memory_runs_here() -> None:
    assert give_back_memory()  # glibc: malloc_trim(0) says it released something


#: Half-sent data sets in the storm: each holds a full 256 KiB PDU in the node.
STORM = 400
PDU_DATA = 262138  # the node's Maximum Length Received less the PDV header


def _data_set_start(uid: str) -> bytes:
    """The first PDU_DATA bytes of a CT data set in Explicit VR LE: its two UIDs,
    then Pixel Data (OW) of 1 MB, begun (a refused one frees its buffer at once)."""
    head = b"".join(
        struct.pack("<HH2sH", 0x0008, element, b"UI", len(value)) + value
        for element, value in ((0x0016, CT_IMAGE.encode() + b"\0"), (0x0018, _even(uid)))
    )
    head += struct.pack("<HH2s2xL", 0x7FE0, 0x0010, b"OW", 1 << 20)
    return head + bytes(PDU_DATA - len(head))


def _even(uid: str) -> bytes:
    value = uid.encode()
    return value + b"\0" * (len(value) % 2)


@pytest.fixture
def enough_fds() -> Iterator[None]:
    """The node (~64 + 4 a connection: ``association_budget``) and the storm's
    client sockets: raise the soft limit, which the node inherits."""
    with fd_limit_at_least(64 + 4 * (STORM + 50) + STORM + 256):
        yield


@needs_glibc
@pytest.mark.usefixtures("enough_fds")
def test_a_storm_s_memory_goes_back_to_the_system(tmp_path: Path) -> None:
    """400 associations each send a C-STORE-RQ and one full PDU of its data set,
    stay open, then drop: the node took 100 MB or more for them, and glibc
    would keep it for good (all of it, measured without the give-back); it must
    be back to near where it started a few quiet seconds later."""
    port = free_port()
    config = tmp_path / "node.toml"
    config.write_text(f"[association]\nmax_associations = {STORM + 50}\n")
    proc = serve(tmp_path / "data", port, tmp_path / "node.log", config=config)
    socks: list[socket.socket] = []
    try:
        idle, _ = pid_rss(proc.pid)
        rq = associate_rq(contexts=((CT_IMAGE, (EXPLICIT_VR_LE,)),))
        for n in range(STORM):
            s = socket.create_connection((HOST, port), timeout=10)
            socks.append(s)
            s.sendall(rq)
            assert s.recv(1)[0] == 0x02  # A-ASSOCIATE-AC
            store = CStoreRq(
                message_id=1,
                affected_sop_class_uid=CT_IMAGE,
                affected_sop_instance_uid=f"1.2.3.{n + 1}",
            )
            (command,) = command_pdus(1, store, 16384)
            body = _data_set_start(store.affected_sop_instance_uid)
            s.sendall(command + p_data_header(1, 0, len(body)) + body)
        deadline = time.monotonic() + 20
        while pid_rss(proc.pid)[0] < idle + 80e6 and time.monotonic() < deadline:
            time.sleep(0.1)
        stormy, _ = pid_rss(proc.pid)
        assert stormy > idle + 80e6, (idle, stormy)  # the storm is in memory
        for s in socks:
            s.close()
        deadline = time.monotonic() + 20
        while pid_rss(proc.pid)[0] > idle + 30e6 and time.monotonic() < deadline:
            time.sleep(0.2)
        after, _ = pid_rss(proc.pid)
        assert after < idle + 30e6, (idle, stormy, after)
    finally:
        for s in socks:
            s.close()
        terminate(proc)
