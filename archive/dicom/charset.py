"""Decoding of DICOM text values with the data set's Specific Character Set.

What this is: the pure-Python rules, with no pydicom import, that turn the bytes of an
SH, LO, ST, LT, UC, UT or PN value into a ``str`` given the value of Specific Character
Set (0008,0005): the single-byte sets of PS3.3 Table C.12-2, the stand-alone
multi-byte sets of Table C.12-5 (``ISO_IR 192``, ``GB18030``, ``GBK``) and the ISO 2022
code extensions of Tables C.12-3 and C.12-4 (PS3.5 6.1.2.5).
What it is not: an encoder, or a validator. Decoding never fails: bytes a character
set cannot decode become U+FFFD, an unknown term decodes as Latin-1, an unknown escape
sequence is kept as text.

Theory of operation for values with code extensions (PS3.5 6.1.2.5): the decoder keeps
what G0 and G1 hold. Every G1 set and the single-byte G0 sets (ISO-IR 6 and 14) agree
with ASCII on 00-7F, so while G0 holds a single-byte set a run of bytes is decoded with
the codec of the set in G1. While G0 holds JIS X 0208 or 0212 (two-byte sets in G0), the
run is decoded by Python's ``iso2022_jp`` codecs with the designating escape put back in
front, and the delimiters are not looked for: their bytes are half characters there;
SPACE and the other controls in it (byte 20 is SPACE whatever G0 holds) are decoded
apart, as ASCII, since the codec refuses them there. A delimiter (CR, LF, TAB, FF; and
``^``, ``=`` in PN) brings back the initial designations, as PS3.5 6.1.2.5.3 requires
encoders to have done by then. Escape sequences are honoured only where code extensions
are allowed: not when value 1 is a stand-alone set (PS3.3 Table C.12-5), nor when the
one value is a set "without code extensions" (Table C.12-2); there ESC is a byte of the
text, as pydicom reads it. An absent or empty Specific Character Set is left lenient:
escape sequences there are a sender's ISO 2022 text without its declaration."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from archive.dicom.dataset import Element

__all__ = [
    "CODECS",
    "ESC",
    "EXTENSIONS",
    "G0_ASCII",
    "G0_ROMAJI",
    "PN_DELIMITERS",
    "SPECIFIC_CHARACTER_SET",
    "STAND_ALONE",
    "TEXT_DELIMITERS",
    "TEXT_VRS",
    "CodeExtension",
    "character_set_terms",
    "charset_terms",
    "decode_person_name",
    "decode_text",
    "decode_value",
    "normal_term",
    "python_codecs",
]

#: The tag of Specific Character Set, PS3.3 C.12.1.1.2.
SPECIFIC_CHARACTER_SET = 0x00080005
#: VRs whose values use the Specific Character Set, PS3.5 6.1.2.3; all others are in
#: the default repertoire.
TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})

#: CR, LF, TAB and FF end a code-extension scope in text values, PS3.5 6.1.2.5.3.
TEXT_DELIMITERS = frozenset(b"\r\n\t\f")
#: In PN the component (``^``) and component-group (``=``) delimiters end it too.
PN_DELIMITERS = frozenset(b"\r\n\t\f^=")

_FALLBACK = "latin_1"
#: ESC, which starts every escape sequence (PS3.5 6.1.2.5).
ESC = 0x1B

# Defined Terms of Specific Character Set -> Python codec, PS3.3 Tables C.12-2 to
# C.12-5. ISO-IR 6 is decoded as Latin-1 rather than ASCII so that stray 8-bit bytes
# from non-conforming senders survive as characters instead of U+FFFD.
CODECS = MappingProxyType(
    {
        "": _FALLBACK,
        "ISO_IR 6": _FALLBACK,
        "ISO_IR 100": "latin_1",
        "ISO_IR 101": "iso8859_2",
        "ISO_IR 109": "iso8859_3",
        "ISO_IR 110": "iso8859_4",
        "ISO_IR 144": "iso8859_5",
        "ISO_IR 127": "iso8859_6",
        "ISO_IR 126": "iso8859_7",
        "ISO_IR 138": "iso8859_8",
        "ISO_IR 148": "iso8859_9",
        "ISO_IR 203": "iso8859_15",
        "ISO_IR 13": "shift_jis",
        "ISO_IR 166": "tis_620",
        "ISO 2022 IR 6": _FALLBACK,
        "ISO 2022 IR 100": "latin_1",
        "ISO 2022 IR 101": "iso8859_2",
        "ISO 2022 IR 109": "iso8859_3",
        "ISO 2022 IR 110": "iso8859_4",
        "ISO 2022 IR 144": "iso8859_5",
        "ISO 2022 IR 127": "iso8859_6",
        "ISO 2022 IR 126": "iso8859_7",
        "ISO 2022 IR 138": "iso8859_8",
        "ISO 2022 IR 148": "iso8859_9",
        "ISO 2022 IR 203": "iso8859_15",
        "ISO 2022 IR 13": "shift_jis",
        "ISO 2022 IR 166": "tis_620",
        "ISO 2022 IR 87": "iso2022_jp",
        "ISO 2022 IR 159": "iso2022_jp_2",
        "ISO 2022 IR 149": "euc_kr",
        "ISO 2022 IR 58": "gb2312",
        "ISO_IR 192": "utf_8",
        "GB18030": "gb18030",
        "GBK": "gbk",
    }
)

#: Terms that forbid code extensions, PS3.3 Table C.12-5 and PS3.5 6.1.2.5.4 d.
STAND_ALONE = frozenset({"ISO_IR 192", "GB18030", "GBK"})


class CodeExtension(NamedTuple):
    """A graphic character set reachable by code extension, PS3.3 Tables C.12-3/4."""

    term: str
    slot: int  # 0: designated to G0 (two-byte JIS sets); 1: to G1
    escape: bytes
    codec: str
    width: int  # bytes per character


def _extension(term: str, slot: int, escape: bytes, width: int) -> CodeExtension:
    return CodeExtension(term, slot, escape, CODECS[term], width)


#: ISO 2022 terms other than IR 6 -> the set they designate, PS3.3 Tables C.12-3
#: (single-byte) and C.12-4 (multi-byte). The decoder and the encoder
#: (:mod:`archive.dicom.textcodec`) both read this table.
EXTENSIONS = MappingProxyType(
    {
        set_.term: set_
        for set_ in (
            _extension("ISO 2022 IR 100", 1, b"\x1b-A", 1),
            _extension("ISO 2022 IR 101", 1, b"\x1b-B", 1),
            _extension("ISO 2022 IR 109", 1, b"\x1b-C", 1),
            _extension("ISO 2022 IR 110", 1, b"\x1b-D", 1),
            _extension("ISO 2022 IR 144", 1, b"\x1b-L", 1),
            _extension("ISO 2022 IR 127", 1, b"\x1b-G", 1),
            _extension("ISO 2022 IR 126", 1, b"\x1b-F", 1),
            _extension("ISO 2022 IR 138", 1, b"\x1b-H", 1),
            _extension("ISO 2022 IR 148", 1, b"\x1b-M", 1),
            _extension("ISO 2022 IR 203", 1, b"\x1b-b", 1),
            _extension("ISO 2022 IR 166", 1, b"\x1b-T", 1),
            _extension("ISO 2022 IR 13", 1, b"\x1b)I", 1),  # JIS X 0201 Katakana
            _extension("ISO 2022 IR 87", 0, b"\x1b$B", 2),  # JIS X 0208
            _extension("ISO 2022 IR 159", 0, b"\x1b$(D", 2),  # JIS X 0212
            _extension("ISO 2022 IR 149", 1, b"\x1b$)C", 2),  # KS X 1001
            _extension("ISO 2022 IR 58", 1, b"\x1b$)A", 2),  # GB 2312
        )
    }
)
#: The single-byte G0 sets: ISO-IR 6 (ASCII), and ISO-IR 14 (JIS X 0201 Romaji, the
#: G0 of ISO 2022 IR 13); both are ASCII-like.
G0_ASCII = b"\x1b(B"
G0_ROMAJI = b"\x1b(J"

# Escape sequence -> (graphic set designated: 0 for G0, 1 for G1; codec).
_ESCAPES = MappingProxyType(
    {
        G0_ASCII: (0, _FALLBACK),
        G0_ROMAJI: (0, _FALLBACK),
        **{set_.escape: (set_.slot, set_.codec) for set_ in EXTENSIONS.values()},
    }
)

_MISSPELT_IR = re.compile(r"^ISO[^_]IR ?")
# The separator before the number is optional: "ISO 2022 IR87" must keep its 8.
_MISSPELT_2022 = re.compile(r"^ISO.2022.IR[ _-]?")
#: Terms some Chinese systems write, which pydicom reads as these.
_ALIASES = MappingProxyType({"ISO 2022 GBK": "GBK", "ISO 2022 58": "ISO 2022 IR 58"})


def normal_term(term: str) -> str:
    """A Specific Character Set term stripped, with common misspellings corrected.

    Spellings seen in the field (``ISO IR 100``, ``ISO-IR 100``, ``ISO_2022_IR_87``,
    ``ISO 2022 GBK``) become the Defined Term they mean: refusing a store or a query over them helps
    nobody. Any other unknown term is returned stripped, as it is.
    """
    term = term.strip()
    if term in CODECS:
        return term
    if term in _ALIASES:
        return _ALIASES[term]
    if _MISSPELT_IR.match(term):
        return "ISO_IR " + _MISSPELT_IR.sub("", term)
    if _MISSPELT_2022.match(term):
        return "ISO 2022 IR " + _MISSPELT_2022.sub("", term)
    return term


def _codec(term: str) -> str:
    return CODECS.get(normal_term(term), _FALLBACK)


class _WithoutCodeExtensions(tuple[str, ...]):
    """The codecs of a Specific Character Set that allows no code extensions: a
    tuple like any other, marked so that :func:`decode_text` can tell, on its slow
    path only, that an escape sequence is no designation."""

    __slots__ = ()


def python_codecs(terms: Sequence[str]) -> tuple[str, ...]:
    """Python codecs for the values of Specific Character Set (0008,0005).

    An empty or missing value 1 means ISO-IR 6. A stand-alone set (``ISO_IR 192``,
    ``GB18030``, ``GBK``) as value 1 ends the list; as a later value it is dropped
    (PS3.5 6.1.2.5.4 d). Unknown terms map to Latin-1. The result is never empty.
    """
    if not terms:
        return (_FALLBACK,)
    first = normal_term(terms[0])
    if first in STAND_ALONE:
        return _WithoutCodeExtensions((CODECS[first],))
    if len(terms) == 1 and first and not first.startswith("ISO 2022 "):
        return _WithoutCodeExtensions((CODECS.get(first, _FALLBACK),))
    rest = (normal_term(t) for t in terms[1:])
    return (_codec(first), *(_codec(t) for t in rest if t not in STAND_ALONE))


def charset_terms(value: bytes) -> list[str]:
    """The values of a Specific Character Set (0008,0005) as received, padding
    stripped: ``[""]`` when it is empty (ISO-IR 6), for :func:`python_codecs`."""
    return [term.strip(" \0") for term in value.decode("latin_1").split("\\")]


def character_set_terms(elements: Iterable[Element]) -> tuple[str, ...] | None:
    """The Specific Character Set (0008,0005) terms of one level of a data set (an
    identifier, a sequence item), or None when it has none (the default
    repertoire, or the enclosing level's)."""
    for element in elements:
        if element.tag == SPECIFIC_CHARACTER_SET and not isinstance(element.value, tuple):
            return tuple(charset_terms(bytes(element.value)))
    return None


def decode_text(value: bytes, codecs: Sequence[str], delimiters: frozenset[int]) -> str:
    """Decode a text value (SH, LO, ST, LT, UC, UT, PN), PS3.5 6.1.2.5.

    ``codecs`` comes from :func:`python_codecs`; ``delimiters`` is
    :data:`TEXT_DELIMITERS` or :data:`PN_DELIMITERS`. Never raises.
    """
    first = codecs[0]
    if ESC not in value or type(codecs) is _WithoutCodeExtensions:
        return value.decode(first, "replace")
    parts: list[str] = []
    g1 = first
    g0_multi = ""  # the iso2022_jp codec while G0 holds a two-byte set
    g0_escape = b""
    start = i = 0
    n = len(value)
    while i < n:
        byte = value[i]
        if byte == ESC:
            size = 4 if value[i + 1 : i + 3] in (b"$(", b"$)") else 3
            designation = _ESCAPES.get(value[i : i + size])
            if designation is None:
                i += 1  # not a sequence we know: keep the bytes as text
                continue
            parts.append(_decode_run(value[start:i], g0_multi, g0_escape, g1))
            slot, codec = designation
            if slot == 0 and codec.startswith("iso2022"):
                g0_multi, g0_escape = codec, value[i : i + size]
            else:
                # Any other designation ends a two-byte G0 run: pydicom's encoder
                # leaves JIS X 0208 with the escape of value 1 (ESC - A, ESC ) I)
                # rather than ESC ( B, and no encoder we know designates G1 in the
                # middle of a run of kanji and carries on.
                g0_multi = ""
                if slot == 1:
                    g1 = codec
            i += size
            start = i
            continue
        if not g0_multi and byte in delimiters:
            parts.append(_decode_run(value[start : i + 1], "", b"", g1))
            g1 = first
            start = i + 1
        i += 1
    parts.append(_decode_run(value[start:], g0_multi, g0_escape, g1))
    return "".join(parts)


#: A two-byte G0 run's pieces: SPACE and controls (0x20 is SPACE whatever G0
#: holds, ISO 2022 / ECMA-35; PS3.5 6.1.2.5.3 asks a return to value 1 before
#: controls, not before a space), GL (the two-byte set), GR (G1).
#: ESC stays with GL: an escape the decoder does not take goes to the codec, as
#: before (it knows ESC $ @, say).
_IN_TWO_BYTE_RUN = re.compile(rb"([\x00-\x1a\x1c-\x20]+)|([\x1b\x21-\x7f]+)|([\x80-\xff]+)")


def _decode_run(run: bytes, g0_multi: str, g0_escape: bytes, g1: str) -> str:
    if not run:
        return ""
    if not g0_multi:
        return run.decode(g1, "replace")
    # 8-bit ISO 2022: bytes 21-7E are G0 (here two-byte), A1-FE are G1.
    return "".join(
        controls.decode("ascii")
        if controls
        else (g0_escape + gl).decode(g0_multi, "replace")
        if gl
        else gr.decode(g1, "replace")
        for controls, gl, gr in _IN_TWO_BYTE_RUN.findall(run)
    )


def decode_person_name(value: bytes, codecs: Sequence[str]) -> str:
    """Decode a PN value, PS3.5 6.2.1: component groups joined by ``=``.

    Trailing empty components and component groups are dropped (PS3.5 6.2.1.1
    lets a sender omit them, with their delimiters), so ``Smith^John^^^``,
    ``Smith^John==`` and ``Smith^John`` index, and match, alike. So are the
    spaces around each component: PS3.5 Table 6.2-1 (CP-726) allows leading and
    trailing ones and calls them insignificant, so `` Smith ^John `` is
    ``Smith^John`` (spaces inside a component, ``van Dyke``, stay).
    """
    text = decode_text(value, codecs, PN_DELIMITERS)
    return "\\".join(_trimmed_person_name(name) for name in text.split("\\"))


def _trimmed_person_name(name: str) -> str:
    """One decoded PN value without the spaces around its components, nor its
    trailing empty components and groups."""
    groups = (
        "^".join(c.strip(" ") for c in group.split("^")).rstrip("^") for group in name.split("=")
    )
    return "=".join(groups).rstrip("=")


def decode_value(value: bytes, vr: str, codecs: Sequence[str]) -> str:
    """A string value of ``vr`` as text: a PN by its component groups, the other
    text VRs (:data:`TEXT_VRS`) in the Specific Character Set, the rest in the
    default repertoire. Padding is the caller's to strip (it differs by VR)."""
    if vr == "PN":
        return decode_person_name(value, codecs)
    if vr in TEXT_VRS:
        return decode_text(value, codecs, TEXT_DELIMITERS)
    return value.decode("latin_1")
