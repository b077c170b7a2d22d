"""DIMSE command set codec: golden vectors, pydicom oracle, round trips, errors, fuzz.

Vectors are group-0000 bytes, Implicit VR Little Endian (PS3.7 6.3.1), one per
message type, each element commented. pydicom's writer is the oracle: the same
elements written by ``pydicom.filewriter.write_dataset`` must give the same bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from archive.dicom.dimse import (
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
    Status,
    StatusCategory,
    category,
    decode_command,
    encode_command,
)
from archive.dicom.errors import AbortReason, AbortSource, LocalProtocolError, RemoteProtocolError

# fmt: off

# C-ECHO-RQ (PS3.7 9.3.5.1): Verification SOP Class, Message ID 1, no data set.
C_ECHO_RQ = bytes.fromhex(
    # (0000,0000) CommandGroupLength 56
    "00000000 04000000 38000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.1.1' + NUL pad
    "00000200 12000000 312e322e3834302e31303030382e312e3100"
    # (0000,0100) CommandField 0x0030
    "00000001 02000000 3000"
    # (0000,0110) MessageID 0x0001
    "00001001 02000000 0100"
    # (0000,0800) CommandDataSetType 0x0101
    "00000008 02000000 0101"
)

# C-ECHO-RSP (PS3.7 9.3.5.2): answering Message ID 1 with Success.
C_ECHO_RSP = bytes.fromhex(
    # (0000,0000) CommandGroupLength 66
    "00000000 04000000 42000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.1.1' + NUL pad
    "00000200 12000000 312e322e3834302e31303030382e312e3100"
    # (0000,0100) CommandField 0x8030
    "00000001 02000000 3080"
    # (0000,0120) MessageIDBeingRespondedTo 0x0001
    "00002001 02000000 0100"
    # (0000,0800) CommandDataSetType 0x0101
    "00000008 02000000 0101"
    # (0000,0900) Status 0x0000
    "00000009 02000000 0000"
)

# C-STORE-RQ (PS3.7 9.3.1.1): CT Image Storage, Message ID 7, medium priority, a
# sub-operation of a C-MOVE from MOVESCU's Message ID 3; odd UID and AE get padded.
C_STORE_RQ = bytes.fromhex(
    # (0000,0000) CommandGroupLength 118
    "00000000 04000000 76000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.5.1.4.1.1.2' + NUL pad
    "00000200 1a000000 312e322e3834302e31303030382e352e312e342e312e312e3200"
    # (0000,0100) CommandField 0x0001
    "00000001 02000000 0100"
    # (0000,0110) MessageID 0x0007
    "00001001 02000000 0700"
    # (0000,0700) Priority 0x0000
    "00000007 02000000 0000"
    # (0000,0800) CommandDataSetType 0x0001
    "00000008 02000000 0100"
    # (0000,1000) AffectedSOPInstanceUID '1.2.3.4.5' + NUL pad
    "00000010 0a000000 312e322e332e342e3500"
    # (0000,1030) MoveOriginatorApplicationEntityTitle 'MOVESCU' + space pad
    "00003010 08000000 4d4f564553435520"
    # (0000,1031) MoveOriginatorMessageID 0x0003
    "00003110 02000000 0300"
)

# C-STORE-RSP (PS3.7 9.3.1.2): Warning B000 coercion, offending Patient's Name and
# Patient ID (AT, VM 2), Error Comment "Coerced" space padded.
C_STORE_RSP = bytes.fromhex(
    # (0000,0000) CommandGroupLength 124
    "00000000 04000000 7c000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.5.1.4.1.1.2' + NUL pad
    "00000200 1a000000 312e322e3834302e31303030382e352e312e342e312e312e3200"
    # (0000,0100) CommandField 0x8001
    "00000001 02000000 0180"
    # (0000,0120) MessageIDBeingRespondedTo 0x0007
    "00002001 02000000 0700"
    # (0000,0800) CommandDataSetType 0x0101
    "00000008 02000000 0101"
    # (0000,0900) Status 0xB000
    "00000009 02000000 00b0"
    # (0000,0901) OffendingElement ((0010,0010), (0010,0020))
    "00000109 08000000 1000100010002000"
    # (0000,0902) ErrorComment 'Coerced' + space pad
    "00000209 08000000 436f657263656420"
    # (0000,1000) AffectedSOPInstanceUID '1.2.3.4.5' + NUL pad
    "00000010 0a000000 312e322e332e342e3500"
)

# C-FIND-RQ (PS3.7 9.3.2.1): Study Root FIND, Message ID 2, high priority, identifier follows.
C_FIND_RQ = bytes.fromhex(
    # (0000,0000) CommandGroupLength 76
    "00000000 04000000 4c000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.5.1.4.1.2.2.1' + NUL pad
    "00000200 1c000000 312e322e3834302e31303030382e352e312e342e312e322e322e3100"
    # (0000,0100) CommandField 0x0020
    "00000001 02000000 2000"
    # (0000,0110) MessageID 0x0002
    "00001001 02000000 0200"
    # (0000,0700) Priority 0x0001
    "00000007 02000000 0100"
    # (0000,0800) CommandDataSetType 0x0001
    "00000008 02000000 0100"
)

# C-FIND-RSP (PS3.7 9.3.2.2): Pending FF00 with a matching identifier following.
C_FIND_RSP = bytes.fromhex(
    # (0000,0000) CommandGroupLength 76
    "00000000 04000000 4c000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.5.1.4.1.2.2.1' + NUL pad
    "00000200 1c000000 312e322e3834302e31303030382e352e312e342e312e322e322e3100"
    # (0000,0100) CommandField 0x8020
    "00000001 02000000 2080"
    # (0000,0120) MessageIDBeingRespondedTo 0x0002
    "00002001 02000000 0200"
    # (0000,0800) CommandDataSetType 0x0001
    "00000008 02000000 0100"
    # (0000,0900) Status 0xFF00
    "00000009 02000000 00ff"
)

# C-GET-RQ (PS3.7 9.3.3.1): Study Root GET, Message ID 4, low priority.
C_GET_RQ = bytes.fromhex(
    # (0000,0000) CommandGroupLength 76
    "00000000 04000000 4c000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.5.1.4.1.2.2.3' + NUL pad
    "00000200 1c000000 312e322e3834302e31303030382e352e312e342e312e322e322e3300"
    # (0000,0100) CommandField 0x0010
    "00000001 02000000 1000"
    # (0000,0110) MessageID 0x0004
    "00001001 02000000 0400"
    # (0000,0700) Priority 0x0002
    "00000007 02000000 0200"
    # (0000,0800) CommandDataSetType 0x0001
    "00000008 02000000 0100"
)

# C-GET-RSP (PS3.7 9.3.3.2): Pending with 5 remaining, 2 completed, 0 failed, 1 warning.
C_GET_RSP = bytes.fromhex(
    # (0000,0000) CommandGroupLength 116
    "00000000 04000000 74000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.5.1.4.1.2.2.3' + NUL pad
    "00000200 1c000000 312e322e3834302e31303030382e352e312e342e312e322e322e3300"
    # (0000,0100) CommandField 0x8010
    "00000001 02000000 1080"
    # (0000,0120) MessageIDBeingRespondedTo 0x0004
    "00002001 02000000 0400"
    # (0000,0800) CommandDataSetType 0x0101
    "00000008 02000000 0101"
    # (0000,0900) Status 0xFF00
    "00000009 02000000 00ff"
    # (0000,1020) NumberOfRemainingSuboperations 0x0005
    "00002010 02000000 0500"
    # (0000,1021) NumberOfCompletedSuboperations 0x0002
    "00002110 02000000 0200"
    # (0000,1022) NumberOfFailedSuboperations 0x0000
    "00002210 02000000 0000"
    # (0000,1023) NumberOfWarningSuboperations 0x0001
    "00002310 02000000 0100"
)

# C-MOVE-RQ (PS3.7 9.3.4.1): Study Root MOVE, Message ID 5, to ARCHIVE (AE, space pad).
C_MOVE_RQ = bytes.fromhex(
    # (0000,0000) CommandGroupLength 92
    "00000000 04000000 5c000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.5.1.4.1.2.2.2' + NUL pad
    "00000200 1c000000 312e322e3834302e31303030382e352e312e342e312e322e322e3200"
    # (0000,0100) CommandField 0x0021
    "00000001 02000000 2100"
    # (0000,0110) MessageID 0x0005
    "00001001 02000000 0500"
    # (0000,0600) MoveDestination 'ARCHIVE' + space pad
    "00000006 08000000 4152434849564520"
    # (0000,0700) Priority 0x0000
    "00000007 02000000 0000"
    # (0000,0800) CommandDataSetType 0x0001
    "00000008 02000000 0100"
)

# C-MOVE-RSP (PS3.7 9.3.4.2): Refused A801 Move Destination unknown, with a comment.
C_MOVE_RSP = bytes.fromhex(
    # (0000,0000) CommandGroupLength 104
    "00000000 04000000 68000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.5.1.4.1.2.2.2' + NUL pad
    "00000200 1c000000 312e322e3834302e31303030382e352e312e342e312e322e322e3200"
    # (0000,0100) CommandField 0x8021
    "00000001 02000000 2180"
    # (0000,0120) MessageIDBeingRespondedTo 0x0005
    "00002001 02000000 0500"
    # (0000,0800) CommandDataSetType 0x0101
    "00000008 02000000 0101"
    # (0000,0900) Status 0xA801
    "00000009 02000000 01a8"
    # (0000,0902) ErrorComment 'Unknown destination' + space pad
    "00000209 14000000 556e6b6e6f776e2064657374696e6174696f6e20"
)

# C-CANCEL-RQ (PS3.7 9.3.2.3): cancel the C-FIND of Message ID 2.
C_CANCEL_RQ = bytes.fromhex(
    # (0000,0000) CommandGroupLength 30
    "00000000 04000000 1e000000"
    # (0000,0100) CommandField 0x0FFF
    "00000001 02000000 ff0f"
    # (0000,0120) MessageIDBeingRespondedTo 0x0002
    "00002001 02000000 0200"
    # (0000,0800) CommandDataSetType 0x0101
    "00000008 02000000 0101"
)

# N-EVENT-REPORT-RQ (PS3.7 10.3.1.1): Storage Commitment result, event type 1,
# the well-known Storage Commitment instance, event information follows.
N_EVENT_REPORT_RQ = bytes.fromhex(
    # (0000,0000) CommandGroupLength 98
    "00000000 04000000 62000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.1.20.1'
    "00000200 14000000 312e322e3834302e31303030382e312e32302e31"
    # (0000,0100) CommandField 0x0100
    "00000001 02000000 0001"
    # (0000,0110) MessageID 0x0009
    "00001001 02000000 0900"
    # (0000,0800) CommandDataSetType 0x0001
    "00000008 02000000 0100"
    # (0000,1000) AffectedSOPInstanceUID '1.2.840.10008.1.20.1.1'
    "00000010 16000000 312e322e3834302e31303030382e312e32302e312e31"
    # (0000,1002) EventTypeID 0x0001
    "00000210 02000000 0100"
)

# N-EVENT-REPORT-RSP (PS3.7 10.3.1.2): Success for event type 1.
N_EVENT_REPORT_RSP = bytes.fromhex(
    # (0000,0000) CommandGroupLength 108
    "00000000 04000000 6c000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.1.20.1'
    "00000200 14000000 312e322e3834302e31303030382e312e32302e31"
    # (0000,0100) CommandField 0x8100
    "00000001 02000000 0081"
    # (0000,0120) MessageIDBeingRespondedTo 0x0009
    "00002001 02000000 0900"
    # (0000,0800) CommandDataSetType 0x0101
    "00000008 02000000 0101"
    # (0000,0900) Status 0x0000
    "00000009 02000000 0000"
    # (0000,1000) AffectedSOPInstanceUID '1.2.840.10008.1.20.1.1'
    "00000010 16000000 312e322e3834302e31303030382e312e32302e312e31"
    # (0000,1002) EventTypeID 0x0001
    "00000210 02000000 0100"
)

# N-ACTION-RQ (PS3.7 10.3.4.1): Storage Commitment request, action type 1,
# action information follows.
N_ACTION_RQ = bytes.fromhex(
    # (0000,0000) CommandGroupLength 98
    "00000000 04000000 62000000"
    # (0000,0003) RequestedSOPClassUID '1.2.840.10008.1.20.1'
    "00000300 14000000 312e322e3834302e31303030382e312e32302e31"
    # (0000,0100) CommandField 0x0130
    "00000001 02000000 3001"
    # (0000,0110) MessageID 0x0008
    "00001001 02000000 0800"
    # (0000,0800) CommandDataSetType 0x0001
    "00000008 02000000 0100"
    # (0000,1001) RequestedSOPInstanceUID '1.2.840.10008.1.20.1.1'
    "00000110 16000000 312e322e3834302e31303030382e312e32302e312e31"
    # (0000,1008) ActionTypeID 0x0001
    "00000810 02000000 0100"
)

# N-ACTION-RSP (PS3.7 10.3.4.2): Processing failure 0110 with Error Comment and Error ID.
N_ACTION_RSP = bytes.fromhex(
    # (0000,0000) CommandGroupLength 130
    "00000000 04000000 82000000"
    # (0000,0002) AffectedSOPClassUID '1.2.840.10008.1.20.1'
    "00000200 14000000 312e322e3834302e31303030382e312e32302e31"
    # (0000,0100) CommandField 0x8130
    "00000001 02000000 3081"
    # (0000,0120) MessageIDBeingRespondedTo 0x0008
    "00002001 02000000 0800"
    # (0000,0800) CommandDataSetType 0x0101
    "00000008 02000000 0101"
    # (0000,0900) Status 0x0110
    "00000009 02000000 1001"
    # (0000,0902) ErrorComment 'Busy'
    "00000209 04000000 42757379"
    # (0000,0903) ErrorID 0xA710
    "00000309 02000000 10a7"
    # (0000,1000) AffectedSOPInstanceUID '1.2.840.10008.1.20.1.1'
    "00000010 16000000 312e322e3834302e31303030382e312e32302e312e31"
    # (0000,1008) ActionTypeID 0x0001
    "00000810 02000000 0100"
)
# fmt: on

VECTORS: list[tuple[bytes, Command]] = [
    (C_ECHO_RQ, CEchoRq(message_id=1, affected_sop_class_uid="1.2.840.10008.1.1")),
    (
        C_ECHO_RSP,
        CEchoRsp(
            message_id_being_responded_to=1,
            status=Status.SUCCESS,
            affected_sop_class_uid="1.2.840.10008.1.1",
        ),
    ),
    (
        C_STORE_RQ,
        CStoreRq(
            message_id=7,
            affected_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            affected_sop_instance_uid="1.2.3.4.5",
            priority=Priority.MEDIUM,
            move_originator_ae="MOVESCU",
            move_originator_message_id=3,
        ),
    ),
    (
        C_STORE_RSP,
        CStoreRsp(
            message_id_being_responded_to=7,
            status=Status.COERCION_OF_DATA_ELEMENTS,
            affected_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            affected_sop_instance_uid="1.2.3.4.5",
            offending_element=(0x00100010, 0x00100020),
            error_comment="Coerced",
        ),
    ),
    (
        C_FIND_RQ,
        CFindRq(
            message_id=2,
            affected_sop_class_uid="1.2.840.10008.5.1.4.1.2.2.1",
            priority=Priority.HIGH,
        ),
    ),
    (
        C_FIND_RSP,
        CFindRsp(
            message_id_being_responded_to=2,
            status=Status.PENDING,
            affected_sop_class_uid="1.2.840.10008.5.1.4.1.2.2.1",
            has_dataset=True,
        ),
    ),
    (
        C_GET_RQ,
        CGetRq(
            message_id=4,
            affected_sop_class_uid="1.2.840.10008.5.1.4.1.2.2.3",
            priority=Priority.LOW,
        ),
    ),
    (
        C_GET_RSP,
        CGetRsp(
            message_id_being_responded_to=4,
            status=Status.PENDING,
            affected_sop_class_uid="1.2.840.10008.5.1.4.1.2.2.3",
            number_of_remaining_suboperations=5,
            number_of_completed_suboperations=2,
            number_of_failed_suboperations=0,
            number_of_warning_suboperations=1,
        ),
    ),
    (
        C_MOVE_RQ,
        CMoveRq(
            message_id=5,
            affected_sop_class_uid="1.2.840.10008.5.1.4.1.2.2.2",
            move_destination="ARCHIVE",
        ),
    ),
    (
        C_MOVE_RSP,
        CMoveRsp(
            message_id_being_responded_to=5,
            status=Status.MOVE_DESTINATION_UNKNOWN,
            affected_sop_class_uid="1.2.840.10008.5.1.4.1.2.2.2",
            error_comment="Unknown destination",
        ),
    ),
    (C_CANCEL_RQ, CCancelRq(message_id_being_responded_to=2)),
    (
        N_EVENT_REPORT_RQ,
        NEventReportRq(
            message_id=9,
            affected_sop_class_uid="1.2.840.10008.1.20.1",
            affected_sop_instance_uid="1.2.840.10008.1.20.1.1",
            event_type_id=1,
            has_dataset=True,
        ),
    ),
    (
        N_EVENT_REPORT_RSP,
        NEventReportRsp(
            message_id_being_responded_to=9,
            status=Status.SUCCESS,
            affected_sop_class_uid="1.2.840.10008.1.20.1",
            affected_sop_instance_uid="1.2.840.10008.1.20.1.1",
            event_type_id=1,
        ),
    ),
    (
        N_ACTION_RQ,
        NActionRq(
            message_id=8,
            requested_sop_class_uid="1.2.840.10008.1.20.1",
            requested_sop_instance_uid="1.2.840.10008.1.20.1.1",
            action_type_id=1,
            has_dataset=True,
        ),
    ),
    (
        N_ACTION_RSP,
        NActionRsp(
            message_id_being_responded_to=8,
            status=Status.PROCESSING_FAILURE,
            affected_sop_class_uid="1.2.840.10008.1.20.1",
            affected_sop_instance_uid="1.2.840.10008.1.20.1.1",
            action_type_id=1,
            error_comment="Busy",
            error_id=0xA710,
        ),
    ),
]
VECTOR_IDS = [type(cmd).__name__ for _, cmd in VECTORS]
MESSAGE_TYPES = [type(cmd) for _, cmd in VECTORS]

DIMSE_ABORT = (AbortSource.SERVICE_USER, AbortReason.NOT_SPECIFIED)

# Field name -> pydicom keyword (the element keywords of PS3.7 Table E.1-1).
KEYWORDS = {
    "affected_sop_class_uid": "AffectedSOPClassUID",
    "requested_sop_class_uid": "RequestedSOPClassUID",
    "message_id": "MessageID",
    "message_id_being_responded_to": "MessageIDBeingRespondedTo",
    "move_destination": "MoveDestination",
    "priority": "Priority",
    "has_dataset": "CommandDataSetType",
    "status": "Status",
    "offending_element": "OffendingElement",
    "error_comment": "ErrorComment",
    "error_id": "ErrorID",
    "affected_sop_instance_uid": "AffectedSOPInstanceUID",
    "requested_sop_instance_uid": "RequestedSOPInstanceUID",
    "event_type_id": "EventTypeID",
    "action_type_id": "ActionTypeID",
    "number_of_remaining_suboperations": "NumberOfRemainingSuboperations",
    "number_of_completed_suboperations": "NumberOfCompletedSuboperations",
    "number_of_failed_suboperations": "NumberOfFailedSuboperations",
    "number_of_warning_suboperations": "NumberOfWarningSuboperations",
    "move_originator_ae": "MoveOriginatorApplicationEntityTitle",
    "move_originator_message_id": "MoveOriginatorMessageID",
}


def _pydicom_bytes(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    return fp.getvalue()


def oracle_encode(cmd: Command) -> bytes:
    """The command set as pydicom writes it, group length computed from pydicom's bytes."""
    # Hypothesis makes UIDs such as "00" that pydicom's value validation flags;
    # the encoder is what is being compared, not value rules.
    saved = (config.settings.reading_validation_mode, config.settings.writing_validation_mode)
    config.settings.reading_validation_mode = config.IGNORE
    config.settings.writing_validation_mode = config.IGNORE
    try:
        return _oracle_encode(cmd)
    finally:
        config.settings.reading_validation_mode, config.settings.writing_validation_mode = saved


def _oracle_encode(cmd: Command) -> bytes:
    ds = Dataset()
    ds.CommandField = int(cmd.command_field)
    for field in msgspec.structs.fields(cmd):
        value = getattr(cmd, field.name)
        if value is None:
            continue
        if field.name == "has_dataset":
            value = 0x0001 if value else 0x0101
        elif field.name == "offending_element":
            value = list(value)
        setattr(ds, KEYWORDS[field.name], value)
    ds.CommandGroupLength = len(_pydicom_bytes(ds))
    return _pydicom_bytes(ds)


def element(tag_element: int, value: bytes) -> bytes:
    """One group-0000 element, Implicit VR Little Endian."""
    return struct.pack("<HHL", 0, tag_element, len(value)) + value


def us(tag_element: int, value: int) -> bytes:
    return element(tag_element, struct.pack("<H", value))


# --- vectors -----------------------------------------------------------------


@pytest.mark.parametrize(("vector", "cmd"), VECTORS, ids=VECTOR_IDS)
def test_encode_gives_vector(vector: bytes, cmd: Command) -> None:
    assert encode_command(cmd) == vector


@pytest.mark.parametrize(("vector", "cmd"), VECTORS, ids=VECTOR_IDS)
def test_decode_gives_record(vector: bytes, cmd: Command) -> None:
    decoded = decode_command(vector)
    assert type(decoded) is type(cmd)
    assert decoded == cmd
    assert encode_command(decoded) == vector
    assert decode_command(memoryview(vector)) == cmd
    assert decode_command(bytearray(vector)) == cmd


@pytest.mark.parametrize(("vector", "cmd"), VECTORS, ids=VECTOR_IDS)
def test_vector_matches_pydicom_oracle(vector: bytes, cmd: Command) -> None:
    assert oracle_encode(cmd) == vector


def test_vectors_cover_every_message_type() -> None:
    assert {t.command_field for t in MESSAGE_TYPES} == set(CommandField)


def test_decode_from_memoryview_slice_of_bigger_buffer() -> None:
    # The assembler and PDU decoder hand over views into a larger receive buffer.
    buffer = b"\xff" * 7 + C_STORE_RQ + b"\xee" * 5
    view = memoryview(buffer)[7 : 7 + len(C_STORE_RQ)]
    assert decode_command(view) == VECTORS[2][1]


# --- round trips -------------------------------------------------------------

_UID = st.text(alphabet="0123456789.", max_size=64)
_AE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="\\"),
    max_size=16,
).filter(lambda s: s == s.strip(" "))
_LO = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\\"),
    max_size=64,
).filter(lambda s: s == s.strip(" "))
_US = st.integers(0, 0xFFFF)
_TAGS = st.lists(st.integers(0, 0xFFFFFFFF), min_size=1, max_size=4).map(tuple)


def _field_strategy(name: str) -> st.SearchStrategy[Any]:
    if name.endswith("_uid"):
        return _UID
    if name in ("move_destination", "move_originator_ae"):
        return _AE
    if name == "error_comment":
        return _LO
    if name == "offending_element":
        return _TAGS
    if name == "has_dataset":
        return st.booleans()
    return _US


def _command_strategy(cls: type[Any]) -> st.SearchStrategy[Command]:
    kwargs = {}
    for field in msgspec.structs.fields(cls):
        base = _field_strategy(field.name)
        kwargs[field.name] = st.none() | base if field.default is None else base
    return st.builds(cls, **kwargs)


COMMANDS = st.one_of([_command_strategy(cls) for cls in MESSAGE_TYPES])


@settings(max_examples=400, deadline=None)
@given(COMMANDS)
def test_decode_inverts_encode(cmd: Command) -> None:
    raw = encode_command(cmd)
    assert len(raw) % 2 == 0
    assert struct.unpack_from("<L", raw, 8)[0] == len(raw) - 12  # group length
    assert decode_command(raw) == cmd


@settings(max_examples=150, deadline=None)
@given(COMMANDS)
def test_encode_agrees_with_oracle(cmd: Command) -> None:
    assert encode_command(cmd) == oracle_encode(cmd)


# --- tolerance ---------------------------------------------------------------

ECHO_BODY = (
    element(0x0002, b"1.2.840.10008.1.1\0")
    + us(0x0100, 0x0030)
    + us(0x0110, 1)
    + us(0x0800, 0x0101)
)
ECHO = CEchoRq(message_id=1, affected_sop_class_uid="1.2.840.10008.1.1")


def test_absent_group_length_is_accepted() -> None:
    assert decode_command(ECHO_BODY) == ECHO


def test_wrong_group_length_value_is_ignored() -> None:
    assert decode_command(element(0x0000, struct.pack("<L", 3)) + ECHO_BODY) == ECHO


def test_unknown_and_retired_tags_are_ignored() -> None:
    raw = (
        element(0x0001, struct.pack("<L", 1234))  # retired Length to End
        + ECHO_BODY
        + element(0x4000, b"ABCD")  # retired Dialog Receiver
        + element(0x5010, b"X ")  # retired Message Set ID
        + element(0xFFFE, b"")  # unknown
    )
    assert decode_command(raw) == ECHO


def test_known_tags_foreign_to_the_message_are_ignored() -> None:
    # Priority and Move Destination mean nothing in a C-ECHO-RQ.
    raw = ECHO_BODY + us(0x0700, 2) + element(0x0600, b"XY")
    assert decode_command(raw) == ECHO


def test_elements_out_of_order_are_accepted() -> None:
    raw = us(0x0800, 0x0101) + us(0x0110, 1) + element(0x0002, b"1.2.840.10008.1.1\0")
    assert decode_command(raw + us(0x0100, 0x0030)) == ECHO


def test_padding_variants_are_stripped() -> None:
    raw = (
        element(0x0002, b"1.2.840.10008.5.1.4.1.2.2.2 ")  # UID space-padded by the peer
        + us(0x0100, 0x0021)
        + us(0x0110, 5)
        + element(0x0600, b" ARCHIVE\0\0")  # leading space, NUL padded
        + us(0x0700, 0)
        + us(0x0800, 0x0102)  # any value but 0x0101 means a data set follows
    )
    cmd = decode_command(raw)
    assert cmd == CMoveRq(
        message_id=5,
        affected_sop_class_uid="1.2.840.10008.5.1.4.1.2.2.2",
        move_destination="ARCHIVE",
    )


def test_non_ascii_text_is_kept_byte_exact() -> None:
    # Latin-1 both ways: a peer's stray byte is echoed back as sent, never an error.
    raw = (
        element(0x0002, b"1.2.\xe9\0")
        + us(0x0100, 0x8030)
        + us(0x0120, 1)
        + us(0x0800, 0x0101)
        + us(0x0900, 0)
        + element(0x0902, b"caf\xe9s ")
    )
    cmd = decode_command(raw)
    assert isinstance(cmd, CEchoRsp)
    assert cmd.affected_sop_class_uid == "1.2.\xe9"
    assert cmd.error_comment == "caf\xe9s"
    assert encode_command(cmd)[12:] == raw


def test_empty_text_value_is_empty_string() -> None:
    raw = element(0x0002, b"") + us(0x0100, 0x0030) + us(0x0110, 1) + us(0x0800, 0x0101)
    assert decode_command(raw) == CEchoRq(message_id=1, affected_sop_class_uid="")


# --- decode errors -----------------------------------------------------------


def _assert_rejected(raw: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match) as info:
        decode_command(raw)
    assert info.value.abort == DIMSE_ABORT
    assert info.value.reject is None


def test_truncated_element_header() -> None:
    _assert_rejected(ECHO_BODY + b"\0\0\0", "truncated element header at offset 56")


def test_value_overruns_buffer() -> None:
    _assert_rejected(C_ECHO_RQ[:-1], r"\(0000,0800\) value length 2 overruns")
    _assert_rejected(element(0x0002, b"1.2")[:-1], r"\(0000,0002\) value length 3 overruns")


def test_undefined_length_overruns() -> None:
    raw = struct.pack("<HHL", 0, 0x0902, 0xFFFFFFFF) + ECHO_BODY
    _assert_rejected(raw, r"value length 4294967295 overruns")


def test_tag_outside_group_0000() -> None:
    raw = ECHO_BODY + struct.pack("<HHL", 0x0008, 0x0016, 2) + b"1\0"
    _assert_rejected(raw, r"\(0008,0016\) is outside command group 0000")


def test_no_command_field() -> None:
    _assert_rejected(element(0x0002, b"1.2\0") + us(0x0110, 1), r"no Command Field")
    _assert_rejected(b"", r"no Command Field")


@pytest.mark.parametrize("field", [0x0000, 0x0002, 0x0110, 0x0150, 0x0FFE, 0x8FFF, 0xFFFF])
def test_unknown_command_field(field: int) -> None:
    raw = element(0x0002, b"1.2\0") + us(0x0100, field) + us(0x0110, 1) + us(0x0800, 0x0101)
    _assert_rejected(raw, f"unknown Command Field 0x{field:04X}")


@pytest.mark.parametrize(
    ("vector", "missing", "name"),
    [
        (C_ECHO_RQ, 0x0002, "affected_sop_class_uid"),
        (C_ECHO_RQ, 0x0110, "message_id"),
        (C_ECHO_RQ, 0x0800, "has_dataset"),
        (C_ECHO_RSP, 0x0120, "message_id_being_responded_to"),
        (C_ECHO_RSP, 0x0900, "status"),
        (C_STORE_RQ, 0x0700, "priority"),
        (C_STORE_RQ, 0x1000, "affected_sop_instance_uid"),
        (C_FIND_RQ, 0x0700, "priority"),
        (C_MOVE_RQ, 0x0600, "move_destination"),
        (C_CANCEL_RQ, 0x0120, "message_id_being_responded_to"),
        (N_EVENT_REPORT_RQ, 0x1002, "event_type_id"),
        (N_ACTION_RQ, 0x0003, "requested_sop_class_uid"),
        (N_ACTION_RQ, 0x1001, "requested_sop_instance_uid"),
        (N_ACTION_RQ, 0x1008, "action_type_id"),
    ],
)
def test_missing_mandatory_field(vector: bytes, missing: int, name: str) -> None:
    kept = b""
    offset = 12  # past the group length
    while offset < len(vector):
        _, tag_element, length = struct.unpack_from("<HHL", vector, offset)
        if tag_element != missing:
            kept += vector[offset : offset + 8 + length]
        offset += 8 + length
    cls = type(decode_command(vector)).__name__
    _assert_rejected(kept, rf"{cls} lacks mandatory \(0000,{missing:04X}\) {name}")


def test_optional_fields_may_be_absent() -> None:
    raw = us(0x0100, 0x8001) + us(0x0120, 7) + us(0x0800, 0x0101) + us(0x0900, 0xA700)
    assert decode_command(raw) == CStoreRsp(message_id_being_responded_to=7, status=0xA700)


@pytest.mark.parametrize("length", [0, 1, 3, 4])
def test_us_value_of_wrong_length(length: int) -> None:
    raw = element(0x0002, b"1.2\0") + us(0x0100, 0x0030) + us(0x0800, 0x0101)
    _assert_rejected(
        raw + element(0x0110, b"\1" * length), rf"\(0000,0110\) US has value length {length}"
    )


def test_command_field_of_wrong_length() -> None:
    _assert_rejected(element(0x0100, b"\x30\0\0\0"), r"\(0000,0100\) US has value length 4")


@pytest.mark.parametrize("length", [0, 2, 3, 8])
def test_group_length_of_wrong_length(length: int) -> None:
    _assert_rejected(
        element(0x0000, b"\0" * length) + ECHO_BODY, rf"\(0000,0000\) UL has value length {length}"
    )


@pytest.mark.parametrize("length", [0, 2, 6])
def test_at_value_of_wrong_length(length: int) -> None:
    raw = us(0x0100, 0x8001) + us(0x0120, 7) + us(0x0800, 0x0101) + us(0x0900, 0xC000)
    _assert_rejected(
        raw + element(0x0901, b"\x10\0" * (length // 2)),
        rf"\(0000,0901\) AT has value length {length}",
    )


def test_wrong_length_in_an_ignored_element_is_ignored() -> None:
    # Only the elements the message type defines are interpreted.
    assert decode_command(ECHO_BODY + element(0x0900, b"\0\0\0\0")) == ECHO


# --- fuzz --------------------------------------------------------------------


def _decode_or_reject(raw: bytes) -> None:
    error: RemoteProtocolError | None = None
    try:
        result = decode_command(raw)
    except RemoteProtocolError as exc:
        error = exc
    if error is not None:
        assert error.abort == DIMSE_ABORT
    else:
        assert isinstance(result, MESSAGE_TYPES_TUPLE)


MESSAGE_TYPES_TUPLE = tuple(MESSAGE_TYPES)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=256))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    _decode_or_reject(raw)


_ELEMENT_NUMBERS = st.sampled_from(
    [
        0x0000,
        0x0001,
        0x0002,
        0x0003,
        0x0100,
        0x0110,
        0x0120,
        0x0600,
        0x0700,
        0x0800,
        0x0900,
        0x0901,
        0x0902,
        0x0903,
        0x1000,
        0x1001,
        0x1002,
        0x1008,
        0x1020,
        0x1021,
        0x1022,
        0x1023,
        0x1030,
        0x1031,
        0x5010,
    ]
)
_FUZZ_ELEMENT = st.one_of(
    st.builds(element, _ELEMENT_NUMBERS, st.binary(max_size=12)),
    st.builds(us, st.just(0x0100), st.sampled_from([int(f) for f in CommandField])),
    st.builds(us, st.sampled_from([0x0800, 0x0110, 0x0120, 0x0900, 0x0700]), _US),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_FUZZ_ELEMENT, max_size=14).map(b"".join))
def test_fuzz_well_framed_elements(raw: bytes) -> None:
    _decode_or_reject(raw)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([v for v, _ in VECTORS]),
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 300),
)
def test_fuzz_mutated_vectors(vector: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    raw = bytearray(vector)
    for position, value in flips:
        raw[position % len(raw)] = value
    _decode_or_reject(bytes(raw[: len(raw) - cut % len(raw)]))
    _decode_or_reject(bytes(raw))


# --- encode errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "match"),
    [
        (CEchoRq(message_id=0x10000, affected_sop_class_uid="1.2"), "cannot encode CEchoRq"),
        (CEchoRq(message_id=-1, affected_sop_class_uid="1.2"), "cannot encode CEchoRq"),
        (
            CEchoRsp(message_id_being_responded_to=1, status=0, error_comment="\u20ac"),
            "cannot encode CEchoRsp",
        ),
        (
            CStoreRsp(message_id_being_responded_to=1, status=0xC000, offending_element=()),
            r"\(0000,0901\) AT needs at least one tag",
        ),
        (
            CStoreRsp(message_id_being_responded_to=1, status=0xC000, offending_element=(1 << 32,)),
            "cannot encode CStoreRsp",
        ),
    ],
)
def test_unencodable_values(cmd: Command, match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        encode_command(cmd)


def test_encode_rejects_non_command() -> None:
    with pytest.raises(LocalProtocolError, match="not a DIMSE command record: str"):
        encode_command("C-ECHO")  # type: ignore[arg-type]


def test_has_dataset_encodings() -> None:
    # PS3.7 E.1: 0x0101 means no data set; we send 0x0001 otherwise.
    assert encode_command(ECHO)[-2:] == b"\x01\x01"
    assert encode_command(msgspec.structs.replace(ECHO, has_dataset=True))[-2:] == b"\x01\x00"


def test_records_are_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        ECHO.message_id = 2  # type: ignore[misc]
    assert hash(ECHO) == hash(CEchoRq(message_id=1, affected_sop_class_uid="1.2.840.10008.1.1"))


# --- status ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (0x0000, StatusCategory.SUCCESS),
        (0xFF00, StatusCategory.PENDING),
        (0xFF01, StatusCategory.PENDING),
        (0xFE00, StatusCategory.CANCEL),
        (0x0001, StatusCategory.WARNING),
        (0x0107, StatusCategory.WARNING),
        (0x0116, StatusCategory.WARNING),
        (0xB000, StatusCategory.WARNING),
        (0xB006, StatusCategory.WARNING),
        (0xB007, StatusCategory.WARNING),
        (0xBFFF, StatusCategory.WARNING),
        (0xA700, StatusCategory.FAILURE),
        (0xA7FF, StatusCategory.FAILURE),
        (0xA701, StatusCategory.FAILURE),
        (0xA702, StatusCategory.FAILURE),
        (0xA801, StatusCategory.FAILURE),
        (0xA900, StatusCategory.FAILURE),
        (0xA9FF, StatusCategory.FAILURE),
        (0xC000, StatusCategory.FAILURE),
        (0xCFFF, StatusCategory.FAILURE),
        (0x0110, StatusCategory.FAILURE),
        (0x0111, StatusCategory.FAILURE),
        (0x0112, StatusCategory.FAILURE),
        (0x0117, StatusCategory.FAILURE),
        (0x0118, StatusCategory.FAILURE),
        (0x0119, StatusCategory.FAILURE),
        (0x0122, StatusCategory.FAILURE),
        (0x0124, StatusCategory.FAILURE),
        (0x0210, StatusCategory.FAILURE),
        (0x0211, StatusCategory.FAILURE),
        (0x0212, StatusCategory.FAILURE),
        (0x0213, StatusCategory.FAILURE),
        (0xFF02, StatusCategory.FAILURE),  # undefined: never mistaken for a good one
        (0x0002, StatusCategory.FAILURE),
        (0xFE01, StatusCategory.FAILURE),
    ],
)
def test_status_category(status: int, expected: StatusCategory) -> None:
    assert category(status) is expected


def test_status_values() -> None:
    assert int(Status.MOVE_DESTINATION_UNKNOWN) == 0xA801
    assert int(Status.OUT_OF_RESOURCES_SUBOPERATIONS) == 0xA702
    assert int(Status.DUPLICATE_SOP_INSTANCE) == 0x0111
    assert Status(0xB000).name == "COERCION_OF_DATA_ELEMENTS"  # the C-GET/C-MOVE name is an alias
    assert Status["SUBOPERATIONS_COMPLETE_WITH_FAILURES"] == 0xB000
    assert {category(s) for s in Status} == set(StatusCategory)


def test_status_categories_agree_with_pynetdicom() -> None:
    from pynetdicom.status import code_to_category

    for status in range(0x10000):
        theirs = code_to_category(status)
        if theirs != "Unknown":
            assert category(status).value == theirs.lower(), hex(status)
