"""Golden DIMSE command sets and the pydicom oracle, shared by the DIMSE tests.

Vectors are group-0000 bytes, Implicit VR Little Endian (PS3.7 6.3.1), one per
message type, each element commented, with the record each one decodes to. pydicom's
writer is the oracle: the same elements written by ``pydicom.filewriter.write_dataset``
must give the same bytes. Used by ``test_dimse_vectors`` and ``test_dimse_command``;
holds no tests itself.
"""

from __future__ import annotations

import struct

import msgspec
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
    CStoreRq,
    CStoreRsp,
    NActionRq,
    NActionRsp,
    NEventReportRq,
    NEventReportRsp,
    Priority,
    Status,
)
from archive.dicom.errors import AbortReason, AbortSource

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
