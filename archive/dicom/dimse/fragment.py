"""Splitting outgoing DIMSE messages into P-DATA-TF PDUs (PS3.8 9.3.5, Annex E).

Each PDU produced carries one PDV, except that a small message (a data set of at
most 16 KiB, such as a C-FIND match, when command and data fit in the peer's limit)
goes as one PDU of two PDVs, command then data set, as PS3.8 9.3.5 allows. The
peer's Maximum Length Received (PS3.8 D.1) bounds a P-DATA-TF's variable field,
which is the 6-byte PDV item header plus the fragment, so a fragment holds at
most ``max_pdu - 6`` bytes.
A limit of 0 means "no limit"; we still cap a PDU at :data:`UNLIMITED_PDU` so a
single write stays reasonable. Fragments are kept to an even length when the
limit allows, since data elements are even-length and some peers parse the
stream as it arrives.

Command sets are small: they come out as ``bytes``, one object per PDU
(headers joined with the data), so the common one-PDU command is one write.
Data sets come out as alternating 12-byte headers and memoryview slices of the
caller's buffer: nothing is copied, and ``transport.writelines()`` sends them.
"""

from __future__ import annotations

from archive.dicom.dimse.command import Command, encode_command
from archive.dicom.errors import LocalProtocolError
from archive.dicom.ul.pdata import (
    MCH_COMMAND,
    MCH_LAST,
    PDV_OVERHEAD,
    command_and_data_pdu,
    p_data_header,
)

__all__ = ["UNLIMITED_PDU", "command_pdus", "dataset_pdus", "message_pdus"]

#: PDU variable-field size used when the peer announces no limit (0).
UNLIMITED_PDU = 1024 * 1024
#: Data sets up to this size go in the same PDU as their command set (copied once).
_SMALL = 16 * 1024


def _fragment_size(max_pdu: int) -> int:
    """Largest PDV data length for a peer limit, PS3.8 9.3.5 and D.1."""
    if max_pdu == 0:
        max_pdu = UNLIMITED_PDU
    size = max_pdu - PDV_OVERHEAD
    if size < 1:
        # The UL must refuse such a limit at association time; reaching here
        # means it did not.
        raise LocalProtocolError(f"peer maximum PDU length {max_pdu} leaves no room for data")
    return size & ~1 if size > 1 else size


def command_pdus(context_id: int, command: Command, max_pdu: int) -> list[bytes]:
    """P-DATA-TF PDUs carrying ``command``'s command set, PS3.8 E.2.

    Every PDV has the command bit set; the last one also has the last bit.
    """
    raw = encode_command(command)
    size = _fragment_size(max_pdu)
    if len(raw) <= size:
        return [p_data_header(context_id, MCH_COMMAND | MCH_LAST, len(raw)) + raw]
    pdus: list[bytes] = []
    end = len(raw)
    view = memoryview(raw)
    for start in range(0, end, size):
        chunk = view[start : start + size]
        control = MCH_COMMAND | MCH_LAST if start + size >= end else MCH_COMMAND
        pdus.append(p_data_header(context_id, control, len(chunk)) + chunk)
    return pdus


def dataset_pdus(
    context_id: int, data: bytes | memoryview, last: bool, max_pdu: int
) -> list[bytes | memoryview]:
    """P-DATA-TF PDUs carrying data set bytes, as header, slice, header, slice...

    The slices are views of ``data`` (it must stay unchanged until written).
    ``last`` marks whether ``data`` ends the data set: only then does the final
    PDV carry the last bit (PS3.8 E.2). Empty ``data`` with ``last`` gives one
    PDV with no data, which ends the data set; empty ``data`` without ``last``
    gives nothing.
    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    end = len(view)
    if end == 0:
        return [p_data_header(context_id, MCH_LAST, 0)] if last else []
    size = _fragment_size(max_pdu)
    out: list[bytes | memoryview] = []
    for start in range(0, end, size):
        chunk = view[start : start + size]
        control = MCH_LAST if last and start + size >= end else 0
        out.append(p_data_header(context_id, control, len(chunk)))
        out.append(chunk)
    return out


def message_pdus(
    context_id: int,
    command: Command,
    dataset: bytes | memoryview | None,
    max_pdu: int,
) -> list[bytes | memoryview]:
    """A whole message: the command set's PDUs, then the data set's, if any.

    ``dataset`` must be given exactly when ``command.has_dataset`` is true
    (PS3.7 6.3.1, Command Data Set Type); otherwise the peer would wait for a
    data set that never comes or receive one it was not told of.
    """
    if command.has_dataset != (dataset is not None):
        raise LocalProtocolError(
            f"{type(command).__name__}.has_dataset is {command.has_dataset}"
            f" but a data set was {'not ' if dataset is None else ''}given"
        )
    if isinstance(dataset, memoryview) and dataset.itemsize != 1:
        dataset = dataset.cast("B")  # lengths below count bytes, not wider items
    if dataset is not None and len(dataset) <= _SMALL:
        raw = encode_command(command)
        if len(raw) + len(dataset) + 2 * PDV_OVERHEAD <= (max_pdu or UNLIMITED_PDU):
            # A small message (a C-FIND match) travels as one PDU of two PDVs:
            # one write for us, one PDU to parse for the peer.
            return [command_and_data_pdu(context_id, raw, dataset)]
    out: list[bytes | memoryview] = []
    out.extend(command_pdus(context_id, command, max_pdu))
    if dataset is not None:
        out.extend(dataset_pdus(context_id, dataset, True, max_pdu))
    return out
