"""What the index keeps of an instance: the fields, the tags they come from, how.

:class:`InstanceAttributes` is the record the index stores per instance; :data:`WANTED`
names the tag each field is read from and how its value bytes become the field
(:func:`decode_values`, padding and character sets per PS3.5 6.2). The streaming
reader that finds those bytes in a data set is :mod:`archive.dicom.header`.

:data:`HEADER_VERSION` says which edition of this table an index row was made by
(its ``header_version`` column): rows made before a field was added lack it until
``archive reindex`` reads their files again.
"""

from __future__ import annotations

import re

import msgspec

from archive.dicom.charset import (
    SPECIFIC_CHARACTER_SET,
    TEXT_DELIMITERS,
    charset_terms,
    decode_person_name,
    decode_text,
    python_codecs,
)
from archive.dicom.header_sequences import sequence_json
from archive.dicom.query_keys import SEQUENCE_KEYS
from archive.dicom.wire import STRUCTS

__all__ = [
    "HEADER_VERSION",
    "LAST_WANTED",
    "NOT_WANTED",
    "SQ",
    "WANTED",
    "InstanceAttributes",
    "decode_values",
    "normalized_date",
]

#: The edition of :data:`WANTED`. Bump it when a field is added or read otherwise:
#: index rows of a lower version are then refreshed by ``archive reindex``. A bump
#: comes with an index migration that sets the reindex task when such rows exist
#: (``INSERT OR IGNORE INTO maintenance (task) SELECT 'reindex' WHERE EXISTS
#: (SELECT 1 FROM instance WHERE header_version < N)``): the task is what makes the
#: node warn at start-up and ``archive stats`` count them.
#: 1: the five sequences of Sequence Matching (index migrations 0004 and 0006).
HEADER_VERSION = 1

# How a wanted value is turned into a field (padding per PS3.5 6.2 and Table 6.2-1).
_UI = 0  # trailing NUL padding; spaces tolerated at both ends
_CS = 1  # default repertoire, leading and trailing spaces insignificant (CS, IS, ...)
_DT = 2  # TM: default repertoire, trailing space padding; ACR-NEMA HH:MM:SS as HHMMSS
_TEXT = 3  # SH, LO: Specific Character Set, leading and trailing spaces insignificant
_PN = 4  # PN: Specific Character Set, component groups, trailing spaces
_IS = 5  # IS -> int, None when not one integer in the IS range
_USHORT = 6  # US -> int
_DA = 7  # DA: as TM, and an ACR-NEMA YYYY.MM.DD is indexed as YYYYMMDD
SQ = 8  # a sequence the index holds: its items as JSON text (header_sequences.py)

#: Wanted tags -> (field of InstanceAttributes, kind), ascending, PS3.6 Table 6-1.
WANTED: dict[int, tuple[str, int]] = {
    SPECIFIC_CHARACTER_SET: ("specific_character_set", _CS),
    0x00080016: ("sop_class_uid", _UI),
    0x00080018: ("sop_instance_uid", _UI),
    0x00080020: ("study_date", _DA),
    0x00080021: ("series_date", _DA),
    0x00080023: ("content_date", _DA),
    0x00080030: ("study_time", _DT),
    0x00080031: ("series_time", _DT),
    0x00080033: ("content_time", _DT),
    0x00080050: ("accession_number", _TEXT),
    0x00080060: ("modality", _CS),
    0x00080090: ("referring_physician_name", _PN),
    0x00081030: ("study_description", _TEXT),
    0x00081032: ("procedure_code_sequence", SQ),
    0x0008103E: ("series_description", _TEXT),
    0x00100010: ("patient_name", _PN),
    0x00100020: ("patient_id", _TEXT),
    0x00100021: ("issuer_of_patient_id", _TEXT),
    0x00100030: ("patient_birth_date", _DA),
    0x00100040: ("patient_sex", _CS),
    0x00101002: ("other_patient_ids_sequence", SQ),
    0x00180015: ("body_part_examined", _CS),
    0x0020000D: ("study_instance_uid", _UI),
    0x0020000E: ("series_instance_uid", _UI),
    0x00200010: ("study_id", _TEXT),
    0x00200011: ("series_number", _IS),
    0x00200013: ("instance_number", _IS),
    0x00280008: ("number_of_frames", _IS),
    0x00280010: ("rows", _USHORT),
    0x00280011: ("columns", _USHORT),
    0x00400275: ("request_attributes_sequence", SQ),
    0x0040A043: ("concept_name_code_sequence", SQ),
    0x0040A504: ("content_template_sequence", SQ),
}
assert {tag for tag, (_, kind) in WANTED.items() if kind == SQ} == SEQUENCE_KEYS.keys()
#: The highest wanted tag: the reader is done at the first top-level tag past it.
LAST_WANTED = max(WANTED)
NOT_WANTED = ("", -1)

_IS_VALUE = re.compile(rb"\s*([+-]?[0-9]{1,12})\s*")
_IS_MIN, _IS_MAX = -(2**31), 2**31 - 1  # PS3.5 Table 6.2-1, IS


class InstanceAttributes(msgspec.Struct, frozen=True, kw_only=True):
    """What the index stores of one instance, decoded, padding removed.

    Strings are ``""`` and integers ``None`` when the attribute is absent or empty.
    ``specific_character_set`` holds the values of (0008,0005) joined by ``\\``.
    """

    specific_character_set: str = ""
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    issuer_of_patient_id: str = ""
    study_instance_uid: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_id: str = ""
    study_description: str = ""
    referring_physician_name: str = ""
    series_instance_uid: str = ""
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    body_part_examined: str = ""
    series_date: str = ""
    series_time: str = ""
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    instance_number: int | None = None
    content_date: str = ""
    content_time: str = ""
    number_of_frames: int | None = None
    rows: int | None = None
    columns: int | None = None
    # Sequences, as JSON text (see the module docstring); "" when absent or empty.
    other_patient_ids_sequence: str = ""
    procedure_code_sequence: str = ""
    request_attributes_sequence: str = ""
    concept_name_code_sequence: str = ""
    content_template_sequence: str = ""


def decode_values(
    values: dict[int, bytes], sequences: dict[int, tuple[int, bool]], mode: int
) -> InstanceAttributes:
    """The fields from the wanted values' bytes (tag -> value as received).

    ``sequences``: tag -> (encoding of its items, undefined length) of each wanted
    sequence in ``values``; ``mode``: the data set's encoding (``archive.dicom.wire``).
    """
    byte_order = STRUCTS[mode].us
    terms = charset_terms(values.get(SPECIFIC_CHARACTER_SET, b""))
    codecs = python_codecs(terms if any(terms) else [])
    fields: dict[str, str | int | None] = {}
    for tag, raw in values.items():
        name, kind = WANTED[tag]
        if kind == SQ:
            items_mode, undefined = sequences[tag]
            fields[name] = sequence_json(tag, items_mode, undefined, raw, codecs)
        elif kind == _TEXT:
            # Stripped again once decoded: a space after an escape sequence
            # (ESC $ ) C, then " ...") leads the text all the same.
            fields[name] = decode_text(raw.strip(b" \0"), codecs, TEXT_DELIMITERS).strip(" ")
        elif kind == _PN:
            fields[name] = decode_person_name(raw.rstrip(b" \0"), codecs)
        elif kind == _IS:
            fields[name] = _integer_string(raw)
        elif kind == _USHORT:
            fields[name] = byte_order.unpack_from(raw)[0] if len(raw) >= 2 else None
        elif kind == _DT:
            fields[name] = _indexed_time(raw.rstrip(b" \0").decode("latin_1"))
        elif kind == _DA:
            fields[name] = normalized_date(raw.rstrip(b" \0").decode("latin_1"))
        elif tag == SPECIFIC_CHARACTER_SET:
            fields[name] = "\\".join(terms) if any(terms) else ""
        else:  # _UI, _CS
            fields[name] = raw.strip(b" \0").decode("latin_1")
    return InstanceAttributes(**fields)  # type: ignore[arg-type]


#: A DA in the retired ACR-NEMA form (PS3.5 Table 6.2-1, note): YYYY.MM.DD.
_ACR_NEMA_DATE = re.compile(r"(\d{4})\.(\d{2})\.(\d{2})", re.ASCII)


def normalized_date(value: str) -> str:
    """A DA value in the only form DICOM allows: ``YYYY.MM.DD`` as ``YYYYMMDD``, any
    other value as it is. Stored dates are indexed so (here) and query keys read
    so (``query.py``), so that both sort and range-match alike."""
    if "." not in value:
        return value
    match = _ACR_NEMA_DATE.fullmatch(value)
    return "".join(match.groups()) if match else value


#: A TM in the retired ACR-NEMA form (PS3.5 Table 6.2-1, note): HH:MM:SS.FFFFFF.
_ACR_NEMA_TIME = re.compile(r"\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?", re.ASCII)


def _indexed_time(value: str) -> str:
    """A TM value in the form DICOM allows: ``HH:MM:SS.F`` as ``HHMMSS.F``, any
    other value as it is (as :func:`normalized_date`), so that a C-FIND response
    carries a TM. Not ``query_match.normalized_time``, which reads a stored time
    for comparison (padded, fraction trimmed) and is never stored."""
    # Per instance (three TM fields): most times have no colon, and need no regex.
    return value.replace(":", "") if ":" in value and _ACR_NEMA_TIME.fullmatch(value) else value


def _integer_string(raw: bytes) -> int | None:
    """An IS value as int: one integer in range, spaces around tolerated, else None."""
    match = _IS_VALUE.fullmatch(raw.rstrip(b"\0"))
    if match is None:
        return None
    value = int(match.group(1))
    return value if _IS_MIN <= value <= _IS_MAX else None
