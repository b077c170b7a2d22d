"""A lean, blocking C-ECHO client: the cheapest round trip Python can make.

Our asyncio SCU costs about as much CPU per C-ECHO as a server does, so on one
association it measures client and server together. This client negotiates with
the project's codec, then loops over precomputed C-ECHO-RQ PDUs on a blocking
socket (send, read one PDU), so nearly all of each round trip is the server's.
It is a load generator for benchmarks, not an SCU.
"""

from __future__ import annotations

import socket
import struct
import time

from archive.dicom.dimse import CEchoRq, decode_command, encode_command
from archive.dicom.uids import IMPLICIT_VR_LE, VERIFICATION
from archive.dicom.ul import codec
from archive.dicom.ul.negotiation import build_request
from archive.dicom.ul.pdata import MCH_COMMAND, MCH_LAST, decode_p_data, encode_p_data
from archive.dicom.ul.pdu import AAssociateAc, AReleaseRq

_HEADER = struct.Struct(">BxL")


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed the connection")
        data += chunk
    return bytes(data)


def _recv_pdu(sock: socket.socket) -> tuple[int, bytes]:
    pdu_type, length = _HEADER.unpack(_recv_exactly(sock, 6))
    return pdu_type, _recv_exactly(sock, length)


def lean_echo_rate(host: str, port: int, calling_ae: str, called_ae: str, seconds: float) -> float:
    """C-ECHO round trips per second on one association for ``seconds``."""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rq = build_request(
            calling_ae, called_ae, [(VERIFICATION, [IMPLICIT_VR_LE])], max_pdu_length=16384
        )
        sock.sendall(codec.encode(rq))
        pdu_type, body = _recv_pdu(sock)
        ac = codec.decode_body(pdu_type, memoryview(body))
        if not isinstance(ac, AAssociateAc) or ac.contexts[0].result != 0:
            raise RuntimeError(f"association not accepted: {ac}")
        context = ac.contexts[0].id
        control = MCH_COMMAND | MCH_LAST
        pdus = [
            encode_p_data(
                context,
                control,
                encode_command(CEchoRq(message_id=i, affected_sop_class_uid=VERIFICATION)),
            )
            for i in range(1, 1001)
        ]
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        body = b""
        while time.perf_counter() < deadline:
            sock.sendall(pdus[count % 1000])
            _, body = _recv_pdu(sock)
            count += 1
        elapsed = time.perf_counter() - start
        (pdv,) = decode_p_data(memoryview(body))
        status = getattr(decode_command(pdv.data), "status", None)
        if status != 0:
            raise RuntimeError(f"C-ECHO status {status!r}")
        sock.sendall(codec.encode(AReleaseRq()))
        _recv_pdu(sock)
        return count / elapsed
