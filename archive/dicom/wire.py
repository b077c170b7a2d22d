"""Element header encodings of PS3.5 7.1 and 7.5, shared by the data set readers.

What this is: the constants both :mod:`archive.dicom.dataset` (whole identifiers) and
:mod:`archive.dicom.header` (streamed C-STORE data sets) read headers with: the VRs
with a 2-byte length, the three native header encodings and their ``struct``
layouts, the item and delimitation tags, the Deflated transfer syntaxes. What it is
not: a codec; each reader keeps its own walk, tuned for its own job.
"""

from __future__ import annotations

from struct import Struct
from typing import NamedTuple

from archive.dicom import uids

__all__ = [
    "ALL_VR_BYTES",
    "BE",
    "DEFLATED",
    "DELIMITER_GROUP",
    "EXPLICIT_BE",
    "EXPLICIT_LE",
    "IMPLICIT_LE",
    "ITEM",
    "ITEM_DELIMITATION",
    "LE",
    "LONG_VRS",
    "LONG_VR_BYTES",
    "SEQUENCE_DELIMITATION",
    "SHORT_VRS",
    "SHORT_VR_BYTES",
    "STRUCTS",
    "UNDEFINED_LENGTH",
    "HeaderStructs",
]

#: VRs with a 2-byte length in Explicit VR, PS3.5 Table 7.1-2. Every other VR, known
#: or not, has 2 reserved bytes and a 4-byte length (PS3.5 7.1.2, and the 6.2 note
#: on new VRs).
SHORT_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO"}
    | {"LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"}
)
#: The VRs of today's standard with a 4-byte length in Explicit VR.
LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
#: The same two sets as the bytes on the wire.
SHORT_VR_BYTES = frozenset(vr.encode() for vr in SHORT_VRS)
LONG_VR_BYTES = frozenset(vr.encode() for vr in LONG_VRS)
#: Every VR we know, as bytes: two letters that tell an Explicit VR header.
ALL_VR_BYTES = SHORT_VR_BYTES | LONG_VR_BYTES

#: A length of 0xFFFFFFFF: the value (a sequence or item) ends at a delimiter.
UNDEFINED_LENGTH = 0xFFFFFFFF
#: Items and delimitation items have no VR in any transfer syntax, PS3.5 7.5.
DELIMITER_GROUP = 0xFFFE
ITEM = 0xFFFEE000
ITEM_DELIMITATION = 0xFFFEE00D
SEQUENCE_DELIMITATION = 0xFFFEE0DD

#: Header encodings, PS3.5 Annex A; an index into :data:`STRUCTS`.
IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE = 0, 1, 2


class HeaderStructs(NamedTuple):
    """The layouts of one byte order, PS3.5 7.1.1-7.1.3."""

    tag_length: Struct  # tag + 4-byte length: Implicit VR, items and delimiters
    tag_vr_length: Struct  # tag + VR + 2-byte length
    long_length: Struct  # the 4-byte length after VR and 2 reserved bytes
    tag_vr_long_length: Struct  # tag + VR + 2 reserved bytes + 4-byte length
    us: Struct  # one US value


LE = HeaderStructs(Struct("<HHL"), Struct("<HH2sH"), Struct("<L"), Struct("<HH2s2xL"), Struct("<H"))
BE = HeaderStructs(Struct(">HHL"), Struct(">HH2sH"), Struct(">L"), Struct(">HH2s2xL"), Struct(">H"))
#: Per header encoding (IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE).
STRUCTS = (LE, LE, BE)

#: Transfer syntaxes whose data set is deflated Explicit VR LE: PS3.5 A.5, and JPIP
#: Referenced Deflate (PS3.5 A.7).
DEFLATED = frozenset({uids.DEFLATED_EXPLICIT_VR_LE, "1.2.840.10008.1.2.4.95"})
