"""Builders and the pydicom oracle shared by the streaming header extractor tests.

Transfer syntax constants; the statuses and messages ``HeaderReader`` fails with;
data sets built byte by byte (:func:`element`, PS3.5 7.1) or encoded by pydicom;
pydicom's reading of a data set as ``InstanceAttributes`` (the oracle); and ways to
feed a reader. Used by ``test_header``, ``test_header_end``, ``test_header_corpus``
and ``test_header_properties``; holds no tests itself.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.valuerep import PersonName

from archive.dicom import uids
from archive.dicom.header import (
    HeaderReader,
    InstanceAttributes,
)
from archive.dicom.query_keys import KEYS, KeyInfo

IMPLICIT, EXPLICIT, BIG, DEFLATED = (
    uids.IMPLICIT_VR_LE,
    uids.EXPLICIT_VR_LE,
    uids.EXPLICIT_VR_BE,
    uids.DEFLATED_EXPLICIT_VR_LE,
)
NATIVE = (IMPLICIT, EXPLICIT, BIG, DEFLATED)
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
CANNOT_UNDERSTAND = 0xC000
DOES_NOT_MATCH = 0xA900
#: finish() on a data set cut short, once the reader was done, and before.
AFTER = "data set truncated after its header"
IN = "data set truncated in its header"

# --- data set builders and the pydicom oracle ------------------------------------------

_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"SV", b"UC", b"UN", b"UR"}
_LONG_VRS |= {b"UT", b"UV"}


def sample_path(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:  # pragma: no cover - pydicom ships these
        path = next(p for p in get_charset_files(name))
    return str(path)


def _guessed_transfer_syntax(path: str) -> str:
    implicit, little = pydicom.dcmread(path, force=True).original_encoding
    return IMPLICIT if implicit else EXPLICIT if little else BIG


def split_file(path: str) -> tuple[str, bytes]:
    """(transfer syntax, data set bytes) of a Part 10 file: the file meta removed.

    Without a file meta, or without a Transfer Syntax UID in it, the transfer syntax
    is the encoding pydicom guessed.
    """
    raw = Path(path).read_bytes()
    if raw[128:132] != b"DICM":
        return _guessed_transfer_syntax(path), raw
    pos, ts = 132, ""
    while pos < len(raw):
        group, elem, vr = struct.unpack_from("<HH2s", raw, pos)
        if group != 2:
            break
        if vr in _LONG_VRS:
            length, size = struct.unpack_from("<L", raw, pos + 8)[0], 12
        else:
            length, size = struct.unpack_from("<H", raw, pos + 6)[0], 8
        if elem == 0x10:
            ts = raw[pos + size : pos + size + length].rstrip(b"\0 ").decode()
        pos += size + length
    return ts or _guessed_transfer_syntax(path), raw[pos:]


def dataset(**values: object) -> Dataset:
    """A pydicom data set (or sequence item) of these attributes, by keyword."""
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def encode(ds: Dataset, ts: str) -> bytes:
    """``ds`` (without file meta) encoded by pydicom in a native transfer syntax."""
    fp = DicomBytesIO()
    fp.is_little_endian = ts != BIG
    fp.is_implicit_VR = ts == IMPLICIT
    write_dataset(fp, ds)
    data = bytes(fp.getvalue())
    return deflate(data) if ts == DEFLATED else data


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # PS3.5 A.5
    return compressor.compress(data) + compressor.flush()


_INTS = {"series_number", "instance_number", "number_of_frames", "rows", "columns"}
_DATES = {"study_date", "series_date", "content_date", "patient_birth_date"}
_TIMES = {"study_time", "series_time", "content_time"}
_KEYWORDS = {
    name: "".join(part.capitalize() for part in name.split("_"))
    for name in InstanceAttributes.__struct_fields__
}
_KEYWORDS.update(
    sop_class_uid="SOPClassUID",
    sop_instance_uid="SOPInstanceUID",
    study_instance_uid="StudyInstanceUID",
    series_instance_uid="SeriesInstanceUID",
    issuer_of_patient_id="IssuerOfPatientID",
    study_id="StudyID",
    patient_id="PatientID",
    other_patient_ids_sequence="OtherPatientIDsSequence",
)
#: The sequence fields: their items as the index keeps them (``_sequence``).
_SEQUENCES = {name for name in _KEYWORDS if name.endswith("_sequence")}

#: Field of InstanceAttributes -> its tag, from pydicom's data dictionary.
FIELD_TAGS = {name: int(tag_for_keyword(keyword) or 0) for name, keyword in _KEYWORDS.items()}


def expected(ds: Dataset) -> InstanceAttributes:
    """What pydicom reads, in our record."""
    fields: dict[str, Any] = {}
    for name, keyword in _KEYWORDS.items():
        value = ds.get(keyword)
        if name in _SEQUENCES:
            fields[name] = _sequence(value, KEYS[FIELD_TAGS[name]])
        elif name in _INTS:
            # As the reader: None unless one integer (badVR.dcm has IS '1A').
            try:
                fields[name] = None if value is None or value == "" else int(value)
            except ValueError:
                fields[name] = None
        elif value is None:
            fields[name] = ""
        elif isinstance(value, pydicom.multival.MultiValue):
            fields[name] = "\\".join(_person_name(v) for v in value)
        elif isinstance(value, PersonName):
            fields[name] = _person_name(value)
        elif name in _DATES:
            fields[name] = as_indexed_date(str(value))
        elif name in _TIMES:
            fields[name] = as_indexed_time(str(value))
        else:
            fields[name] = str(value)
    return InstanceAttributes(**fields)


def _person_name(value: object) -> str:
    """A PN as the index holds it: each component group without its trailing empty
    components, no trailing empty groups (PS3.5 6.2.1.1); another value as text."""
    if not isinstance(value, PersonName):
        return str(value)
    return "=".join(group.rstrip("^") for group in value.components).rstrip("=")


def _sequence(items: Any, info: KeyInfo) -> str:
    """A sequence as the index keeps it: JSON, the items' kept keys, empty ones out."""
    kept = [_item(item, info) for item in items or ()]
    return json.dumps(kept, ensure_ascii=False, separators=(",", ":")) if any(kept) else ""


def _item(item: Dataset, info: KeyInfo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    assert info.items is not None
    for tag in sorted(info.items):
        key = info.items[tag]
        value = item.get(key.keyword)
        if key.items is not None:
            nested = [_item(inner, key) for inner in value or ()]
            if any(nested):
                out[key.keyword] = nested
        elif isinstance(value, pydicom.multival.MultiValue):
            out[key.keyword] = "\\".join(str(v) for v in value)
        elif value not in (None, ""):
            out[key.keyword] = str(value)
    return out


def as_indexed_date(text: str) -> str:
    """A DA as the index holds it: the ACR-NEMA YYYY.MM.DD as YYYYMMDD (this suite's
    own reading of the rule, not header.py's)."""
    return text.replace(".", "") if re.fullmatch(r"[0-9]{4}\.[0-9]{2}\.[0-9]{2}", text) else text


def as_indexed_time(text: str) -> str:
    """A TM as the index holds it: the ACR-NEMA HH:MM:SS.F as HHMMSS.F (this
    suite's own reading of the rule)."""
    acr_nema = re.fullmatch(r"[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?", text)
    return text.replace(":", "") if acr_nema else text


def read(ts: str, pieces: Iterable[bytes | memoryview]) -> InstanceAttributes:
    """Feed every piece, to the end, then finish; ``done`` never goes back to False."""
    reader = HeaderReader(ts)
    done = False
    for piece in pieces:
        now = reader.feed(piece)
        assert now is reader.done
        assert now or not done
        done = now
    return reader.finish()


def bytewise(data: bytes) -> Iterator[memoryview]:
    view = memoryview(data)
    return (view[i : i + 1] for i in range(len(data)))


def element(
    tag: int, vr: str, value: bytes, ts: str = EXPLICIT, length: int | None = None
) -> bytes:
    """One data element, PS3.5 7.1; ``length`` overrides the value length field."""
    group, elem = tag >> 16, tag & 0xFFFF
    size = len(value) if length is None else length
    order = ">" if ts == BIG else "<"
    if ts == IMPLICIT or group == 0xFFFE:
        return struct.pack(order + "HHL", group, elem, size) + value
    if vr.encode() in _LONG_VRS:
        return struct.pack(order + "HH2s2xL", group, elem, vr.encode(), size) + value
    return struct.pack(order + "HH2sH", group, elem, vr.encode(), size & 0xFFFF) + value


def item(value: bytes, ts: str = EXPLICIT, undefined: bool = False) -> bytes:
    if undefined:
        return element(0xFFFEE000, "", value, ts, 0xFFFFFFFF) + element(0xFFFEE00D, "", b"", ts)
    return element(0xFFFEE000, "", value, ts)


def undefined_sequence(tag: int, items: bytes, ts: str = EXPLICIT, vr: str = "SQ") -> bytes:
    return element(tag, vr, items, ts, 0xFFFFFFFF) + element(0xFFFEE0DD, "", b"", ts)


def encapsulated(*fragments: bytes, ts: str = EXPLICIT) -> bytes:
    """Encapsulated Pixel Data, PS3.5 A.4: an empty Basic Offset Table, the fragments."""
    items = item(b"", ts) + b"".join(item(fragment, ts) for fragment in fragments)
    return undefined_sequence(0x7FE00010, items, ts, "OB")


def trailing_padding(size: int, ts: str = EXPLICIT) -> bytes:
    """Data Set Trailing Padding (FFFC,FFFC), PS3.10 7.2."""
    return element(0xFFFCFFFC, "OB", bytes(size), ts)


UIDS = {
    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7",
    "sop_instance_uid": "1.2.3.4.5",
    "study_instance_uid": "1.2.3.4",
    "series_instance_uid": "1.2.3.4.1",
}


def minimal(ts: str, *middle: bytes, tail: bytes = b"", pixels: bytes | None = None) -> bytes:
    """SOP Class/Instance UIDs, ``middle``, the Study/Series UIDs, ``tail``, ``pixels``
    (by default a Pixel Data of 4 bytes)."""
    if pixels is None:
        pixels = element(0x7FE00010, "OW", b"\0\0\0\0", ts)
    return (
        element(0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.7\0", ts)
        + element(0x00080018, "UI", b"1.2.3.4.5\0", ts)
        + b"".join(middle)
        + element(0x0020000D, "UI", b"1.2.3.4\0", ts)
        + element(0x0020000E, "UI", b"1.2.3.4.1\0", ts)
        + tail
        + pixels
    )


def sevens(data: bytes) -> Iterator[bytes]:
    return (data[i : i + 7] for i in range(0, len(data), 7))


def verdict(exc: BaseException) -> tuple[object, ...]:
    """What a refusal says (a reader raises a fresh exception each time)."""
    return (type(exc), getattr(exc, "status", None), str(exc), getattr(exc, "offending", None))
