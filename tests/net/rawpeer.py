"""A raw-socket DICOM peer for integration tests: exact bytes out, whole PDUs in.

Blocking ``socket`` with timeouts on every operation, so no test can hang. The
peer builds its PDUs with our own codec (:mod:`archive.dicom.ul.codec`) and can
bend them (protocol version, AE title bytes, lengths) to send what a broken or
hostile peer would. Received PDUs are returned as raw bytes, for assertions on
the wire format, and decoded with :func:`archive.dicom.ul.codec.decode`.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Sequence
from types import TracebackType

import msgspec

from archive.dicom.dimse import CEchoRq, command_pdus
from archive.dicom.uids import IMPLICIT_VR_LE, VERIFICATION
from archive.dicom.ul import codec
from archive.dicom.ul.negotiation import build_request
from archive.dicom.ul.pdata import MCH_COMMAND, MCH_LAST, p_data_header
from archive.dicom.ul.pdu import Pdu

__all__ = [
    "A_RELEASE_RQ",
    "ECHO_PROPOSAL",
    "PeerClosed",
    "RawPeer",
    "abort_bytes",
    "associate_rq",
    "echo_pdu",
    "p_data_pdu",
    "pynetdicom_echo",
    "rj_bytes",
    "wait_until",
]

#: One context: Verification in Implicit VR Little Endian.
ECHO_PROPOSAL: tuple[tuple[str, tuple[str, ...]], ...] = ((VERIFICATION, (IMPLICIT_VR_LE,)),)
#: A-RELEASE-RQ, PS3.8 9.3.6: type 05, reserved, length 4, 4 reserved bytes.
A_RELEASE_RQ = bytes.fromhex("05 00 00000004 00000000")


def abort_bytes(source: int, reason: int) -> bytes:
    """A-ABORT PDU, PS3.8 9.3.8: type 07, length 4, 2 reserved, source, reason."""
    return bytes((0x07, 0, 0, 0, 0, 4, 0, 0, source, reason))


def rj_bytes(result: int, source: int, reason: int) -> bytes:
    """A-ASSOCIATE-RJ PDU, PS3.8 9.3.4: type 03, length 4, reserved, result, source, reason."""
    return bytes((0x03, 0, 0, 0, 0, 4, 0, result, source, reason))


def associate_rq(
    calling_ae: str = "RAWPEER",
    called_ae: str = "ARCHIVE",
    contexts: Sequence[tuple[str, Sequence[str]]] = ECHO_PROPOSAL,
    *,
    max_pdu_length: int = 16384,
    protocol_version: int = 1,
) -> bytes:
    """An encoded A-ASSOCIATE-RQ (PS3.8 9.3.2), context IDs 1, 3, 5..."""
    rq = build_request(calling_ae, called_ae, contexts, max_pdu_length=max_pdu_length)
    if protocol_version != 1:
        rq = msgspec.structs.replace(rq, protocol_version=protocol_version)
    return codec.encode(rq)


def p_data_pdu(context_id: int, control: int, data: bytes) -> bytes:
    """One P-DATA-TF PDU holding one PDV (PS3.8 9.3.5)."""
    return p_data_header(context_id, control, len(data)) + data


def echo_pdu(context_id: int = 1, message_id: int = 1) -> bytes:
    """A C-ECHO-RQ command set in one P-DATA-TF (command and last bits set)."""
    (pdu,) = command_pdus(
        context_id,
        CEchoRq(message_id=message_id, affected_sop_class_uid=VERIFICATION),
        0,
    )
    assert pdu[11] == MCH_COMMAND | MCH_LAST
    return pdu


class PeerClosed(Exception):
    """The other side closed the connection (EOF or reset) before a whole PDU came."""

    def __init__(self, partial: bytes) -> None:
        super().__init__(f"connection closed after {len(partial)} byte(s) of a PDU")
        self.partial = partial


class RawPeer:
    """One blocking TCP connection speaking raw PDUs."""

    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected_at = time.monotonic()

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exactly(self, n: int, got: bytearray, deadline: float) -> None:
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no whole PDU within {self.timeout:g} s ({bytes(got)!r})")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(n - len(got))
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                continue
            if not chunk:
                raise PeerClosed(bytes(got))
            got += chunk

    def recv_pdu(self, timeout: float | None = None) -> bytes:
        """The next whole PDU as raw bytes, header included."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        got = bytearray()
        self._recv_exactly(6, got, deadline)
        (length,) = struct.unpack_from(">L", got, 2)
        self._recv_exactly(6 + length, got, deadline)
        return bytes(got)

    def recv(self, timeout: float | None = None) -> Pdu:
        """The next PDU, decoded."""
        return codec.decode(self.recv_pdu(timeout))

    def wait_closed(self, timeout: float | None = None) -> tuple[float, bytes]:
        """Read until EOF; (monotonic time of the EOF, bytes received meanwhile).

        Raises TimeoutError if the connection is still open after ``timeout``.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        got = bytearray()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"connection still open ({bytes(got)!r} received)")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                continue
            if not chunk:
                return time.monotonic(), bytes(got)
            got += chunk

    def associate(
        self,
        calling_ae: str = "RAWPEER",
        called_ae: str = "ARCHIVE",
        contexts: Sequence[tuple[str, Sequence[str]]] = ECHO_PROPOSAL,
        **kwargs: int,
    ) -> Pdu:
        """Send an A-ASSOCIATE-RQ and return the decoded answer."""
        self.send(associate_rq(calling_ae, called_ae, contexts, **kwargs))
        return self.recv()


def wait_until(predicate: Callable[[], object], timeout: float, what: str = "condition") -> None:
    """Poll ``predicate`` every 20 ms until true; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        time.sleep(0.02)


def pynetdicom_echo(
    host: str, port: int, *, called_ae: str = "ARCHIVE", calling_ae: str = "PYNETDICOM"
) -> int:
    """One C-ECHO from a pynetdicom SCU (the oracle peer); returns the status.

    Used after each bad-input test to show the server is still serving.
    """
    from pynetdicom import AE

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(host, port, ae_title=called_ae)
    assert assoc.is_established, "pynetdicom could not associate"
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
        ae.shutdown()
    return int(status.Status)
