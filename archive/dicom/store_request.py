"""A received data set checked against its C-STORE-RQ (PS3.4 B.2.3).

Kept apart from :mod:`archive.dicom.header`, which reads the attributes this
checks; pure like it.
"""

from __future__ import annotations

from archive.dicom.attributes import InstanceAttributes
from archive.dicom.dimse.status import Status
from archive.dicom.header import HeaderError
from archive.dicom.uids import shown_uid

__all__ = [
    "SERIES_INSTANCE_UID",
    "SOP_CLASS_UID",
    "SOP_INSTANCE_UID",
    "STUDY_INSTANCE_UID",
    "check_store_request",
]

SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E


def check_store_request(
    attrs: InstanceAttributes, sop_class_uid: str, sop_instance_uid: str
) -> None:
    """Check a received data set against its C-STORE-RQ, PS3.4 B.2.3 Table B.2-1.

    Raises :class:`HeaderError` with status C000 (Error: Cannot understand) when SOP
    Class UID (0008,0016) or SOP Instance UID (0008,0018) is missing: without them
    the data set cannot be told what it is, so it can be said neither to match its
    command nor not to. DCMTK's storescp answers C000 too (its
    ``DU_findSOPClassAndInstanceInDataSet`` fails). PS3.4 has no status of its own
    for this: 0117 Invalid SOP Instance (PS3.7 C.5.12) is for a UID that breaks the
    construction rules.

    Raises it with status A900 (Error: Data Set does not match SOP Class) when:

    - SOP Class UID differs from the Affected SOP Class UID (0000,0002), or SOP
      Instance UID from the Affected SOP Instance UID (0000,1000), as DCMTK does;
    - Study Instance UID (0020,000D) or Series Instance UID (0020,000E) is missing.
      Both are Type 1 in the General Study and General Series modules of every
      composite IOD (PS3.3 C.7.2.1, C.7.3.1), so such a data set is not an instance
      of its SOP Class: the data set was understood (not Cxxx), it does not conform
      (A9xx), and nothing temporary went wrong (not A7xx).

    Each error names the element at fault (:attr:`HeaderError.offending`, for the
    response's Offending Element) and says what is wrong in its first 64
    characters (the Error Comment's limit); the UIDs follow, for the log.
    """
    mismatch = Status.DATASET_DOES_NOT_MATCH_SOP_CLASS
    command_class = sop_class_uid.rstrip("\0 ")
    command_instance = sop_instance_uid.rstrip("\0 ")
    if not attrs.sop_class_uid:
        raise HeaderError(
            "SOP Class UID (0008,0016) missing from the data set",
            Status.CANNOT_UNDERSTAND,
            offending=SOP_CLASS_UID,
        )
    if not attrs.sop_instance_uid:
        raise HeaderError(
            "SOP Instance UID (0008,0018) missing from the data set",
            Status.CANNOT_UNDERSTAND,
            offending=SOP_INSTANCE_UID,
        )
    if attrs.sop_class_uid != command_class:
        raise HeaderError(
            "SOP Class UID (0008,0016) differs from the command's:"
            f" {shown_uid(attrs.sop_class_uid)}, command {shown_uid(command_class)}",
            mismatch,
            offending=SOP_CLASS_UID,
        )
    if attrs.sop_instance_uid != command_instance:
        raise HeaderError(
            "SOP Instance UID (0008,0018) differs from the command's:"
            f" {shown_uid(attrs.sop_instance_uid)}, command {shown_uid(command_instance)}",
            mismatch,
            offending=SOP_INSTANCE_UID,
        )
    if not attrs.study_instance_uid:
        raise HeaderError(
            "Study Instance UID (0020,000D) missing from the data set",
            mismatch,
            offending=STUDY_INSTANCE_UID,
        )
    if not attrs.series_instance_uid:
        raise HeaderError(
            "Series Instance UID (0020,000E) missing from the data set",
            mismatch,
            offending=SERIES_INSTANCE_UID,
        )
