"""archive.dicom.dictionary: the generated table against pydicom's data dictionary."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pydicom._dicom_dict import DicomDictionary, RepeatersDictionary

from archive.dicom.dictionary import keyword_for_tag, parse_tag, tag_for_keyword, vr_of

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_dictionary", ROOT / "tools" / "gen_dictionary.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_module_is_what_the_generator_writes() -> None:
    """Fails after a pydicom upgrade: run tools/gen_dictionary.py again."""
    text = (ROOT / "archive" / "dicom" / "dictionary.py").read_text(encoding="utf-8")
    assert text == _generator().render()


def test_every_entry_agrees_with_pydicom() -> None:
    for tag, (vr, _vm, _name, _retired, keyword) in DicomDictionary.items():
        first = vr.split(" or ")[0]
        expected_vr = "UL" if tag & 0xFFFF == 0 else "UN" if first == "NONE" else first
        assert vr_of(tag) == expected_vr, hex(tag)
        assert keyword_for_tag(tag) == (keyword or None), hex(tag)
        if keyword:
            assert tag_for_keyword(keyword) == tag, keyword
    assert len(DicomDictionary) > 5000  # retired entries are in


@pytest.mark.parametrize(
    ("tag", "vr", "keyword"),
    [
        (0x00100010, "PN", "PatientName"),
        (0x00080052, "CS", "QueryRetrieveLevel"),
        (0x7FE00010, "OB", "PixelData"),  # "OB or OW": the first
        (0x00280106, "US", "SmallestImagePixelValue"),  # "US or SS": the first
        (0x00283006, "US", "LUTData"),  # "US or OW"
        (0xFFFEE000, "UN", "Item"),  # no VR
        (0x00000000, "UL", "CommandGroupLength"),
        (0x00100000, "UL", None),  # a group length, PS3.5 7.2
        (0x00091010, "UN", None),  # private
        (0x00090010, "UN", None),  # private creator: private all the same
        (0x00990099, "UN", None),  # not in the dictionary
        (0x60003000, "OB", "OverlayData"),  # repeating group 60xx, PS3.5 7.6
        (0x601E0010, "US", "OverlayRows"),  # the last overlay group
        (0x60200010, "UN", None),  # past 601E: not an overlay group
        (0x60010010, "UN", None),  # odd: private, not an overlay group
        (0x50020005, "US", "CurveDimensions"),  # 50xx, retired curves
        (0x00280410, "US", "RowsForNthOrderCoefficients"),  # 002804x0
        (0x10100004, "US", "ZonalMap"),  # 1010xxxx
    ],
)
def test_look_ups(tag: int, vr: str, keyword: str | None) -> None:
    assert vr_of(tag) == vr
    assert keyword_for_tag(tag) == keyword


def test_repeating_keywords_give_the_first_instance() -> None:
    for entry in RepeatersDictionary.values():
        tag = tag_for_keyword(entry[4])
        assert tag is not None, entry[4]
        assert keyword_for_tag(tag) == entry[4]
        assert tag & 0xFFFF != 0  # never a group length
    assert tag_for_keyword("OverlayData") == 0x60003000
    assert tag_for_keyword("ZonalMap") == 0x10100001


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("0010,0020", 0x00100020),
        ("(0010,0020)", 0x00100020),
        ("( 7fe0 , 0010 )", 0x7FE00010),
        ("00100020", 0x00100020),
        ("PatientID", 0x00100020),
        (" StudyInstanceUID ", 0x0020000D),
        ("OverlayData", 0x60003000),
        ("PatientId", None),  # keywords are case-sensitive
        ("0010,002", None),
        ("0010002G", None),
        ("", None),
        ("Patient ID", None),
    ],
)
def test_parse_tag(text: str, tag: int | None) -> None:
    assert parse_tag(text) == tag


def test_unknown_keyword() -> None:
    assert tag_for_keyword("NoSuchKeyword") is None


def test_import_parses_nothing() -> None:
    """The table is parsed on first use, not at import (a fresh process; speed
    itself is for bench/, not a unit test)."""
    script = (
        "import archive.dicom.dictionary as d\n"
        "before = d._tables.cache_info().currsize\n"
        "d.vr_of(0x00100010)\n"
        "print(before, d._tables.cache_info().currsize)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["0", "1"]
