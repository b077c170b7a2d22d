"""Q/R identifiers for the SCU commands: ``-k`` keys in, DICOM JSON and table cells out.

What this is: the pure part of ``archive find/move/get/pull``. :func:`parse_key`
reads one ``-k`` argument (``Keyword=value``, ``Keyword``, ``(gggg,eeee)=value``,
``ggggeeee=value``; a key inside a sequence as findscu writes it,
``RequestAttributesSequence[0].RequestedProcedureID=RP1``, the ``[0]`` optional);
:func:`build_identifier` turns the keys into the elements of
a C-FIND/C-MOVE/C-GET identifier (PS3.4 C.4.1.1.3, C.4.2.1.4, C.4.3.1.3), with the
Query/Retrieve Level, Specific Character Set and, for C-FIND, default return keys;
:func:`to_dicom_json` turns a response identifier into the DICOM JSON Model of
PS3.18 F.2, and :func:`cell` one attribute of it into table text.
What it is not: a network client (see :mod:`archive.scu.query`) or a codec (the
bytes go through :mod:`archive.dicom.dataset`). A sequence key has one item
(PS3.4 C.2.2.2.6): the keys given inside one sequence all go into that item, and
a bare sequence keyword asks for the whole sequence (sent empty).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Collection, Iterable, Sequence
from typing import Any, ClassVar, NamedTuple

from archive.dicom.charset import (
    character_set_terms,
    decode_person_name,
    decode_text,
    python_codecs,
)
from archive.dicom.dataset import Element
from archive.dicom.dictionary import keyword_for_tag, parse_tag, vr_of
from archive.dicom.query_keys import Level, QueryModel
from archive.dicom.textcodec import UTF8_TERMS, UnencodableError, encode_value
from archive.errors import ArchiveError

SPECIFIC_CHARACTER_SET = 0x00080005
QUERY_RETRIEVE_LEVEL = 0x00080052
STUDY_INSTANCE_UID = 0x0020000D
NUMBER_OF_STUDY_RELATED_INSTANCES = 0x00201208
#: Failed SOP Instance UID List, PS3.4 C.4.2.1.6 / C.4.3.1.5.
FAILED_SOP_INSTANCE_UID_LIST = 0x00080058

#: Return keys added to a C-FIND identifier that has matching keys only: what a
#: PACS admin wants to see at each level (PS3.4 Tables C.6-1 to C.6-5).
DEFAULT_RETURN_KEYS: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ),
    Level.STUDY: (
        "PatientName",
        "PatientID",
        "StudyDate",
        "StudyDescription",
        "AccessionNumber",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
        "StudyInstanceUID",
    ),
    Level.SERIES: (
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
        "SeriesInstanceUID",
    ),
    Level.IMAGE: ("InstanceNumber", "SOPClassUID", "SOPInstanceUID"),
}

#: VRs whose values are text in the JSON model, one string per value (PS3.18 F.2.3).
_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UC", "UI", "LT", "ST", "UT", "UR"}
)
#: Text VRs holding a single value in which a backslash is text (PS3.5 Table 6.2-1).
_SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})
#: VRs decoded with the Specific Character Set (PS3.5 6.1.2.3); the rest are ASCII.
_CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
_BINARY_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d"}
_BINARY_NUMBERS |= {"UV": "Q", "SV": "q"}
#: Component groups of a PN value in the JSON model, PS3.18 F.2.2.
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


class QueryKeyError(ArchiveError):
    """A ``-k`` argument that cannot be a query key."""

    code: ClassVar[str] = "scu.query.key"


class QueryKey(NamedTuple):
    """One ``-k``: a tag, its VR, and a value (None: a return key, sent empty).

    ``path``: the sequences the key is inside, outermost first (each holding one
    item); empty for a key of the identifier itself.
    """

    tag: int
    vr: str
    value: str | None
    path: tuple[int, ...] = ()

    @property
    def tags(self) -> tuple[int, ...]:
        """The sequences' tags, then the key's own."""
        return (*self.path, self.tag)

    @property
    def name(self) -> str:
        """The keyword (``Sequence.Keyword`` inside a sequence), or ``(gggg,eeee)``
        for a tag without one."""
        return ".".join(keyword_for_tag(t) or _tag_text(t) for t in self.tags)


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def parse_key(text: str) -> QueryKey:
    """``Keyword=value``, ``Keyword`` (zero length: a return key), or a tag for the
    keyword (``(0010,0020)=x``, ``0010,0020=x``, ``00100020=x``); inside sequences,
    ``Sequence[0].Keyword=value`` (``Sequence.Keyword`` too). A bare sequence is a
    return key for the whole sequence; it takes no value."""
    name, equals, value = text.partition("=")
    tags = [_path_tag(text, part) for part in name.split(".")]
    *path, tag = tags
    for outer in path:
        if vr_of(outer) != "SQ":
            raise QueryKeyError(f"-k {text!r}: {_tag_text(outer)} is not a sequence")
    if path and tag in (QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET):
        raise QueryKeyError(f"-k {text!r}: {_tag_text(tag)} belongs to the identifier itself")
    vr = vr_of(tag)
    if vr == "SQ" and equals:
        raise QueryKeyError(f"-k {text!r}: a sequence takes keys inside it, not a value")
    if tag >> 16 & 1 or vr == "UN":
        raise QueryKeyError(f"-k {text!r}: private and unknown tags are not supported")
    if tag >> 16 == 0x0002 or tag >> 16 == 0x0000:
        raise QueryKeyError(f"-k {text!r}: not an identifier attribute")
    return QueryKey(tag, vr, value if equals else None, tuple(path))


def _path_tag(text: str, part: str) -> int:
    """One step of a key's path: a keyword or tag, with an optional item index [0]."""
    name, bracket, index = part.partition("[")
    if bracket and index.strip() != "0]":
        raise QueryKeyError(f"-k {text!r}: a query sequence has one item, [0]")
    tag = parse_tag(name)
    if tag is None:
        raise QueryKeyError(f"-k {text!r}: {name.strip()!r} is not a DICOM keyword or tag")
    return tag


def parse_keys(texts: Iterable[str]) -> list[QueryKey]:
    """:func:`parse_key` over all ``-k``; a key given twice keeps the last value."""
    keys: dict[tuple[int, ...], QueryKey] = {}
    for text in texts:
        key = parse_key(text)
        keys.pop(key.tags, None)
        keys[key.tags] = key
    return list(keys.values())


def character_set(keys: Iterable[QueryKey], charset: str | None) -> tuple[str, ...]:
    """Specific Character Set terms for the identifier: ``charset`` (``\\``-separated)
    if given, else ``ISO_IR 192`` when a value is not ASCII, else none."""
    if charset is not None:
        return tuple(term.strip() for term in charset.split("\\"))
    if any(key.value is not None and not key.value.isascii() for key in keys):
        return UTF8_TERMS
    return ()


def level_of(keys: Sequence[QueryKey], default: Level) -> Level:
    """``-k QueryRetrieveLevel=...`` (as findscu users write it) wins over ``-L``."""
    for key in keys:
        if key.tag == QUERY_RETRIEVE_LEVEL and key.value:
            try:
                return Level(key.value.strip().upper())
            except ValueError:
                raise QueryKeyError(
                    f"QueryRetrieveLevel {key.value!r} is not PATIENT, STUDY, SERIES or IMAGE"
                ) from None
    return default


def check_level(level: Level, model: QueryModel) -> None:
    """PATIENT level exists in the Patient Root model only (PS3.4 C.6.2)."""
    if level is Level.PATIENT and model is QueryModel.STUDY_ROOT:
        raise QueryKeyError("PATIENT level needs the Patient Root model (-P)")


def with_defaults(keys: Sequence[QueryKey], level: Level) -> list[QueryKey]:
    """``keys``, plus the level's default return keys when all ``keys`` are matching keys."""
    if any(key.value is None for key in keys):
        return list(keys)
    tags = []
    for keyword in DEFAULT_RETURN_KEYS[level]:
        tag = parse_tag(keyword)
        assert tag is not None
        tags.append(tag)
    return with_return_keys(keys, tags)


def with_return_keys(keys: Sequence[QueryKey], tags: Sequence[int]) -> list[QueryKey]:
    """``keys``, plus a return key (sent empty) for each of ``tags`` not among them."""
    given = {key.tags[0] for key in keys}
    return [*keys, *(QueryKey(tag, vr_of(tag), None) for tag in tags if tag not in given)]


def columns(keys: Sequence[QueryKey]) -> list[QueryKey]:
    """The keys shown as table columns: all but the level and the character set."""
    return [k for k in keys if k.tag not in (QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET)]


def _binary(value: str, vr: str, key: str) -> bytes:
    code = _BINARY_NUMBERS[vr]
    out = []
    for part in value.split("\\"):
        try:
            number = float(part) if code in "fd" else int(part, 0)
            out.append(struct.pack("<" + code, number))
        except (ValueError, struct.error):
            raise QueryKeyError(f"{key}: {part!r} is not a {vr} value") from None
    return b"".join(out)


def build_identifier(
    keys: Sequence[QueryKey], level: Level, terms: Sequence[str] = ()
) -> list[Element]:
    """The identifier's elements (PS3.4 C.4.1.1.3): Query/Retrieve Level, Specific
    Character Set when ``terms``, then each key, values encoded in ``terms``.

    Binary numbers are written little endian: we propose little-endian transfer
    syntaxes only.
    """
    elements = [Element(QUERY_RETRIEVE_LEVEL, "CS", level.value.encode())]
    if terms:
        elements.append(Element(SPECIFIC_CHARACTER_SET, "CS", "\\".join(terms).encode()))
    top = [k for k in keys if k.tag not in (QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET)]
    return elements + _elements(top, terms, 0)


def _elements(keys: Sequence[QueryKey], terms: Sequence[str], depth: int) -> list[Element]:
    """The elements of ``keys`` at nesting ``depth``: a key deeper goes into the one
    item of the sequence its path names at this depth (PS3.4 C.2.2.2.6)."""
    elements: list[Element] = []
    items: dict[int, list[QueryKey]] = {}
    for key in keys:
        if len(key.path) > depth:
            items.setdefault(key.path[depth], []).append(key)
        elif key.vr == "SQ":
            items.setdefault(key.tag, [])
        else:
            elements.append(_element(key, terms))
    for tag, inside in items.items():
        value = (tuple(_elements(inside, terms, depth + 1)),) if inside else ()
        elements.append(Element(tag, "SQ", value))
    return elements


def _element(key: QueryKey, terms: Sequence[str]) -> Element:
    value = key.value or ""
    if key.vr in _BINARY_NUMBERS:
        raw = _binary(value, key.vr, key.name) if value else b""
    elif key.vr in _STRING_VRS or key.vr in ("PN", "IS", "DS"):
        try:
            raw = encode_value(value, key.vr, terms)
        except UnencodableError as exc:
            raise QueryKeyError(f"{key.name}: {exc}") from None
    elif key.vr == "AT" and value:
        tag = parse_tag(value)
        if tag is None:
            raise QueryKeyError(f"{key.name}: {value!r} is not a tag")
        raw = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    elif value:
        raise QueryKeyError(f"{key.name}: values of VR {key.vr} cannot be given with -k")
    else:
        raw = b""
    if key.vr == "UI":
        raw = raw.rstrip(b"\0")
    return Element(key.tag, key.vr, raw)


# ---- responses: the DICOM JSON Model (PS3.18 F.2) ----------------------------------------


def _number(text: str, vr: str) -> int | float | str:
    text = text.strip()
    try:
        if vr == "IS":
            return int(text)
        number = float(text)
    except ValueError:
        return text  # not a number: keep what was sent rather than lose it
    return (
        int(number)
        if number.is_integer() and "." not in text and "e" not in text.lower()
        else number
    )


def _attribute(element: Element, codecs: Sequence[str], big_endian: bool) -> dict[str, Any]:
    vr = element.vr
    out: dict[str, Any] = {"vr": vr}
    value = element.value
    if isinstance(value, tuple):
        if value:
            out["Value"] = [_object(item, codecs, big_endian) for item in value]
        return out
    if not value:
        return out
    if vr in _BINARY_NUMBERS:
        code = _BINARY_NUMBERS[vr]
        size = struct.calcsize(code)
        fmt = (">" if big_endian else "<") + code
        out["Value"] = [
            struct.unpack_from(fmt, value, i)[0] for i in range(0, len(value) - size + 1, size)
        ]
    elif vr == "AT":
        fmt = ">HH" if big_endian else "<HH"
        out["Value"] = [
            "{:04X}{:04X}".format(*struct.unpack_from(fmt, value, i))
            for i in range(0, len(value) - 3, 4)
        ]
    elif vr == "PN":
        text = decode_person_name(value.rstrip(b" \0"), codecs)
        out["Value"] = [_person_name(part) for part in text.split("\\")]
    elif vr in _STRING_VRS or vr in ("IS", "DS"):
        raw = value.rstrip(b"\0") if vr == "UI" else value
        text = decode_text(raw, codecs if vr in _CHARSET_VRS else ("ascii",), frozenset())
        parts = [text] if vr in _SINGLE_VALUED else text.split("\\")
        # Leading spaces are significant in LT, ST, UT (PS3.5 Table 6.2-1).
        keep_leading = vr in ("LT", "ST", "UT")
        strings = [p.rstrip(" ") if keep_leading else p.strip(" ") for p in parts]
        if vr in ("IS", "DS"):
            out["Value"] = [_number(s, vr) if s else None for s in strings]
        else:
            out["Value"] = [s if s else None for s in strings]
    else:
        out["InlineBinary"] = base64.b64encode(value).decode("ascii")
    return out


def _person_name(text: str) -> dict[str, str] | None:
    groups = text.split("=")
    name = {label: g for label, g in zip(_PN_GROUPS, groups, strict=False) if g}
    return name or None


def _object(elements: Iterable[Element], codecs: Sequence[str], big_endian: bool) -> dict[str, Any]:
    elements = tuple(elements)
    terms = character_set_terms(elements)
    if terms is not None:
        codecs = python_codecs(terms)
    return {
        f"{e.tag:08X}": _attribute(e, codecs, big_endian)
        for e in sorted(elements, key=lambda e: e.tag)
    }


def to_dicom_json(elements: Iterable[Element], *, big_endian: bool = False) -> dict[str, Any]:
    """One data set in the DICOM JSON Model, PS3.18 F.2: ``{"00100010": {"vr": "PN",
    "Value": [{"Alphabetic": "..."}]}}``, attributes in ascending tag order.

    Text is decoded with the data set's Specific Character Set (an item's own, if
    it has one); IS and DS become numbers (F.2.3); empty values in a multi-valued
    attribute become null (F.2.5); binary VRs become ``InlineBinary`` base64.
    """
    return _object(elements, python_codecs(()), big_endian)


def cell(attribute: dict[str, Any] | None) -> str:
    """A JSON attribute as table text: values ``\\``-joined, PN as its groups ``=``-joined."""
    if attribute is None:
        return ""
    if "InlineBinary" in attribute:
        return f"<{len(base64.b64decode(attribute['InlineBinary']))} bytes>"
    values = attribute.get("Value", [])
    if attribute["vr"] == "SQ":
        return f"<{len(values)} item(s)>"
    parts = []
    for value in values:
        if value is None:
            parts.append("")
        elif isinstance(value, dict):
            parts.append("=".join(value.get(g, "") for g in _PN_GROUPS).rstrip("="))
        else:
            parts.append(str(value))
    return "\\".join(parts)


def table(keys: Sequence[QueryKey], rows: Sequence[dict[str, Any]]) -> list[str]:
    """Lines of a plain-text table: one column per key (keyword headers), one row per match."""
    header = [key.name for key in keys]
    body = [[_cell(row, key.tags) for key in keys] for row in rows]
    return text_table(header, body)


def _cell(row: dict[str, Any], path: Sequence[int]) -> str:
    """The cell of a key: inside sequences, its values in every item, ``\\``-joined."""
    attribute = row.get(f"{path[0]:08X}")
    if len(path) == 1:
        return cell(attribute)
    items = attribute.get("Value", []) if attribute else []
    return "\\".join(_cell(item, path[1:]) for item in items if isinstance(item, dict))


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, right: Collection[int] = ()
) -> list[str]:
    """Lines of a plain-text table, columns two spaces apart; ``right``: right-aligned ones."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in [header, *rows]
    ]
