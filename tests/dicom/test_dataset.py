"""archive.dicom.dataset: vectors, pydicom as an oracle, round trips, fuzz and limits."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from archive.dicom import uids
from archive.dicom.dataset import (
    MAX_DEPTH,
    MAX_ELEMENTS,
    DatasetError,
    Element,
    decode_dataset,
    decode_items,
    element_items,
    encode_dataset,
    un_items,
)
from archive.dicom.dictionary import vr_of
from archive.dicom.wire import EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE

IMPLICIT = uids.IMPLICIT_VR_LE
EXPLICIT = uids.EXPLICIT_VR_LE
BIG = uids.EXPLICIT_VR_BE
DEFLATED = uids.DEFLATED_EXPLICIT_VR_LE
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
ALL = (IMPLICIT, EXPLICIT, BIG, DEFLATED)

Tree = tuple[Element, ...]


def raw_deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush()


def raw_inflate(data: bytes) -> bytes:
    return zlib.decompress(data, -zlib.MAX_WBITS)


# ---- hand-written vectors ------------------------------------------------------------

# Explicit VR LE: a group length (dropped), an undefined-length SQ holding one
# undefined-length item and one defined-length item, then a PN.
EXPLICIT_VECTOR = b"".join(
    [
        b"\x08\x00\x00\x00UL\x04\x00\x00\x00\x00\x00",  # (0008,0000) UL 4, group length
        b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff",  # (0008,1115) SQ, undefined length
        b"\xfe\xff\x00\xe0\xff\xff\xff\xff",  # item, undefined length
        b"\x08\x00\x50\x11UI\x04\x001.2\x00",  # (0008,1150) UI "1.2\0"
        b"\xfe\xff\x0d\xe0\x00\x00\x00\x00",  # item delimitation item
        b"\xfe\xff\x00\xe0\x0a\x00\x00\x00",  # item, length 10
        b"\x08\x00\x55\x11UI\x02\x001\x00",  # (0008,1155) UI "1\0"
        b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",  # sequence delimitation item
        b"\x10\x00\x10\x00PN\x04\x00Doe ",  # (0010,0010) PN "Doe "
    ]
)
EXPLICIT_TREE: Tree = (
    Element(
        0x00081115,
        "SQ",
        (
            (Element(0x00081150, "UI", b"1.2\x00"),),
            (Element(0x00081155, "UI", b"1\x00"),),
        ),
    ),
    Element(0x00100010, "PN", b"Doe "),
)


def test_explicit_vector_decodes() -> None:
    assert decode_dataset(EXPLICIT_VECTOR, EXPLICIT) == EXPLICIT_TREE
    # Encapsulated transfer syntaxes carry identifiers in Explicit VR LE (PS3.5 A.4).
    assert decode_dataset(memoryview(EXPLICIT_VECTOR), JPEG_BASELINE) == EXPLICIT_TREE


def test_explicit_vector_encodes_with_undefined_lengths() -> None:
    # Same tree, written back: no group length, every SQ and item of undefined length.
    assert encode_dataset(EXPLICIT_TREE, EXPLICIT) == b"".join(
        [
            b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff",
            b"\xfe\xff\x00\xe0\xff\xff\xff\xff",
            b"\x08\x00\x50\x11UI\x04\x001.2\x00",
            b"\xfe\xff\x0d\xe0\x00\x00\x00\x00",
            b"\xfe\xff\x00\xe0\xff\xff\xff\xff",
            b"\x08\x00\x55\x11UI\x02\x001\x00",
            b"\xfe\xff\x0d\xe0\x00\x00\x00\x00",
            b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",
            b"\x10\x00\x10\x00PN\x04\x00Doe ",
        ]
    )


def test_encode_sorts_pads_and_uses_long_lengths() -> None:
    elements = [
        Element(0x00100020, "LO", b"ID1"),  # odd: padded with a space
        Element(0x00080018, "UI", b"1.2.3"),  # odd: padded with NUL
        Element(0x00091001, "UN", b"\x01"),  # odd: padded with NUL, 4-byte length
        Element(0x00080016, "UT", b"ab"),  # 4-byte length form
    ]
    assert encode_dataset(elements, EXPLICIT) == b"".join(
        [
            b"\x08\x00\x16\x00UT\x00\x00\x02\x00\x00\x00ab",
            b"\x08\x00\x18\x00UI\x06\x001.2.3\x00",
            b"\x09\x00\x01\x10UN\x00\x00\x02\x00\x00\x00\x01\x00",
            b"\x10\x00\x20\x00LO\x04\x00ID1 ",
        ]
    )
    assert encode_dataset(elements, IMPLICIT) == b"".join(
        [
            b"\x08\x00\x16\x00\x02\x00\x00\x00ab",
            b"\x08\x00\x18\x00\x06\x00\x00\x001.2.3\x00",
            b"\x09\x00\x01\x10\x02\x00\x00\x00\x01\x00",
            b"\x10\x00\x20\x00\x04\x00\x00\x00ID1 ",
        ]
    )
    assert encode_dataset(elements, BIG) == b"".join(
        [
            b"\x00\x08\x00\x16UT\x00\x00\x00\x00\x00\x02ab",
            b"\x00\x08\x00\x18UI\x00\x061.2.3\x00",
            b"\x00\x09\x10\x01UN\x00\x00\x00\x00\x00\x02\x01\x00",
            b"\x00\x10\x00\x20LO\x00\x04ID1 ",
        ]
    )


def test_implicit_sequences_known_and_unknown() -> None:
    data = b"".join(
        [
            b"\x08\x00\x15\x11\x0c\x00\x00\x00",  # (0008,1115) SQ by the dictionary, length 12
            b"\xfe\xff\x00\xe0\x04\x00\x00\x00",  # item, length 4
            b"\x10\x00\x20\x00",  # half an element header
        ]
    )
    # An item of length 4 cannot hold an 8-byte element header.
    with pytest.raises(DatasetError, match="runs past the end"):
        decode_dataset(data, IMPLICIT)
    data = b"".join(
        [
            b"\x09\x00\x10\x10\xff\xff\xff\xff",  # (0009,1010) private, undefined length
            b"\xfe\xff\x00\xe0\x0a\x00\x00\x00",  # item, length 10
            b"\x10\x00\x20\x00\x02\x00\x00\x00P1",  # (0010,0020) LO "P1"
            b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",  # sequence delimitation item
            b"\x09\x00\x11\x10\x02\x00\x00\x00\x01\x02",  # (0009,1011) private: UN
        ]
    )
    assert decode_dataset(data, IMPLICIT) == (
        Element(0x00091010, "SQ", ((Element(0x00100020, "LO", b"P1"),),)),
        Element(0x00091011, "UN", b"\x01\x02"),
    )


def test_explicit_un_of_undefined_length_is_an_implicit_sequence() -> None:
    # PS3.5 6.2.2: the items of an undefined-length UN are Implicit VR LE.
    data = b"".join(
        [
            b"\x09\x00\x10\x10UN\x00\x00\xff\xff\xff\xff",
            b"\xfe\xff\x00\xe0\xff\xff\xff\xff",
            b"\x10\x00\x20\x00\x02\x00\x00\x00P1",  # implicit: LO from the dictionary
            b"\xfe\xff\x0d\xe0\x00\x00\x00\x00",
            b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",
            b"\x10\x00\x10\x00PN\x02\x00AB",  # explicit again after the sequence
        ]
    )
    assert decode_dataset(data, EXPLICIT) == (
        Element(0x00091010, "SQ", ((Element(0x00100020, "LO", b"P1"),),)),
        Element(0x00100010, "PN", b"AB"),
    )


@pytest.mark.parametrize(
    ("data", "syntax", "message"),
    [
        (b"\x10\x00\x10\x00PN\x04\x00Do", EXPLICIT, "runs past the end"),
        (b"\x10\x00\x10\x00PN", EXPLICIT, "runs past the end"),
        (b"\x10\x00\x10\x00\xff\xff\xff\xff", IMPLICIT, "undefined length on PN"),
        (b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff", EXPLICIT, "undefined length on OB"),
        (b"\x10\x00\x10\x00\x00\x01\x00\x00", EXPLICIT, "no VR"),
        (b"\xfe\xff\x00\xe0\x00\x00\x00\x00", EXPLICIT, "unexpected"),
        (b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", IMPLICIT, "unexpected"),
        (b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff", EXPLICIT, "item header"),
        (
            b"\x08\x00\x15\x11SQ\x00\x00\x08\x00\x00\x00\x10\x00\x10\x00PN\x00\x00",
            EXPLICIT,
            "where an item belongs",
        ),
        (
            b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff",
            EXPLICIT,
            "runs past the end",
        ),
        (
            b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\xdd\xe0\x04\x00\x00\x00",
            EXPLICIT,
            "sequence delimitation item of length 4",
        ),
        (b"\x00\x10\x00\x10PN\x00\x06Do", BIG, "runs past the end"),
        (b"not deflate at all", DEFLATED, "not raw deflate"),
        (raw_deflate(EXPLICIT_VECTOR)[:-4], DEFLATED, "truncated"),
    ],
)
def test_malformed_input_is_refused(data: bytes, syntax: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message) as info:
        decode_dataset(data, syntax)
    assert info.value.status == 0xC000
    assert info.value.code == "dicom.dataset"


def test_encode_refuses_what_cannot_be_written() -> None:
    with pytest.raises(DatasetError, match="longer than 65534"):
        encode_dataset([Element(0x00100010, "PN", b"x" * 0x10000)], EXPLICIT)
    # The same value fits the 4-byte length of Implicit VR.
    assert len(encode_dataset([Element(0x00100010, "PN", b"x" * 0x10000)], IMPLICIT)) == 0x10008
    with pytest.raises(DatasetError, match="has items but VR LO"):
        encode_dataset([Element(0x00100010, "LO", ((),))], EXPLICIT)
    with pytest.raises(DatasetError, match="no valid VR"):
        encode_dataset([Element(0x00100010, "l0", b"")], EXPLICIT)


def element_map(elements: Tree) -> dict[int, Element]:
    """Tag -> element of one level of a data set; a repeated tag keeps the last."""
    return {element.tag: element for element in elements}


def test_element_map() -> None:
    mapping = element_map(EXPLICIT_TREE)
    assert list(mapping) == [0x00081115, 0x00100010]
    assert mapping[0x00100010].value == b"Doe "


# ---- pydicom as the oracle -----------------------------------------------------------

MODES = {IMPLICIT: (True, True), EXPLICIT: (False, True), BIG: (False, False)}


def sample_dataset() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "Müller^Jürgen"
    ds.PatientID = "ID-7"
    ds.StudyInstanceUID = "1.2.840.113619.2.1"
    ds.Rows = 512
    ds.PixelSpacing = [0.5, "0.25"]
    ds.ImagePositionPatient = [1, 2, 3]
    ds.ReferencedFrameNumber = [1, 2]
    ds.SamplesPerPixel = 1
    ds.RescaleSlope = "1"
    ds.StudyDate = "20240101-"
    ds.StudyDescription = ""
    code = Dataset()
    code.CodeValue = "T-D1100"
    code.CodingSchemeDesignator = "SRT"
    code.CodeMeaning = "Head"
    inner = Dataset()
    inner.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    inner.ReferencedSOPInstanceUID = "1.2.3.4.5"
    inner.PurposeOfReferenceCodeSequence = Sequence([code])
    ds.ReferencedImageSequence = Sequence([inner, Dataset()])
    ds.ProcedureCodeSequence = Sequence([])
    ds.add_new(0x00091010, "LO", "PRIVATE")
    ds.add_new(0x00091011, "OB", b"\x01\x02\x03\x04")
    ds.add_new(0x00091012, "FL", 1.5)
    ds.add_new(0x00091013, "UL", 70000)
    return ds


def pydicom_bytes(ds: Dataset, syntax: str) -> bytes:
    implicit, little = MODES[uids.EXPLICIT_VR_LE if syntax == DEFLATED else syntax]
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_dataset(fp, ds)
    data = fp.getvalue()
    return raw_deflate(data) if syntax == DEFLATED else data


def pydicom_read(data: bytes, syntax: str) -> Dataset:
    if syntax == DEFLATED:
        data, syntax = raw_inflate(data), EXPLICIT
    implicit, little = MODES[syntax]
    return read_dataset(DicomBytesIO(data), implicit, little)


def oracle_tree(ds: Dataset, implicit: bool) -> Tree:
    """What pydicom read, as Elements: raw value bytes, VRs, items."""
    out = []
    for tag in sorted(ds.keys()):
        raw: Any = ds.get_item(tag)  # before ds[tag], which converts it in place
        vr = vr_of(int(tag)) if implicit else raw.VR
        if vr == "SQ":
            items = tuple(oracle_tree(item, implicit) for item in ds[tag].value)
            out.append(Element(int(tag), "SQ", items))
        else:
            # pydicom decodes (0008,0005) while reading ("ISO_IR 100": even, unpadded).
            value = raw.value.encode() if isinstance(raw.value, str) else bytes(raw.value)
            out.append(Element(int(tag), vr, value))
    return tuple(out)


@pytest.mark.parametrize("syntax", ALL)
def test_decode_agrees_with_pydicom(syntax: str) -> None:
    data = pydicom_bytes(sample_dataset(), syntax)
    ours = decode_dataset(data, syntax)
    theirs = oracle_tree(pydicom_read(data, syntax), syntax == IMPLICIT)
    assert ours == theirs
    mapping = element_map(ours)
    assert mapping[0x00100010].value == "Müller^Jürgen".encode("latin_1") + b" "
    assert mapping[0x00280010].value == (b"\x02\x00" if syntax == BIG else b"\x00\x02")
    assert len(mapping[0x00081140].value) == 2  # ReferencedImageSequence: two items
    assert mapping[0x00081032].value == ()  # an empty sequence


@pytest.mark.parametrize("syntax", ALL)
def test_encode_is_read_back_by_pydicom(syntax: str) -> None:
    original = sample_dataset()
    tree = decode_dataset(pydicom_bytes(original, syntax), syntax)
    data = encode_dataset(tree, syntax)
    read = pydicom_read(data, syntax)
    assert oracle_tree(read, syntax == IMPLICIT) == tree
    if syntax == IMPLICIT:
        # Implicit VR: pydicom reads private values back as UN; compare the rest.
        assert read[0x00091012].value == struct.pack("<f", 1.5)
        read.remove_private_tags()
        original.remove_private_tags()
    assert read == original  # pydicom's own comparison of every value
    assert read.ReferencedImageSequence[0].PurposeOfReferenceCodeSequence[0].CodeMeaning == "Head"


# ---- round trips over generated trees ------------------------------------------------

_VRS = ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD")
_VRS += ("OF", "OL", "OV", "OW", "PN", "SH", "SL", "SS", "ST", "SV", "TM", "UC", "UI", "UL")
_VRS += ("UN", "UR", "US", "UT", "UV")
#: A few standard tags per VR the dictionary gives, for Implicit VR.
_KNOWN_LEAVES = (
    0x00080005,
    0x00080020,
    0x00080052,
    0x00080060,
    0x00081030,
    0x00100010,
    0x00100020,
    0x00101010,
    0x00200013,
    0x00280010,
    0x00280030,
    0x00281052,
    0x00091001,  # private: UN
)
_KNOWN_SEQUENCES = (0x00081115, 0x00081140, 0x00400275, 0x00091002)  # last private


#: Values as a decoder returns them: even lengths, since encoding pads odd ones.
_VALUES = st.binary(max_size=24).map(lambda raw: raw + b"\0" * (len(raw) & 1))


def _leaf(implicit: bool) -> st.SearchStrategy[Element]:
    if implicit:
        return st.sampled_from(_KNOWN_LEAVES).flatmap(
            lambda tag: _VALUES.map(lambda value: Element(tag, vr_of(tag), value))
        )
    tags = st.tuples(st.integers(0x0008, 0xFFFD), st.integers(1, 0xFFFF))
    return st.builds(
        lambda tag, vr, value: Element(tag[0] << 16 | tag[1], vr, value),
        tags,
        st.sampled_from(_VRS),
        _VALUES,
    )


def _level(children: st.SearchStrategy[Element]) -> st.SearchStrategy[Tree]:
    return st.lists(children, max_size=5, unique_by=lambda e: e.tag).map(
        lambda elements: tuple(sorted(elements, key=lambda e: e.tag))
    )


def _tree(implicit: bool) -> st.SearchStrategy[Tree]:
    def extend(children: st.SearchStrategy[Element]) -> st.SearchStrategy[Element]:
        if implicit:
            tags = st.sampled_from(_KNOWN_SEQUENCES)
        else:
            tags = st.builds(
                lambda g, e: g << 16 | e, st.integers(8, 0xFFFD), st.integers(1, 0xFFFF)
            )
        items = st.lists(_level(children), max_size=3).map(tuple)
        return st.builds(lambda tag, value: Element(tag, "SQ", value), tags, items)

    return _level(st.recursive(_leaf(implicit), extend, max_leaves=20))


@settings(max_examples=150, deadline=None)
@given(tree=_tree(implicit=False), syntax=st.sampled_from((EXPLICIT, BIG, DEFLATED)))
def test_explicit_round_trip(tree: Tree, syntax: str) -> None:
    assert decode_dataset(encode_dataset(tree, syntax), syntax) == tree


@settings(max_examples=150, deadline=None)
@given(tree=_tree(implicit=True))
def test_implicit_round_trip(tree: Tree) -> None:
    assert decode_dataset(encode_dataset(tree, IMPLICIT), IMPLICIT) == tree


# ---- fuzz ---------------------------------------------------------------------------


def _decode_or_refuse(data: bytes, syntax: str) -> None:
    try:
        result = decode_dataset(data, syntax)
    except DatasetError:
        return
    assert isinstance(result, tuple)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), syntax=st.sampled_from(ALL))
def test_random_bytes_only_raise_dataset_error(data: bytes, syntax: str) -> None:
    _decode_or_refuse(data, syntax)


@settings(max_examples=200, deadline=None)
@given(
    syntax=st.sampled_from((IMPLICIT, EXPLICIT, BIG)),
    cut=st.integers(0, 400),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
)
def test_truncated_and_mutated_data_sets_only_raise_dataset_error(
    syntax: str, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(pydicom_bytes(sample_dataset(), syntax)[:cut])
    for at, byte in flips:
        if at < len(data):
            data[at] = byte
    _decode_or_refuse(bytes(data), syntax)


def test_every_truncation_is_refused_or_ends_on_an_element_boundary() -> None:
    data = encode_dataset(EXPLICIT_TREE, EXPLICIT)
    whole = decode_dataset(data, EXPLICIT)
    for cut in range(len(data)):
        try:
            part = decode_dataset(data[:cut], EXPLICIT)
        except DatasetError:
            continue
        assert part == whole[: len(part)]  # only at a top-level boundary


# ---- limits -------------------------------------------------------------------------


def _nested(depth: int) -> Tree:
    tree: Tree = (Element(0x00100020, "LO", b"P1"),)
    for _ in range(depth):
        tree = (Element(0x00081115, "SQ", (tree,)),)
    return tree


@pytest.mark.parametrize("syntax", ALL)
def test_depth_limit(syntax: str) -> None:
    deepest = _nested(MAX_DEPTH)
    assert decode_dataset(encode_dataset(deepest, syntax), syntax) == deepest
    with pytest.raises(DatasetError, match="nested deeper than 16"):
        decode_dataset(encode_dataset(_nested(MAX_DEPTH + 1), syntax), syntax)


def test_element_count_limit() -> None:
    most = [Element(0x00090000 | n, "UN", b"") for n in range(1, MAX_ELEMENTS + 1)]
    assert len(decode_dataset(encode_dataset(most, EXPLICIT), EXPLICIT)) == MAX_ELEMENTS
    too_many = [*most, Element(0x0009FFFF, "UN", b"")]
    with pytest.raises(DatasetError, match="more than 10000 elements"):
        decode_dataset(encode_dataset(too_many, EXPLICIT), EXPLICIT)
    # Items count too: 10,000 empty items are as much work as 10,000 elements.
    items = Element(0x00081115, "SQ", ((),) * MAX_ELEMENTS)
    with pytest.raises(DatasetError, match="more than 10000 elements"):
        decode_dataset(encode_dataset([items], IMPLICIT), IMPLICIT)


def test_deflate_bomb_is_refused() -> None:
    # 17 MiB of one UN value: a few KiB deflated, past the 16 MiB inflate limit.
    header = b"\x09\x00\x10\x10UN\x00\x00" + struct.pack("<L", 17 * 2**20)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = deflater.compress(header)
    for _ in range(17):
        bomb += deflater.compress(bytes(2**20))
    bomb += deflater.flush()
    assert len(bomb) < 64 * 1024
    with pytest.raises(DatasetError, match="inflates past 16777216 bytes"):
        decode_dataset(bomb, DEFLATED)


# -- the items of one sequence value -----------------------------------------------


_ITEM_BODY = struct.pack("<HHL", 0x0008, 0x0100, 6) + b"113000"  # Implicit VR LE


@pytest.mark.parametrize("mode", [IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE])
def test_decode_items_of_defined_and_undefined_length(mode: int) -> None:
    order = "<" if mode != EXPLICIT_BE else ">"
    if mode == IMPLICIT_LE:
        body = struct.pack(order + "HHL", 0x0008, 0x0100, 6) + b"113000"
    else:
        body = struct.pack(order + "HH2sH", 0x0008, 0x0100, b"SH", 6) + b"113000"
    item = struct.pack(order + "HHL", 0xFFFE, 0xE000, len(body)) + body
    want = ((Element(0x00080100, "SH", b"113000"),),)
    assert decode_items(item * 2, mode) == want * 2
    delimiter = struct.pack(order + "HHL", 0xFFFE, 0xE0DD, 0)
    assert decode_items(item + delimiter, mode, undefined=True) == want
    with pytest.raises(DatasetError, match="after the sequence delimitation item"):
        decode_items(item + delimiter + b"\0\0", mode, undefined=True)
    with pytest.raises(DatasetError):
        decode_items(item[:-1], mode)


def test_un_items_reads_implicit_vr_and_answers_none_for_no_items() -> None:
    item = struct.pack("<HHL", 0xFFFE, 0xE000, len(_ITEM_BODY)) + _ITEM_BODY
    assert un_items(item) == ((Element(0x00080100, "SH", b"113000"),),)
    assert un_items(b"garbage!") is None


def test_sequence_items_of_each_kind_of_value() -> None:
    """Items as decoded, a UN sequence's read as Implicit VR, none for an empty
    value, None for a value that holds no items."""
    item = struct.pack("<HHL", 0xFFFE, 0xE000, len(_ITEM_BODY)) + _ITEM_BODY
    items = ((Element(0x00080100, "SH", b"113000"),),)
    assert element_items(Element(0x0040A043, "SQ", items)) == items
    assert element_items(Element(0x0040A043, "UN", item)) == items
    assert element_items(Element(0x0040A043, "UN", b"")) == ()
    assert element_items(Element(0x0040A043, "UN", b"garbage!")) is None
    assert element_items(Element(0x0040A043, "LO", b"113000")) is None
