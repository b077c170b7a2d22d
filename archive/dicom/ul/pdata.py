"""P-DATA-TF PDU body codec: the hot path of the upper layer (PS3.8 9.3.5).

A P-DATA-TF body is a run of Presentation Data Value items, each
``uint32 item-length | uint8 context-id | uint8 message-control-header | data``.
Decoding yields :class:`Pdv` objects whose ``data`` is a memoryview into the
received buffer: nothing is copied, so a caller that keeps a fragment beyond the
current PDU must copy it itself. Encoding writes the 6-byte PDU header and the
6-byte PDV header in one ``struct`` call and leaves the data as its own buffer,
so a sender can hand both to the transport without joining them.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from archive.dicom.errors import AbortReason, AbortSource, RemoteProtocolError

#: Message Control Header bits, PS3.8 E.2.
MCH_COMMAND = 0x01
MCH_LAST = 0x02

P_DATA_TF = 0x04
_PDV_HEADER = struct.Struct(">LBB")
_PDU_AND_PDV_HEADER = struct.Struct(">BxLLBB")
#: Bytes of overhead in a P-DATA-TF PDU carrying one PDV: PDU header 6, PDV header 6.
PDU_OVERHEAD = 12
#: Bytes a single PDV adds inside a PDU's variable field (item length + ctx + mch).
PDV_OVERHEAD = 6


class Pdv(NamedTuple):
    """One Presentation Data Value item, PS3.8 9.3.5.1."""

    context_id: int
    control: int
    data: memoryview

    @property
    def is_command(self) -> bool:
        return bool(self.control & MCH_COMMAND)

    @property
    def is_last(self) -> bool:
        return bool(self.control & MCH_LAST)


def decode_p_data(body: memoryview) -> list[Pdv]:
    """Split a P-DATA-TF variable field into PDVs without copying.

    Raises :class:`RemoteProtocolError` when an item length overruns the PDU, is
    shorter than its own header, or the PDU holds no item at all.
    """
    pdvs: list[Pdv] = []
    end = len(body)
    offset = 0
    unpack = _PDV_HEADER.unpack_from
    while offset < end:
        if end - offset < PDV_OVERHEAD:
            raise _bad("truncated PDV item header")
        length, context_id, control = unpack(body, offset)
        if length < 2 or offset + 4 + length > end:
            raise _bad(f"PDV item length {length} does not fit the PDU")
        if context_id % 2 == 0:
            raise _bad(f"PDV presentation context ID {context_id} is not odd")
        if control & 0xFC:
            raise _bad(f"PDV message control header 0x{control:02x} has reserved bits set")
        pdvs.append(Pdv(context_id, control, body[offset + 6 : offset + 4 + length]))
        offset += 4 + length
    if not pdvs:
        raise _bad("P-DATA-TF without a PDV item")
    return pdvs


def p_data_header(context_id: int, control: int, data_length: int) -> bytes:
    """PDU header plus PDV header for a P-DATA-TF carrying one PDV of ``data_length``."""
    return _PDU_AND_PDV_HEADER.pack(
        P_DATA_TF, data_length + PDV_OVERHEAD, data_length + 2, context_id, control
    )


def command_and_data_pdu(context_id: int, command: bytes, data: bytes | memoryview) -> bytes:
    """One P-DATA-TF PDU with two PDVs: a whole command set, then a whole data set.

    PS3.8 9.3.5 lets a P-DATA-TF carry several PDV items; each still holds one
    fragment of one kind (E.2), so this is two complete, last fragments.
    """
    first = _PDU_AND_PDV_HEADER.pack(
        P_DATA_TF,
        len(command) + len(data) + 2 * PDV_OVERHEAD,
        len(command) + 2,
        context_id,
        MCH_COMMAND | MCH_LAST,
    )
    return b"".join((first, command, _PDV_HEADER.pack(len(data) + 2, context_id, MCH_LAST), data))


def encode_p_data(context_id: int, control: int, data: bytes | memoryview) -> bytes:
    """A whole P-DATA-TF PDU carrying one PDV (joined; for small messages)."""
    return p_data_header(context_id, control, len(data)) + data


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        message, abort=(AbortSource.SERVICE_PROVIDER, AbortReason.INVALID_PDU_PARAMETER)
    )
