"""Load limits: the association cap under a burst, memory, and many busy associations.

The server runs in this process (tests/conftest.py), so its memory is ours:
VmRSS from /proc/self/status measures it, with pytest's share held constant.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import selectors
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from archive.dicom.ul import codec
from archive.dicom.ul.pdu import AAssociateAc, AAssociateRj
from archive.net import ECHO_CONTEXTS, AssociationRejected, Timeouts, associate
from tests.conftest import RunningNode, fd_limit_at_least
from tests.net.rawpeer import (
    A_RELEASE_RQ,
    RawPeer,
    associate_rq,
    echo_pdu,
    pynetdicom_echo,
    rj_bytes,
    wait_until,
)

NodeFactory = Callable[..., RunningNode]
BURST = 500
LIMIT = 20
#: Rejected-transient, service provider (presentation), local limit exceeded.
RJ_LIMIT = rj_bytes(2, 3, 2)
A_RELEASE_RP = bytes.fromhex("06 00 00000004 00000000")

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture
def enough_fds() -> Iterator[None]:
    """Both ends of BURST connections live in this process: raise the soft fd limit."""
    with fd_limit_at_least(2 * BURST + 256):
        yield


def active(node: RunningNode) -> int:
    server = node.server
    assert server is not None
    return int(node.call(lambda: server.active))


def read_answers(socks: list[socket.socket], timeout: float) -> dict[socket.socket, bytes]:
    """The first PDU (raw) on each socket, read concurrently with a selector."""
    buffers = {sock: bytearray() for sock in socks}
    answers: dict[socket.socket, bytes] = {}
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while len(answers) < len(socks):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in selector.select(left):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                try:
                    chunk = ready.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionResetError:
                    chunk = b""
                buf = buffers[ready]
                buf += chunk
                if len(buf) >= 6 and len(buf) >= 6 + struct.unpack_from(">L", buf, 2)[0]:
                    answers[ready] = bytes(buf[: 6 + struct.unpack_from(">L", buf, 2)[0]])
                    selector.unregister(ready)
                elif not chunk:
                    answers[ready] = bytes(buf)  # closed without a whole PDU
                    selector.unregister(ready)
    return answers


def test_association_limit_is_exact(node_factory: NodeFactory) -> None:
    """LIMIT associations open; the next one is refused; after a release it fits again."""
    node = node_factory(toml=f"[association]\nmax_associations = {LIMIT}\n")
    peers = [RawPeer(node.host, node.port) for _ in range(LIMIT)]
    try:
        for peer in peers:
            assert isinstance(peer.associate(), AAssociateAc)
        with RawPeer(node.host, node.port) as extra:
            extra.send(associate_rq())
            raw = extra.recv_pdu()
            assert raw == RJ_LIMIT
            assert codec.decode(raw) == AAssociateRj(2, 3, 2)
        wait_until(lambda: active(node) == LIMIT, 3.0, "rejected connection gone")
        peers[0].send(A_RELEASE_RQ)
        assert peers[0].recv_pdu() == A_RELEASE_RP
        peers[0].close()
        wait_until(lambda: active(node) == LIMIT - 1, 3.0, "released association gone")
        with RawPeer(node.host, node.port) as extra:
            assert isinstance(extra.associate(), AAssociateAc)
    finally:
        for peer in peers:
            peer.close()


def test_a_rejected_request_left_open_does_not_hold_a_slot(node_factory: NodeFactory) -> None:
    """A request rejected for the limit is no association: its connection, left
    open by a peer that does not close after the A-ASSOCIATE-RJ (ARTIM closes it
    later), must not count against the limit meanwhile, or a flood of rejected
    requests locks real callers out for ARTIM's length."""
    node = node_factory(toml="[association]\nmax_associations = 1\n[timeouts]\nartim = 30.0\n")
    with RawPeer(node.host, node.port) as held:
        assert isinstance(held.associate(), AAssociateAc)
        lingering = [RawPeer(node.host, node.port) for _ in range(3)]
        try:
            for peer in lingering:
                peer.send(associate_rq())
                assert peer.recv_pdu() == RJ_LIMIT  # and the peer keeps the connection
            wait_until(lambda: active(node) == 1, 3.0, "rejected requests not counted")
            held.send(A_RELEASE_RQ)
            assert held.recv_pdu() == A_RELEASE_RP
        except BaseException:
            for peer in lingering:
                peer.close()
            raise
    try:
        wait_until(lambda: active(node) == 0, 3.0, "released association gone")
        with RawPeer(node.host, node.port) as next_caller:
            assert isinstance(next_caller.associate(), AAssociateAc)
    finally:
        for peer in lingering:
            peer.close()


def test_burst_of_500_connections(node_factory: NodeFactory, enough_fds: None) -> None:
    node = node_factory(
        toml=f"[association]\nmax_associations = {LIMIT}\n[timeouts]\nartim = 5.0\n"
    )
    rq = associate_rq()
    before = rss_bytes()
    socks: list[socket.socket] = []
    try:
        for _ in range(BURST):
            sock = socket.create_connection((node.host, node.port), timeout=5)
            sock.sendall(rq)
            socks.append(sock)
        answers = read_answers(socks, timeout=20)
        peak = rss_bytes()
        assert len(answers) == BURST, f"{BURST - len(answers)} connections got no answer"
        accepted = [s for s, raw in answers.items() if isinstance(codec.decode(raw), AAssociateAc)]
        rejected = [s for s, raw in answers.items() if raw == RJ_LIMIT]
        assert len(accepted) + len(rejected) == BURST
        assert len(accepted) <= LIMIT
        # Release the accepted ones properly, drop the others.
        for sock in accepted:
            sock.setblocking(True)
            sock.settimeout(5)
            sock.sendall(A_RELEASE_RQ)
        released = read_answers(accepted, timeout=10)
        assert all(raw == A_RELEASE_RP for raw in released.values())
        assert len(released) == len(accepted)
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: active(node) == 0, 10.0, "all connections gone")
    assert pynetdicom_echo(node.host, node.port) == 0x0000
    grown = peak - before
    assert grown < 50 * 1024 * 1024, f"RSS grew by {grown / 1e6:.1f} MB"


def test_50_concurrent_associations_of_100_echoes(node_factory: NodeFactory) -> None:
    node = node_factory(toml="[association]\nmax_associations = 64\n")
    timeouts = Timeouts(artim=10.0, network=10.0, dimse=10.0, connect=10.0)

    async def one(index: int) -> list[int]:
        async with await associate(
            node.host,
            node.port,
            calling_ae=f"SCU{index:02d}",
            called_ae="ARCHIVE",
            contexts=ECHO_CONTEXTS,
            timeouts=timeouts,
        ) as assoc:
            return [await assoc.echo() for _ in range(100)]

    async def main() -> list[list[int]]:
        async with asyncio.timeout(45):
            return await asyncio.gather(*(one(i) for i in range(50)))

    start = time.monotonic()
    results = asyncio.run(main())
    elapsed = time.monotonic() - start
    assert len(results) == 50
    assert all(statuses == [0x0000] * 100 for statuses in results)
    wait_until(lambda: active(node) == 0, 5.0, "all associations released")
    assert elapsed < 30.0


def test_our_scu_sees_limit_rejection(node_factory: NodeFactory) -> None:
    """The typed SCU error carries the RJ values of the association limit."""
    node = node_factory(toml="[association]\nmax_associations = 1\n")
    timeouts = Timeouts(artim=3.0, network=3.0, dimse=3.0, connect=3.0)

    async def main() -> None:
        async with await associate(
            node.host,
            node.port,
            calling_ae="FIRST",
            called_ae="ARCHIVE",
            contexts=ECHO_CONTEXTS,
            timeouts=timeouts,
        ) as first:
            assert await first.echo() == 0x0000
            with pytest.raises(AssociationRejected) as info:
                await associate(
                    node.host,
                    node.port,
                    calling_ae="SECOND",
                    called_ae="ARCHIVE",
                    contexts=ECHO_CONTEXTS,
                    timeouts=timeouts,
                )
            assert info.value.rj == AAssociateRj(2, 3, 2)
            assert str(info.value) == (
                "rejected-transient, service provider (presentation): local limit exceeded"
            )

    asyncio.run(main())


def server_side_connections(port: int) -> int:
    """TCP connections (not the listener) whose local port is ``port``, from /proc."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                if int(local.rsplit(":", 1)[1], 16) == port and state != "0A":  # 0A: LISTEN
                    count += 1
    return count


def test_a_peer_that_never_reads_is_cut_off(node_factory: NodeFactory) -> None:
    """A peer sends requests and reads none of the answers: once the answers have
    waited the network timeout, the node cuts the connection (RST), not only its
    association. A close alone waits for the peer to read what is queued: each
    such peer kept a server socket open for good, beyond max_associations."""
    node = node_factory(toml="[timeouts]\nartim = 1\nnetwork = 1\n")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    try:
        sock.connect((node.host, node.port))
        sock.settimeout(5)
        sock.sendall(associate_rq())
        assert sock.recv(1) == b"\x02"  # A-ASSOCIATE-AC (the rest is never read)
        echoes = b"".join(echo_pdu(1, i + 1) for i in range(1000))
        sock.settimeout(0.2)
        cut = False
        deadline = time.monotonic() + 15
        while not cut and time.monotonic() < deadline:
            try:
                sock.send(echoes)
            except TimeoutError:
                pass
            except (ConnectionResetError, BrokenPipeError):
                cut = True
            else:
                time.sleep(0.01)
            cut = cut or server_side_connections(node.port) == 0
        assert cut, "the node still holds the connection"
        wait_until(lambda: server_side_connections(node.port) == 0, 5, "server socket gone")
        wait_until(lambda: active(node) == 0, 5, "association gone")
    finally:
        sock.close()


def test_a_descriptor_limit_lower_than_the_setting_caps_associations(tmp_path: Path) -> None:
    """Under ``ulimit -n 128`` (hard too), 200 associations cannot be served: two
    descriptors each (socket, QUICKACK's duplicate) ran out near 50, and the rest
    were closed unanswered. The node says so at start and accepts what fits
    ((128 - 64) / 4 = 16), rejecting the others as over the limit (2, 3, 2)."""
    from tests.interop.conftest import archive_command, free_port, stop, wait_listening

    port = free_port()
    log = tmp_path / "serve.log"
    config = tmp_path / "node.toml"
    config.write_text("[association]\nmax_associations = 200\n")

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*archive_command(), "serve", "--data", str(tmp_path / "data"), "--port",
             str(port), "--host", "127.0.0.1", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            preexec_fn=low_limit,
        )  # fmt: skip
    peers: list[RawPeer] = []
    try:
        wait_listening(port, proc, 20)
        answers = []
        for _ in range(60):
            peer = RawPeer("127.0.0.1", port)
            peers.append(peer)
            peer.send(associate_rq())
            answers.append(codec.decode(peer.recv_pdu()))
        accepted = [a for a in answers if isinstance(a, AAssociateAc)]
        assert len(accepted) == 16
        assert answers[16:] == [AAssociateRj(2, 3, 2)] * 44
        for peer in peers[:16]:
            peer.send(A_RELEASE_RQ)
            assert peer.recv_pdu() == A_RELEASE_RP
            peer.close()
        wait_until(lambda: pynetdicom_echo("127.0.0.1", port) == 0x0000, 10.0, "an echo")
    finally:
        for peer in peers:
            peer.close()
        stop(proc)
    text = log.read_text()
    assert "max_associations = 200 needs ~864 file descriptors" in text, text
    assert "at most 16 associations are accepted" in text


def test_an_association_that_streams_no_data_set_holds_one_descriptor(node: RunningNode) -> None:
    """The duplicate that re-arms QUICKACK is made for the first data set only:
    associations that echo or query, and requests rejected and left open, cost
    the node their socket alone (two each before: a limit of 1,024 descriptors
    served ~500 idle associations)."""

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = fds()
    peers = [RawPeer(node.host, node.port) for _ in range(20)]
    try:
        for peer in peers:
            assert isinstance(peer.associate(), AAssociateAc)
            peer.send(echo_pdu())
            peer.recv_pdu()
        wait_until(lambda: active(node) == 20, 3.0, "20 associations")
        # Ours and the node's end of each connection (the node runs in this process).
        assert fds() - before <= 2 * 20 + 3
    finally:
        for peer in peers:
            peer.close()
