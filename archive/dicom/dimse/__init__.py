"""DIMSE: command sets, message reassembly and fragmentation (PS3.7).

Pure protocol code, no I/O. :func:`decode_command`/:func:`encode_command` are the
group-0000 codec; :class:`MessageAssembler` turns received PDVs into commands and
uncopied data set fragments; :func:`command_pdus`, :func:`dataset_pdus` and
:func:`message_pdus` split outgoing messages to the peer's maximum PDU length;
:mod:`.status` names DIMSE statuses and their categories.
"""

from __future__ import annotations

from archive.dicom.dimse.assembler import (
    MAX_COMMAND_LENGTH,
    CommandReceived,
    DatasetFragment,
    MessageAssembler,
)
from archive.dicom.dimse.command import (
    DATASET_PRESENT,
    NO_DATASET,
    CCancelRq,
    CEchoRq,
    CEchoRsp,
    CFindRq,
    CFindRsp,
    CGetRq,
    CGetRsp,
    CMoveRq,
    CMoveRsp,
    Command,
    CommandField,
    CStoreRq,
    CStoreRsp,
    NActionRq,
    NActionRsp,
    NEventReportRq,
    NEventReportRsp,
    Priority,
    decode_command,
    dimse_protocol_error,
    encode_command,
)
from archive.dicom.dimse.fragment import (
    UNLIMITED_PDU,
    command_pdus,
    dataset_pdus,
    message_pdus,
)
from archive.dicom.dimse.status import Status, StatusCategory, category

__all__ = [
    "DATASET_PRESENT",
    "MAX_COMMAND_LENGTH",
    "NO_DATASET",
    "UNLIMITED_PDU",
    "CCancelRq",
    "CEchoRq",
    "CEchoRsp",
    "CFindRq",
    "CFindRsp",
    "CGetRq",
    "CGetRsp",
    "CMoveRq",
    "CMoveRsp",
    "CStoreRq",
    "CStoreRsp",
    "Command",
    "CommandField",
    "CommandReceived",
    "DatasetFragment",
    "MessageAssembler",
    "NActionRq",
    "NActionRsp",
    "NEventReportRq",
    "NEventReportRsp",
    "Priority",
    "Status",
    "StatusCategory",
    "category",
    "command_pdus",
    "dataset_pdus",
    "decode_command",
    "dimse_protocol_error",
    "encode_command",
    "message_pdus",
]
