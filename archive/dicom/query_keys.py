"""The key attributes of the Patient Root and Study Root Q/R information models.

What this is: the table of the keys the index holds (PS3.4 C.6.1.1 for Patient Root,
C.6.2.1 for Study Root, and the additional attributes of Table C.3-1), each with its
VR, the level it belongs to in the Patient Root model, and whether the index can
match on it; plus the two models, the four levels and the Q/R SOP classes.
What it is not: the matching rules (:mod:`archive.dicom.query`) nor SQL
(:mod:`archive.index.query`). Record keys are the keywords of PS3.6.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, NamedTuple

from archive.dicom import uids

__all__ = [
    "KEYS",
    "LEVEL_ORDER",
    "QR_SOP_CLASSES",
    "SEQUENCE_KEYS",
    "UNIQUE_KEYS",
    "KeyInfo",
    "Level",
    "QueryModel",
    "effective_level",
]


class QueryModel(enum.Enum):
    """The Query/Retrieve information models we serve, PS3.4 C.3.1 and C.3.2."""

    PATIENT_ROOT = "PATIENT_ROOT"
    STUDY_ROOT = "STUDY_ROOT"


class Level(enum.StrEnum):
    """Query/Retrieve Level (0008,0052) values, PS3.4 C.6.1.1 / C.6.2.1."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


#: Depth of each level in the hierarchy (Patient Root numbering).
LEVEL_ORDER: Mapping[Level, int] = MappingProxyType(
    {Level.PATIENT: 0, Level.STUDY: 1, Level.SERIES: 2, Level.IMAGE: 3}
)

#: Q/R SOP classes, PS3.4 C.6.1.1 (Patient Root) and C.6.2.1 (Study Root); UIDs per
#: PS3.6 Annex A.
QR_SOP_CLASSES: Mapping[str, tuple[QueryModel, Literal["find", "move", "get"]]] = MappingProxyType(
    {
        uids.PATIENT_ROOT_QR_FIND: (QueryModel.PATIENT_ROOT, "find"),
        uids.PATIENT_ROOT_QR_MOVE: (QueryModel.PATIENT_ROOT, "move"),
        uids.PATIENT_ROOT_QR_GET: (QueryModel.PATIENT_ROOT, "get"),
        uids.STUDY_ROOT_QR_FIND: (QueryModel.STUDY_ROOT, "find"),
        uids.STUDY_ROOT_QR_MOVE: (QueryModel.STUDY_ROOT, "move"),
        uids.STUDY_ROOT_QR_GET: (QueryModel.STUDY_ROOT, "get"),
    }
)


class KeyInfo(NamedTuple):
    """One key attribute the index holds."""

    keyword: str
    vr: str
    #: Level in the Patient Root model; see :func:`effective_level` for Study Root.
    level: Level
    #: False for computed attributes (counts): returned, never matched.
    matchable: bool = True
    #: The record value is a DICOM multi-value ('\\'-joined): a key matches when
    #: any of its values does, PS3.4 C.2.2.3.
    multi_valued: bool = False
    #: A Required Key of its level (R in PS3.4 Tables C.6-1 to C.6-5): an entity
    #: whose value is zero length ("unknown") matches any value, C.2.2.1.2.
    required: bool = False
    #: For a sequence (VR SQ): the keys of its items the index keeps, by tag
    #: (Sequence Matching, PS3.4 C.2.2.2.6). None for every other VR.
    items: Mapping[int, KeyInfo] | None = None


_P, _ST, _SE, _I = Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE


def _code_items(level: Level) -> Mapping[int, KeyInfo]:
    """The item keys of a code sequence: the Code Sequence Macro, PS3.3 Table 8.8-1."""
    return MappingProxyType(
        {
            0x00080100: KeyInfo("CodeValue", "SH", level),
            0x00080102: KeyInfo("CodingSchemeDesignator", "SH", level),
            0x00080103: KeyInfo("CodingSchemeVersion", "SH", level),
            0x00080104: KeyInfo("CodeMeaning", "LO", level),
            0x00080119: KeyInfo("LongCodeValue", "UC", level),
            0x00080120: KeyInfo("URNCodeValue", "UR", level),
        }
    )


#: The sequences the index holds, with the item keys it keeps of each: the keys
#: PS3.4 C.6 lists for the instance level of SR documents (Concept Name Code
#: Sequence, the document title, and Content Template Sequence), the order behind a
#: series that IHE Scheduled Workflow queries images by (RAD-14), the patient's
#: other identifiers (cross-domain look-ups) and the study's procedure codes
#: (hanging protocols). Nested code sequences are matched recursively.
SEQUENCE_KEYS: Mapping[int, KeyInfo] = MappingProxyType(
    {
        0x00101002: KeyInfo(
            "OtherPatientIDsSequence",
            "SQ",
            _P,
            items=MappingProxyType(
                {
                    0x00100020: KeyInfo("PatientID", "LO", _P),
                    0x00100021: KeyInfo("IssuerOfPatientID", "LO", _P),
                    0x00100022: KeyInfo("TypeOfPatientID", "CS", _P),
                }
            ),
        ),
        0x00081032: KeyInfo("ProcedureCodeSequence", "SQ", _ST, items=_code_items(_ST)),
        0x00400275: KeyInfo(
            "RequestAttributesSequence",
            "SQ",
            _SE,
            items=MappingProxyType(
                {
                    0x00080050: KeyInfo("AccessionNumber", "SH", _SE),
                    0x0020000D: KeyInfo("StudyInstanceUID", "UI", _SE),
                    0x00321060: KeyInfo("RequestedProcedureDescription", "LO", _SE),
                    0x00321064: KeyInfo(
                        "RequestedProcedureCodeSequence", "SQ", _SE, items=_code_items(_SE)
                    ),
                    0x00400007: KeyInfo("ScheduledProcedureStepDescription", "LO", _SE),
                    0x00400008: KeyInfo(
                        "ScheduledProtocolCodeSequence", "SQ", _SE, items=_code_items(_SE)
                    ),
                    0x00400009: KeyInfo("ScheduledProcedureStepID", "SH", _SE),
                    0x00401001: KeyInfo("RequestedProcedureID", "SH", _SE),
                }
            ),
        ),
        0x0040A043: KeyInfo("ConceptNameCodeSequence", "SQ", _I, items=_code_items(_I)),
        0x0040A504: KeyInfo(
            "ContentTemplateSequence",
            "SQ",
            _I,
            items=MappingProxyType(
                {
                    0x00080105: KeyInfo("MappingResource", "CS", _I),
                    0x0040DB00: KeyInfo("TemplateIdentifier", "CS", _I),
                }
            ),
        ),
    }
)

#: Tag -> the key it is, for every attribute the index holds (0001_initial.sql).
KEYS: Mapping[int, KeyInfo] = MappingProxyType(
    {
        # Patient level, PS3.4 Table C.6-1 (Study Root: part of Table C.6-5).
        0x00100010: KeyInfo("PatientName", "PN", _P, required=True),
        0x00100020: KeyInfo("PatientID", "LO", _P, required=True),
        0x00100021: KeyInfo("IssuerOfPatientID", "LO", _P),
        0x00100030: KeyInfo("PatientBirthDate", "DA", _P),
        0x00100040: KeyInfo("PatientSex", "CS", _P),
        0x00201200: KeyInfo("NumberOfPatientRelatedStudies", "IS", _P, matchable=False),
        0x00201202: KeyInfo("NumberOfPatientRelatedSeries", "IS", _P, matchable=False),
        0x00201204: KeyInfo("NumberOfPatientRelatedInstances", "IS", _P, matchable=False),
        # Study level, PS3.4 Table C.6-2 / C.6-5.
        0x00080020: KeyInfo("StudyDate", "DA", _ST, required=True),
        0x00080030: KeyInfo("StudyTime", "TM", _ST, required=True),
        0x00080050: KeyInfo("AccessionNumber", "SH", _ST, required=True),
        0x00200010: KeyInfo("StudyID", "SH", _ST, required=True),
        0x0020000D: KeyInfo("StudyInstanceUID", "UI", _ST),
        0x00081030: KeyInfo("StudyDescription", "LO", _ST),
        0x00080090: KeyInfo("ReferringPhysicianName", "PN", _ST),
        0x00080061: KeyInfo("ModalitiesInStudy", "CS", _ST, multi_valued=True),
        0x00080062: KeyInfo("SOPClassesInStudy", "UI", _ST, multi_valued=True),
        0x00201206: KeyInfo("NumberOfStudyRelatedSeries", "IS", _ST, matchable=False),
        0x00201208: KeyInfo("NumberOfStudyRelatedInstances", "IS", _ST, matchable=False),
        # Series level, PS3.4 Table C.6-3.
        0x00080060: KeyInfo("Modality", "CS", _SE, required=True),
        0x00200011: KeyInfo("SeriesNumber", "IS", _SE, required=True),
        0x0020000E: KeyInfo("SeriesInstanceUID", "UI", _SE),
        0x0008103E: KeyInfo("SeriesDescription", "LO", _SE),
        0x00180015: KeyInfo("BodyPartExamined", "CS", _SE),
        0x00080021: KeyInfo("SeriesDate", "DA", _SE),
        0x00080031: KeyInfo("SeriesTime", "TM", _SE),
        0x00201209: KeyInfo("NumberOfSeriesRelatedInstances", "IS", _SE, matchable=False),
        # Composite object instance level, PS3.4 Table C.6-4.
        0x00200013: KeyInfo("InstanceNumber", "IS", _I, required=True),
        0x00080018: KeyInfo("SOPInstanceUID", "UI", _I),
        0x00080016: KeyInfo("SOPClassUID", "UI", _I),
        0x00080023: KeyInfo("ContentDate", "DA", _I),
        0x00080033: KeyInfo("ContentTime", "TM", _I),
        0x00280010: KeyInfo("Rows", "US", _I),
        0x00280011: KeyInfo("Columns", "US", _I),
        0x00280008: KeyInfo("NumberOfFrames", "IS", _I),
        **SEQUENCE_KEYS,
    }
)

#: The Unique Key of each level, PS3.4 C.2.2.1.1 and Tables C.6-1 to C.6-4.
UNIQUE_KEYS: Mapping[Level, int] = MappingProxyType(
    {
        Level.PATIENT: 0x00100020,
        Level.STUDY: 0x0020000D,
        Level.SERIES: 0x0020000E,
        Level.IMAGE: 0x00080018,
    }
)


def effective_level(level: Level, model: QueryModel) -> Level:
    """The level a key belongs to in ``model``.

    In Study Root, patient attributes are attributes of the study (PS3.4 C.3.2).
    """
    if model is QueryModel.STUDY_ROOT and level is Level.PATIENT:
        return Level.STUDY
    return level
