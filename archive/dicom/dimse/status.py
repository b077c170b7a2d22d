"""DIMSE status values and their categories (PS3.7 Annex C, PS3.4 service annexes).

A status is a 16-bit value in the Status (0000,0900) element of every response.
:class:`Status` names the values this node sends or must recognise;
:func:`category` classifies any value, known or not, into the five categories
of PS3.7 C.1-C.5. This module holds no policy about which status a service
answers with: that lives in ``services/``.
"""

from __future__ import annotations

from enum import Enum, IntEnum

__all__ = ["Status", "StatusCategory", "category"]


class StatusCategory(Enum):
    """Status categories, PS3.7 Annex C."""

    SUCCESS = "success"  # C.1
    PENDING = "pending"  # C.2
    CANCEL = "cancel"  # C.3
    WARNING = "warning"  # C.4
    FAILURE = "failure"  # C.5


class Status(IntEnum):
    """Common DIMSE status values. Ranges are named by their first value."""

    # PS3.7 C.1
    SUCCESS = 0x0000

    # PS3.7 C.2; PS3.4 Tables C.4-1 (C-FIND), C.4-2 (C-MOVE), C.4-3 (C-GET)
    PENDING = 0xFF00
    #: C-FIND pending, one or more Optional Keys were not supported, PS3.4 Table C.4-1.
    PENDING_WARNING = 0xFF01

    # PS3.7 C.3; PS3.4 Tables C.4-1, C.4-2, C.4-3
    CANCEL = 0xFE00

    # Warnings, PS3.7 C.4 and PS3.4
    #: Service-specific warning, e.g. Print Management (PS3.4 Annex H).
    WARNING = 0x0001
    #: Attribute List Error, PS3.7 C.4.
    ATTRIBUTE_LIST_ERROR = 0x0107
    #: Attribute Value Out of Range, PS3.7 C.4.
    ATTRIBUTE_VALUE_OUT_OF_RANGE = 0x0116
    #: C-STORE Coercion of Data Elements, PS3.4 Table B.2-1; C-GET/C-MOVE
    #: sub-operations complete with failures or warnings, PS3.4 Tables C.4-2, C.4-3.
    COERCION_OF_DATA_ELEMENTS = 0xB000
    #: The same value, as C-GET/C-MOVE name it (an alias of the member above).
    SUBOPERATIONS_COMPLETE_WITH_FAILURES = 0xB000
    #: C-STORE Elements Discarded, PS3.4 Table B.2-1.
    ELEMENTS_DISCARDED = 0xB006
    #: C-STORE Data Set does not match SOP Class (stored anyway), PS3.4 Table B.2-1.
    DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007

    # Failures, service-specific ranges (PS3.4)
    #: Refused: Out of Resources, A700-A7FF, PS3.4 Tables B.2-1, C.4-1.
    OUT_OF_RESOURCES = 0xA700
    #: Refused: Out of Resources - unable to calculate number of matches,
    #: PS3.4 Tables C.4-2, C.4-3.
    OUT_OF_RESOURCES_MATCHES = 0xA701
    #: Refused: Out of Resources - unable to perform sub-operations,
    #: PS3.4 Tables C.4-2, C.4-3.
    OUT_OF_RESOURCES_SUBOPERATIONS = 0xA702
    #: Refused: Move Destination unknown, PS3.4 Table C.4-2.
    MOVE_DESTINATION_UNKNOWN = 0xA801
    #: Error: Data Set / Identifier does not match SOP Class, A900-A9FF,
    #: PS3.4 Tables B.2-1, C.4-1.
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    #: Error: Cannot understand / Unable to process, C000-CFFF, PS3.4 Tables
    #: B.2-1, C.4-1.
    CANNOT_UNDERSTAND = 0xC000

    # Failures, general (mostly N-services), PS3.7 C.5; meanings per PS3.7 Annex C
    NO_SUCH_ATTRIBUTE = 0x0105
    INVALID_ATTRIBUTE_VALUE = 0x0106
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_SOP_INSTANCE = 0x0112
    NO_SUCH_EVENT_TYPE = 0x0113
    NO_SUCH_ARGUMENT = 0x0114
    INVALID_ARGUMENT_VALUE = 0x0115
    INVALID_OBJECT_INSTANCE = 0x0117
    NO_SUCH_SOP_CLASS = 0x0118
    CLASS_INSTANCE_CONFLICT = 0x0119
    MISSING_ATTRIBUTE = 0x0120
    MISSING_ATTRIBUTE_VALUE = 0x0121
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NO_SUCH_ACTION = 0x0123
    NOT_AUTHORIZED = 0x0124
    DUPLICATE_INVOCATION = 0x0210
    UNRECOGNIZED_OPERATION = 0x0211
    MISTYPED_ARGUMENT = 0x0212
    RESOURCE_LIMITATION = 0x0213


_PENDING = frozenset({0xFF00, 0xFF01})
_WARNING = frozenset({0x0001, 0x0107, 0x0116})


def category(status: int) -> StatusCategory:
    """The category of a status value, PS3.7 Annex C.

    Warnings are 0001, 0107, 0116 and the service-specific Bxxx range (PS3.4
    Tables B.2-1, C.4-2, C.4-3); everything that is not success, pending, cancel or a
    warning is a failure, including values no annex defines, so an unknown
    status is never mistaken for a good one.
    """
    if status == 0x0000:
        return StatusCategory.SUCCESS
    if status in _PENDING:
        return StatusCategory.PENDING
    if status == 0xFE00:
        return StatusCategory.CANCEL
    if status in _WARNING or 0xB000 <= status <= 0xBFFF:
        return StatusCategory.WARNING
    return StatusCategory.FAILURE
