"""Encoding of DICOM text values in a Specific Character Set: ``str`` -> bytes.

What this is: the inverse of :mod:`archive.dicom.charset`, for C-FIND responses.
:func:`encode_value` writes a value of any string VR in the character set named by the
values of Specific Character Set (0008,0005): the single-byte sets of PS3.3 Table
C.12-2, the stand-alone multi-byte sets of Table C.12-5 (``ISO_IR 192``, ``GB18030``,
``GBK``) and the ISO 2022 code extensions of Tables C.12-3 and C.12-4 (PS3.5
6.1.2.5). :func:`response_character_set` picks the terms a response is written in.
What it is not: a padder (see :func:`archive.dicom.dataset.encode_dataset`) or a
validator of VR lengths and repertoires beyond "can it be written at all".

Theory of operation for code extensions. The encoder tracks what G0 and G1 hold,
starting from the designations of value 1 (PS3.5 6.1.2.5.1). Each character is
written in the set already designated when it can be, else in the first set of the
list that has it, after that set's escape sequence. Before every delimiter (CR, LF,
TAB, FF and other control characters; the ``\\`` between values; ``^`` and ``=`` in PN)
and at the end of the value the sets of value 1 are designated again, as PS3.5
6.1.2.5.3 requires, so a decoder may reset its state there. ESC itself is never
accepted in a value: it would be read as the start of an escape sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import ClassVar, NamedTuple

from archive.dicom.charset import (
    CODECS,
    ESC,
    EXTENSIONS,
    G0_ASCII,
    G0_ROMAJI,
    STAND_ALONE,
    TEXT_VRS,
    CodeExtension,
    normal_term,
)
from archive.errors import ArchiveError

__all__ = [
    "UTF8_TERMS",
    "UnencodableError",
    "can_encode",
    "encode_value",
    "response_character_set",
]

#: Specific Character Set of a response whose values the request's set cannot hold.
UTF8_TERMS = ("ISO_IR 192",)


class UnencodableError(ArchiveError):
    """A value cannot be written in the given Specific Character Set (PS3.5 6.1)."""

    code: ClassVar[str] = "dicom.text.unencodable"


#: VRs of VM 1 whose values may hold a backslash as text, PS3.5 Table 6.2-1.
_SINGLE_VALUED = frozenset({"ST", "LT", "UT"})
_ESC = chr(ESC)

# Non-extension terms -> Python codec, PS3.3 Tables C.12-2 and C.12-5: the decoder's
# table, except that the default repertoire is ASCII here (the decoder reads stray
# 8-bit bytes as Latin-1; an encoder must not write them).
_PLAIN = {
    **{term: codec for term, codec in CODECS.items() if not term.startswith("ISO 2022")},
    "": "ascii",
    "ISO_IR 6": "ascii",
}
_ISO_2022_IR_6 = "ISO 2022 IR 6"


class _Plan(NamedTuple):
    """How to encode text in one Specific Character Set."""

    codec: str  # for a set without code extensions; "" when extensions are in use
    g0: bytes  # value 1's G0 escape, designated again at each delimiter
    g1: CodeExtension | None  # value 1's G1 set, likewise
    sets: tuple[CodeExtension, ...]  # every extension set, value 1's first


@lru_cache(maxsize=64)
def _plan(terms: tuple[str, ...]) -> _Plan:
    normal = [normal_term(term) for term in terms] or [""]
    first = normal[0]
    if first in STAND_ALONE or (len(normal) == 1 and first in _PLAIN):
        return _Plan(_PLAIN[first], b"", None, ())
    sets: list[CodeExtension] = []
    for term in normal:
        if term in STAND_ALONE:
            continue  # not allowed after value 1; the decoder drops it too
        if term in ("", "ISO_IR 6", _ISO_2022_IR_6):
            continue  # ASCII is always in G0
        # A non-extension term among several is read as its ISO 2022 twin.
        set_ = EXTENSIONS.get(term.replace("ISO_IR ", "ISO 2022 IR "))
        if set_ is None:
            raise UnencodableError(f"unknown Specific Character Set term {term!r}")
        sets.append(set_)
    first_set = EXTENSIONS.get(first.replace("ISO_IR ", "ISO 2022 IR "))
    g1 = first_set if first_set is not None and first_set.slot == 1 else None
    g0 = G0_ROMAJI if first_set is not None and first_set.term == "ISO 2022 IR 13" else G0_ASCII
    return _Plan("", g0, g1, tuple(sets))


def _encode_in(char: str, set_: CodeExtension) -> bytes | None:
    """The bytes of one character in one extension set, without escapes, or None."""
    try:
        raw = char.encode(set_.codec)
    except UnicodeEncodeError:
        return None
    if set_.slot == 0:
        # iso2022_jp(_2) wraps the character in its own escapes; keep it only if it
        # landed in the set asked for.
        if raw.startswith(set_.escape) and len(raw) == len(set_.escape) + 2 + len(G0_ASCII):
            return raw[len(set_.escape) : len(set_.escape) + 2]
        return None
    # G1 sets are invoked in GR (A0-FF), PS3.5 6.1.2.5.2.
    if len(raw) == set_.width and all(byte >= 0xA0 for byte in raw):
        return raw
    return None


def _encode_extended(value: str, plan: _Plan, delimiters: str) -> bytes:
    out = bytearray()
    g0_two_byte: CodeExtension | None = None  # the JIS set in G0, None while G0 is ASCII
    g1 = plan.g1
    for char in value:
        if char < "\x80":
            if g0_two_byte is not None:
                out += plan.g0
                g0_two_byte = None
            if char in delimiters or char < " ":
                if g1 is not plan.g1 and plan.g1 is not None:
                    out += plan.g1.escape
                g1 = plan.g1
            out += char.encode("ascii")
            continue
        raw = None
        if g1 is not None:
            raw = _encode_in(char, g1)
        if raw is None and g0_two_byte is not None:
            raw = _encode_in(char, g0_two_byte)
        if raw is None:
            for set_ in plan.sets:
                raw = _encode_in(char, set_)
                if raw is not None:
                    out += set_.escape
                    if set_.slot == 0:
                        g0_two_byte = set_
                    else:
                        g1 = set_
                    break
            else:
                raise UnencodableError(f"U+{ord(char):04X} is in none of the character sets")
        out += raw
    # The end of the value is a delimiter too (PS3.5 6.1.2.5.3).
    if g0_two_byte is not None:
        out += plan.g0
    if g1 is not plan.g1 and plan.g1 is not None:
        out += plan.g1.escape
    return bytes(out)


def _encode_plain(value: str, codec: str) -> bytes:
    try:
        raw = value.encode(codec)
    except UnicodeEncodeError as exc:
        char = value[exc.start]
        raise UnencodableError(f"U+{ord(char):04X} is not in {codec}") from None
    # ISO_IR 13 is JIS X 0201 only: one byte a character, and Shift JIS maps a few
    # characters (YEN SIGN, OVERLINE) onto ASCII bytes that read back as others.
    if codec == "shift_jis" and (len(raw) != len(value) or raw.decode(codec) != value):
        raise UnencodableError("not in JIS X 0201 (ISO_IR 13)")
    return raw


def encode_value(value: str, vr: str, terms: Sequence[str]) -> bytes:
    """``value`` as bytes of a ``vr`` value in the character set of ``terms``, unpadded.

    ``terms`` are the values of Specific Character Set (0008,0005); empty means the
    default repertoire. Multiple values are joined with ``\\`` in ``value``; PN
    components and groups with ``^`` and ``=``. VRs other than SH, LO, ST, LT, UC, UT
    and PN are ASCII (PS3.5 6.1.2.3). Raises :class:`UnencodableError` when a
    character cannot be represented, the value holds ESC, or a term is unknown.
    """
    if _ESC in value:
        raise UnencodableError("ESC in a value (it starts escape sequences, PS3.5 6.1.2.5)")
    plan = _plan(tuple(terms))
    if value.isascii():
        # Every set agrees with ASCII on 00-7F, and ASCII needs no escapes.
        return value.encode("ascii")
    if vr not in TEXT_VRS:
        raise UnencodableError(f"{vr} values are in the default repertoire (PS3.5 6.1.2.3)")
    if plan.codec:
        return _encode_plain(value, plan.codec)
    delimiters = "" if vr in _SINGLE_VALUED else "\\"
    if vr == "PN":
        delimiters += "^="
    return _encode_extended(value, plan, delimiters)


def can_encode(values: Iterable[str], terms: Sequence[str]) -> bool:
    """Whether every value can be written in the character set of ``terms``."""
    try:
        for value in values:
            encode_value(value, "UT", terms)
    except UnencodableError:
        return False
    return True


def response_character_set(values: Iterable[str], requested: Sequence[str]) -> tuple[str, ...]:
    """The Specific Character Set terms of a C-FIND response holding ``values``.

    The identifier's own (0008,0005), ``requested`` (possibly empty: the default
    repertoire), when it can hold every value; otherwise ``ISO_IR 192`` (UTF-8),
    which holds any text (PS3.4 C.4.1.1.3.1 lets the SCP answer in another set).
    """
    if can_encode(values, requested):
        return tuple(requested)
    return UTF8_TERMS
