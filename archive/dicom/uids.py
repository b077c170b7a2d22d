"""The UIDs the node negotiates with: SOP classes and transfer syntaxes (PS3.6 Annex A).

What this module is: constants, the transfer-syntax tables in our preference order,
the storage SOP classes (generated into :mod:`archive.dicom.storage_classes`, see
``tools/gen_storage_classes.py``), our implementation identification (PS3.7
D.3.3.2), and two small helpers, :func:`name` for logs and :func:`is_valid_uid`.
What it is not: a UID dictionary. It imports neither pydicom nor pynetdicom, so
importing it costs nothing at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from archive.dicom.storage_classes import STORAGE_SOP_CLASS_KEYWORDS, STORAGE_SOP_CLASSES

__all__ = [
    "ACCEPTED_STORAGE_SOP_CLASSES",
    "ALL_TRANSFER_SYNTAXES",
    "DEFLATED_EXPLICIT_VR_LE",
    "DEFLATED_IMAGE_FRAME_COMPRESSION",
    "ENCAPSULATED_TRANSFER_SYNTAXES",
    "ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LE",
    "EXPLICIT_VR_BE",
    "EXPLICIT_VR_LE",
    "EXTRA_STORAGE_SOP_CLASS_KEYWORDS",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "IMPLICIT_VR_LE",
    "NATIVE_TRANSFER_SYNTAXES",
    "PATIENT_ROOT_QR_FIND",
    "PATIENT_ROOT_QR_GET",
    "PATIENT_ROOT_QR_MOVE",
    "QR_CLASSES",
    "STORAGE_SOP_CLASSES",
    "STORAGE_SOP_CLASS_KEYWORDS",
    "STUDY_ROOT_QR_FIND",
    "STUDY_ROOT_QR_GET",
    "STUDY_ROOT_QR_MOVE",
    "TRANSFER_SYNTAX_KEYWORDS",
    "VERIFICATION",
    "is_valid_uid",
    "name",
    "usable_uid",
]

#: Verification SOP Class, PS3.4 A.4.
VERIFICATION = "1.2.840.10008.1.1"

# Query/Retrieve information models, PS3.4 C.6 (Annex C.6.1 Patient Root, C.6.2
# Study Root); PS3.6 Annex A names them.
PATIENT_ROOT_QR_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_QR_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_QR_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_QR_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_QR_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_QR_GET = "1.2.840.10008.5.1.4.1.2.2.3"
QR_CLASSES = frozenset(
    {
        PATIENT_ROOT_QR_FIND,
        PATIENT_ROOT_QR_MOVE,
        PATIENT_ROOT_QR_GET,
        STUDY_ROOT_QR_FIND,
        STUDY_ROOT_QR_MOVE,
        STUDY_ROOT_QR_GET,
    }
)

#: Storage SOP classes an archive meets that the generated table (pynetdicom's
#: list) lacks: current ones of PS3.4 Table B.5-1 pynetdicom 3.0.4 omits, and
#: retired ones (PS3.6 Annex A marks them so) that older modalities and archives
#: still send, as DCMTK's storescp accepts them. Keywords as in PS3.6.
EXTRA_STORAGE_SOP_CLASS_KEYWORDS: Mapping[str, str] = MappingProxyType(
    {
        # Current, Table B.5-1.
        "1.2.840.10008.5.1.4.1.1.200.1": "CTDefinedProcedureProtocolStorage",
        "1.2.840.10008.5.1.4.1.1.200.3": "ProtocolApprovalStorage",
        "1.2.840.10008.5.1.4.1.1.200.7": "XADefinedProcedureProtocolStorage",
        "1.2.840.10008.5.1.4.1.1.201.1": "InventoryStorage",
        # Retired.
        "1.2.840.10008.5.1.4.1.1.3": "UltrasoundMultiFrameImageStorageRetired",
        "1.2.840.10008.5.1.4.1.1.5": "NuclearMedicineImageStorageRetired",
        "1.2.840.10008.5.1.4.1.1.6": "UltrasoundImageStorageRetired",
        "1.2.840.10008.5.1.4.1.1.8": "StandaloneOverlayStorage",
        "1.2.840.10008.5.1.4.1.1.9": "StandaloneCurveStorage",
        "1.2.840.10008.5.1.4.1.1.9.1": "WaveformStorageTrial",
        "1.2.840.10008.5.1.4.1.1.10": "StandaloneModalityLUTStorage",
        "1.2.840.10008.5.1.4.1.1.11": "StandaloneVOILUTStorage",
        "1.2.840.10008.5.1.4.1.1.12.3": "XRayAngiographicBiPlaneImageStorage",
        "1.2.840.10008.5.1.4.1.1.77.1": "VLImageStorageTrial",
        "1.2.840.10008.5.1.4.1.1.77.2": "VLMultiFrameImageStorageTrial",
        "1.2.840.10008.5.1.4.1.1.88.1": "TextSRStorageTrial",
        "1.2.840.10008.5.1.4.1.1.88.2": "AudioSRStorageTrial",
        "1.2.840.10008.5.1.4.1.1.88.3": "DetailSRStorageTrial",
        "1.2.840.10008.5.1.4.1.1.88.4": "ComprehensiveSRStorageTrial",
        "1.2.840.10008.5.1.4.1.1.129": "StandalonePETCurveStorage",
    }
)

#: What the node accepts for storage: the generated table plus the extras.
ACCEPTED_STORAGE_SOP_CLASSES: frozenset[str] = STORAGE_SOP_CLASSES | frozenset(
    EXTRA_STORAGE_SOP_CLASS_KEYWORDS
)

#: Our Implementation Class UID (PS3.7 D.3.3.2), under the UUID-derived root "2.25."
#: of PS3.5 B.2; the integer is one uuid4 drawn once and fixed here for good.
IMPLEMENTATION_CLASS_UID = "2.25.109315053040662954175939740102829348900"
#: Our Implementation Version Name (PS3.7 D.3.3.2): 1 to 16 characters.
IMPLEMENTATION_VERSION_NAME = "ARCHIVE_NODE_01"

# --- Native (not encapsulated) transfer syntaxes, PS3.5 A.1, A.2, A.5, A.3 ---------
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
#: Retired (PS3.5 A.3) but still sent by old equipment, so still accepted.
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"

# --- Encapsulated transfer syntaxes, PS3.5 A.4 ----------------------------------------
ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.98"  # A.4.11
JPEG_BASELINE_8BIT = "1.2.840.10008.1.2.4.50"  # A.4.1, process 1
JPEG_EXTENDED_12BIT = "1.2.840.10008.1.2.4.51"  # A.4.1, processes 2 and 4
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.57"  # A.4.1, process 14
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"  # A.4.1, process 14, selection value 1
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"  # A.4.3
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"  # A.4.3
JPEG_2000_LOSSLESS = "1.2.840.10008.1.2.4.90"  # A.4.4
JPEG_2000 = "1.2.840.10008.1.2.4.91"  # A.4.4
JPEG_2000_MC_LOSSLESS = "1.2.840.10008.1.2.4.92"  # A.4.4, Part 2 multi-component
JPEG_2000_MC = "1.2.840.10008.1.2.4.93"  # A.4.4, Part 2 multi-component
MPEG2_MPML = "1.2.840.10008.1.2.4.100"  # A.4.5
MPEG2_MPML_SV = "1.2.840.10008.1.2.4.100.1"  # A.4.5, fragmentable
MPEG2_MPHL = "1.2.840.10008.1.2.4.101"  # A.4.6
MPEG2_MPHL_SV = "1.2.840.10008.1.2.4.101.1"  # A.4.6, fragmentable
MPEG4_HP41 = "1.2.840.10008.1.2.4.102"  # A.4.7
MPEG4_HP41_SV = "1.2.840.10008.1.2.4.102.1"
MPEG4_HP41_BD = "1.2.840.10008.1.2.4.103"
MPEG4_HP41_BD_SV = "1.2.840.10008.1.2.4.103.1"
MPEG4_HP42_2D = "1.2.840.10008.1.2.4.104"
MPEG4_HP42_2D_SV = "1.2.840.10008.1.2.4.104.1"
MPEG4_HP42_3D = "1.2.840.10008.1.2.4.105"
MPEG4_HP42_3D_SV = "1.2.840.10008.1.2.4.105.1"
MPEG4_HP42_STEREO = "1.2.840.10008.1.2.4.106"
MPEG4_HP42_STEREO_SV = "1.2.840.10008.1.2.4.106.1"
HEVC_MP51 = "1.2.840.10008.1.2.4.107"  # A.4.8
HEVC_M10P51 = "1.2.840.10008.1.2.4.108"
JPEG_XL_LOSSLESS = "1.2.840.10008.1.2.4.110"  # A.4.12
JPEG_XL_JPEG_RECOMPRESSION = "1.2.840.10008.1.2.4.111"
JPEG_XL = "1.2.840.10008.1.2.4.112"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"  # A.4.10
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"  # A.4.2
DEFLATED_IMAGE_FRAME_COMPRESSION = "1.2.840.10008.1.2.8.1"  # A.4.13

#: Transfer syntaxes whose Pixel Data is not encapsulated, in preference order.
NATIVE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_BE,
)

# Preference: exact pixels before lossy ones, the widely decodable before the rare,
# still images before video. The order matters only where we choose (as a
# requestor, or when transcoding); as an acceptor we keep the requestor's order.
_ENCAPSULATED_IN_ORDER: tuple[str, ...] = (
    # lossless
    ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LE,
    JPEG_LS_LOSSLESS,
    JPEG_2000_LOSSLESS,
    HTJ2K_LOSSLESS,
    HTJ2K_LOSSLESS_RPCL,
    JPEG_LOSSLESS_SV1,
    JPEG_LOSSLESS,
    RLE_LOSSLESS,
    DEFLATED_IMAGE_FRAME_COMPRESSION,
    JPEG_XL_LOSSLESS,
    JPEG_2000_MC_LOSSLESS,
    # lossy (or a recompression of lossy data)
    JPEG_BASELINE_8BIT,
    JPEG_EXTENDED_12BIT,
    JPEG_LS_NEAR_LOSSLESS,
    JPEG_2000,
    HTJ2K,
    JPEG_XL_JPEG_RECOMPRESSION,
    JPEG_XL,
    JPEG_2000_MC,
    # video
    MPEG4_HP41,
    MPEG4_HP41_SV,
    MPEG4_HP41_BD,
    MPEG4_HP41_BD_SV,
    MPEG4_HP42_2D,
    MPEG4_HP42_2D_SV,
    MPEG4_HP42_3D,
    MPEG4_HP42_3D_SV,
    MPEG4_HP42_STEREO,
    MPEG4_HP42_STEREO_SV,
    HEVC_MP51,
    HEVC_M10P51,
    MPEG2_MPML,
    MPEG2_MPML_SV,
    MPEG2_MPHL,
    MPEG2_MPHL_SV,
)

#: Every encapsulated transfer syntax of the current standard (PS3.5 A.4). Left out on
#: purpose: the JPIP referenced ones (pixels are fetched from elsewhere, PS3.5 A.6 and
#: A.12) and the SMPTE ST 2110 ones (PS3.5 A.8-A.10: the essence is not in the data
#: set), and the retired JPEG processes.
ENCAPSULATED_TRANSFER_SYNTAXES: frozenset[str] = frozenset(_ENCAPSULATED_IN_ORDER)

#: Every transfer syntax we know, native first then encapsulated, best first.
ALL_TRANSFER_SYNTAXES: tuple[str, ...] = NATIVE_TRANSFER_SYNTAXES + _ENCAPSULATED_IN_ORDER

#: Keyword (as in PS3.6 Annex A) of each transfer syntax, for logs.
TRANSFER_SYNTAX_KEYWORDS: Mapping[str, str] = MappingProxyType(
    {
        IMPLICIT_VR_LE: "ImplicitVRLittleEndian",
        EXPLICIT_VR_LE: "ExplicitVRLittleEndian",
        DEFLATED_EXPLICIT_VR_LE: "DeflatedExplicitVRLittleEndian",
        EXPLICIT_VR_BE: "ExplicitVRBigEndian",
        ENCAPSULATED_UNCOMPRESSED_EXPLICIT_VR_LE: "EncapsulatedUncompressedExplicitVRLittleEndian",
        JPEG_BASELINE_8BIT: "JPEGBaseline8Bit",
        JPEG_EXTENDED_12BIT: "JPEGExtended12Bit",
        JPEG_LOSSLESS: "JPEGLossless",
        JPEG_LOSSLESS_SV1: "JPEGLosslessSV1",
        JPEG_LS_LOSSLESS: "JPEGLSLossless",
        JPEG_LS_NEAR_LOSSLESS: "JPEGLSNearLossless",
        JPEG_2000_LOSSLESS: "JPEG2000Lossless",
        JPEG_2000: "JPEG2000",
        JPEG_2000_MC_LOSSLESS: "JPEG2000MCLossless",
        JPEG_2000_MC: "JPEG2000MC",
        MPEG2_MPML: "MPEG2MPML",
        MPEG2_MPML_SV: "MPEG2MPMLF",
        MPEG2_MPHL: "MPEG2MPHL",
        MPEG2_MPHL_SV: "MPEG2MPHLF",
        MPEG4_HP41: "MPEG4HP41",
        MPEG4_HP41_SV: "MPEG4HP41F",
        MPEG4_HP41_BD: "MPEG4HP41BD",
        MPEG4_HP41_BD_SV: "MPEG4HP41BDF",
        MPEG4_HP42_2D: "MPEG4HP422D",
        MPEG4_HP42_2D_SV: "MPEG4HP422DF",
        MPEG4_HP42_3D: "MPEG4HP423D",
        MPEG4_HP42_3D_SV: "MPEG4HP423DF",
        MPEG4_HP42_STEREO: "MPEG4HP42STEREO",
        MPEG4_HP42_STEREO_SV: "MPEG4HP42STEREOF",
        HEVC_MP51: "HEVCMP51",
        HEVC_M10P51: "HEVCM10P51",
        JPEG_XL_LOSSLESS: "JPEGXLLossless",
        JPEG_XL_JPEG_RECOMPRESSION: "JPEGXLJPEGRecompression",
        JPEG_XL: "JPEGXL",
        HTJ2K_LOSSLESS: "HTJ2KLossless",
        HTJ2K_LOSSLESS_RPCL: "HTJ2KLosslessRPCL",
        HTJ2K: "HTJ2K",
        RLE_LOSSLESS: "RLELossless",
        DEFLATED_IMAGE_FRAME_COMPRESSION: "DeflatedImageFrameCompression",
    }
)

_OTHER_KEYWORDS: Mapping[str, str] = MappingProxyType(
    {
        VERIFICATION: "Verification",
        "1.2.840.10008.3.1.1.1": "DICOMApplicationContext",
        PATIENT_ROOT_QR_FIND: "PatientRootQueryRetrieveInformationModelFind",
        PATIENT_ROOT_QR_MOVE: "PatientRootQueryRetrieveInformationModelMove",
        PATIENT_ROOT_QR_GET: "PatientRootQueryRetrieveInformationModelGet",
        STUDY_ROOT_QR_FIND: "StudyRootQueryRetrieveInformationModelFind",
        STUDY_ROOT_QR_MOVE: "StudyRootQueryRetrieveInformationModelMove",
        STUDY_ROOT_QR_GET: "StudyRootQueryRetrieveInformationModelGet",
    }
)

# PS3.5 9.1: components of digits separated by ".", no leading zero in a
# multi-digit component, at most 64 characters.
_UID_RE = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")


def is_valid_uid(uid: str) -> bool:
    """Whether ``uid`` is a well-formed UID per PS3.5 9.1 (syntax only, not registry)."""
    return 0 < len(uid) <= 64 and _UID_RE.fullmatch(uid) is not None


def usable_uid(uid: str) -> bool:
    """Whether ``uid`` can identify a stored instance: digits and dots, 1-64
    characters, no empty component. Laxer than :func:`is_valid_uid` in one way
    only: a component with a leading zero passes, as modalities send such UIDs
    and other archives (DCMTK, Orthanc) store them."""
    return 0 < len(uid) <= 64 and not uid.strip("0123456789.") and "" not in uid.split(".")


def shown_uid(value: str) -> str:
    """``value`` quoted for a log line if it is a usable UID, else only what it
    is. A value that is no UID may be anything a damaged data set or a broken
    peer put there (a length error swallows the names, IDs and dates that
    follow): it is never repeated, as no patient data may reach the logs."""
    if usable_uid(value):
        return repr(value)
    return f"<not a UID: {len(value)} characters>"


def name(uid: str) -> str:
    """The keyword of a SOP class or transfer syntax we know, else ``uid`` itself (logs)."""
    return (
        STORAGE_SOP_CLASS_KEYWORDS.get(uid)
        or EXTRA_STORAGE_SOP_CLASS_KEYWORDS.get(uid)
        or TRANSFER_SYNTAX_KEYWORDS.get(uid)
        or _OTHER_KEYWORDS.get(uid)
        or uid
    )
