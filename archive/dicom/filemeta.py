"""DICOM Part 10 file preamble and File Meta Information (PS3.10 7.1), pure.

:func:`encode_file_meta` builds the 128-byte preamble, ``DICM`` and group 0002 in
Explicit VR Little Endian for an instance received over the network: the file is
then these bytes followed by the data set exactly as it was sent.
:func:`decode_file_meta` reads them back from the leading bytes of a file and says
where the data set starts, so a sender can stream the rest without parsing it.
:func:`guess_transfer_syntax` names the encoding of a data set written without
File Meta (older modalities wrote them) from its first element, as DCMTK's and
pydicom's readers do. No I/O here: callers hand in bytes.
"""

from __future__ import annotations

import struct

import msgspec

from archive.dicom.uids import (
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LE,
)
from archive.dicom.wire import ALL_VR_BYTES, LE, LONG_VR_BYTES
from archive.errors import ArchiveError

PREAMBLE_LENGTH = 128
MAGIC = b"DICM"
#: Enough leading bytes to hold any sane File Meta Information.
MAX_META_LENGTH = 64 * 1024

_HEADER = struct.Struct("<HH2s")
_LONG = LE.tag_vr_long_length
_UL = LE.long_length
#: The first element of a bare data set's group 0008, Little or Big Endian.
_GROUP_0008_LE = b"\x08\x00"
_GROUP_0008_BE = b"\x00\x08"
_GROUP_0002 = b"\x02\x00"
#: Largest first-element length taken for Implicit VR: group 0008's leading
#: elements (character set, image type, dates, UIDs) are short, and a bound keeps
#: text that happens to start with a backspace from passing for a data set.
_IMPLICIT_FIRST_LENGTH = 1024


class FileMetaError(ArchiveError):
    """The bytes are not a Part 10 file we can read."""

    code = "dicom.filemeta"


class FileMeta(msgspec.Struct, frozen=True, kw_only=True):
    """The File Meta Information attributes we use (PS3.10 Table 7.1-1)."""

    media_storage_sop_class_uid: str
    media_storage_sop_instance_uid: str
    transfer_syntax_uid: str
    implementation_class_uid: str = IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = IMPLEMENTATION_VERSION_NAME
    source_application_entity_title: str = ""


def _element(group_element: int, vr: bytes, value: bytes) -> bytes:
    group, element = group_element >> 16, group_element & 0xFFFF
    if vr in LONG_VR_BYTES:
        return _LONG.pack(group, element, vr, len(value)) + value
    return _HEADER.pack(group, element, vr) + struct.pack("<H", len(value)) + value


def _ui(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def _text(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b" " if len(raw) % 2 else raw


def encode_file_meta(meta: FileMeta) -> bytes:
    """Preamble, ``DICM`` and group 0002 (Explicit VR LE) for ``meta``."""
    body = b"".join(
        [
            _element(0x00020001, b"OB", b"\x00\x01"),
            _element(0x00020002, b"UI", _ui(meta.media_storage_sop_class_uid)),
            _element(0x00020003, b"UI", _ui(meta.media_storage_sop_instance_uid)),
            _element(0x00020010, b"UI", _ui(meta.transfer_syntax_uid)),
            _element(0x00020012, b"UI", _ui(meta.implementation_class_uid)),
            _element(0x00020013, b"SH", _text(meta.implementation_version_name)),
        ]
        + (
            [_element(0x00020016, b"AE", _text(meta.source_application_entity_title))]
            if meta.source_application_entity_title
            else []
        )
    )
    group_length = _element(0x00020000, b"UL", _UL.pack(len(body)))
    return bytes(PREAMBLE_LENGTH) + MAGIC + group_length + body


def decode_file_meta(data: bytes | memoryview) -> tuple[FileMeta, int]:
    """The File Meta Information at the start of ``data`` and the data set's offset.

    ``data`` must hold at least the whole of group 0002 (read
    :data:`MAX_META_LENGTH` bytes, or the whole file if smaller). Elements of
    group 0002 are walked one by one rather than trusting the group length, which
    some writers get wrong.
    """
    view = memoryview(data)
    if (
        len(view) < PREAMBLE_LENGTH + 4
        or bytes(view[PREAMBLE_LENGTH : PREAMBLE_LENGTH + 4]) != MAGIC
    ):
        raise FileMetaError("no DICM prefix after the 128-byte preamble: not a Part 10 file")
    offset = PREAMBLE_LENGTH + 4
    values: dict[int, str] = {}
    end = len(view)
    while offset + 8 <= end:
        group, element, vr = _HEADER.unpack_from(view, offset)
        if group != 0x0002:
            break
        if vr in LONG_VR_BYTES:
            if offset + 12 > end:
                raise FileMetaError("truncated file meta element")
            length = _LONG.unpack_from(view, offset)[3]
            start = offset + 12
        else:
            length = struct.unpack_from("<H", view, offset + 6)[0]
            start = offset + 8
        if start + length > end:
            raise FileMetaError("file meta element overruns the data read")
        if vr in (b"UI", b"AE", b"SH"):
            raw = bytes(view[start : start + length])
            values[element] = raw.decode("ascii", "replace").rstrip("\0 ").lstrip(" ")
        offset = start + length
    ts = values.get(0x0010)
    if not ts:
        raise FileMetaError("file meta has no Transfer Syntax UID (0002,0010)")
    meta = FileMeta(
        media_storage_sop_class_uid=values.get(0x0002, ""),
        media_storage_sop_instance_uid=values.get(0x0003, ""),
        transfer_syntax_uid=ts,
        implementation_class_uid=values.get(0x0012, ""),
        implementation_version_name=values.get(0x0013, ""),
        source_application_entity_title=values.get(0x0016, ""),
    )
    return meta, offset


def guess_transfer_syntax(head: bytes | memoryview) -> str | None:
    """The transfer syntax of a data set without File Meta, from its first 8 bytes.

    Every such data set starts in group 0008 (the SOP Common and General Image
    modules' attributes come first in tag order); its first element tells the
    byte order (the group's bytes) and whether VRs are explicit (two letters of a
    known VR after the tag). Implicit VR Little Endian needs a short first length.
    None when the bytes are no such start: Deflated cannot be told from its first
    bytes, nor can anything Implicit VR Big Endian (no standard syntax) be sent.
    """
    if len(head) < 8:
        return None
    group, vr = bytes(head[:2]), bytes(head[4:6])
    explicit = vr in ALL_VR_BYTES
    if group == _GROUP_0008_LE:
        if explicit:
            return EXPLICIT_VR_LE
        if int.from_bytes(head[4:8], "little") < _IMPLICIT_FIRST_LENGTH:
            return IMPLICIT_VR_LE
        return None
    if group == _GROUP_0008_BE and explicit:
        return EXPLICIT_VR_BE
    return None


def lacks_preamble(head: bytes | memoryview) -> bool:
    """Whether ``head`` starts with File Meta Information itself (group 0002, in
    Explicit VR), without the preamble and ``DICM`` prefix a Part 10 file has."""
    vr = bytes(head[4:6])
    return bytes(head[:2]) == _GROUP_0002 and vr in ALL_VR_BYTES
