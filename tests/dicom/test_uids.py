"""The UID tables: generated storage table against pynetdicom, transfer syntaxes against pydicom."""

from __future__ import annotations

import ast
import subprocess
import sys

import pydicom.uid
import pytest
from pynetdicom import AllStoragePresentationContexts

from archive.dicom import storage_classes, uids
from tests.dicom.tool_helpers import ROOT, load_tool

#: Encapsulated transfer syntaxes newer than pydicom 3.0's table (PS3.5 A.4.11-A.4.13).
NEWER_THAN_PYDICOM_30 = {
    "1.2.840.10008.1.2.1.98",  # Encapsulated Uncompressed Explicit VR Little Endian
    "1.2.840.10008.1.2.4.110",  # JPEG XL Lossless
    "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG Recompression
    "1.2.840.10008.1.2.4.112",  # JPEG XL
    "1.2.840.10008.1.2.8.1",  # Deflated Image Frame Compression
}


def test_storage_table_equals_pynetdicom() -> None:
    theirs = {str(context.abstract_syntax) for context in AllStoragePresentationContexts}
    assert theirs == uids.STORAGE_SOP_CLASSES
    assert len(uids.STORAGE_SOP_CLASSES) == 170


def test_checked_in_table_is_what_the_generator_writes() -> None:
    """Fails after a pynetdicom upgrade: run tools/gen_storage_classes.py again."""
    text = (ROOT / "archive" / "dicom" / "storage_classes.py").read_text(encoding="utf-8")
    assert text == load_tool("gen_storage_classes").render()


def test_storage_table_literal_has_no_duplicate_and_is_sorted() -> None:
    tree = ast.parse(
        (ROOT / "archive" / "dicom" / "storage_classes.py").read_text(encoding="utf-8")
    )
    keys = [
        key.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for key in node.keys
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    ]
    assert len(keys) == 170
    assert len(set(keys)) == len(keys)
    assert keys == sorted(keys, key=lambda uid: tuple(int(part) for part in uid.split(".")))


def test_storage_keywords() -> None:
    keywords = storage_classes.STORAGE_SOP_CLASS_KEYWORDS
    assert keywords["1.2.840.10008.5.1.4.1.1.2"] == "CTImageStorage"
    # pydicom's keyword wins over pynetdicom's misspelt attribute name ...
    assert keywords["1.2.840.10008.5.1.4.1.1.11.3"] == "PseudoColorSoftcopyPresentationStateStorage"
    # ... and pynetdicom's name is used where pydicom 3.0 has none.
    assert keywords["1.2.840.10008.5.1.4.1.1.66.7"] == "LabelMapSegmentationStorage"
    assert len(set(keywords.values())) == len(keywords)


def test_all_uids_are_valid() -> None:
    everything = [
        *uids.STORAGE_SOP_CLASSES,
        *uids.ALL_TRANSFER_SYNTAXES,
        uids.VERIFICATION,
        uids.IMPLEMENTATION_CLASS_UID,
    ]
    assert all(uids.is_valid_uid(uid) for uid in everything)
    # a storage class is never a transfer syntax
    assert not uids.STORAGE_SOP_CLASSES & set(uids.ALL_TRANSFER_SYNTAXES)


def test_transfer_syntax_constants() -> None:
    assert uids.VERIFICATION == "1.2.840.10008.1.1"
    assert pydicom.uid.ImplicitVRLittleEndian == uids.IMPLICIT_VR_LE
    assert pydicom.uid.ExplicitVRLittleEndian == uids.EXPLICIT_VR_LE
    assert pydicom.uid.DeflatedExplicitVRLittleEndian == uids.DEFLATED_EXPLICIT_VR_LE
    assert pydicom.uid.ExplicitVRBigEndian == uids.EXPLICIT_VR_BE


def test_encapsulated_set_against_pydicom() -> None:
    pydicom_encapsulated = {
        str(uid)
        for uid in pydicom.uid.AllTransferSyntaxes
        if pydicom.uid.UID(uid).is_encapsulated
        and "JPIP" not in pydicom.uid.UID(uid).name
        and not uid.startswith("1.2.840.10008.1.2.7.")  # SMPTE ST 2110
    }
    ours = uids.ENCAPSULATED_TRANSFER_SYNTAXES
    assert pydicom_encapsulated <= ours
    assert ours - pydicom_encapsulated <= NEWER_THAN_PYDICOM_30
    assert len(ours) == 35
    # The JPIP referenced and ST 2110 syntaxes are out on purpose.
    for left_out in (
        "1.2.840.10008.1.2.4.94",
        "1.2.840.10008.1.2.4.95",
        "1.2.840.10008.1.2.4.204",
        "1.2.840.10008.1.2.4.205",
        "1.2.840.10008.1.2.7.1",
        "1.2.840.10008.1.2.7.3",
    ):
        assert left_out not in ours
    assert not ours & set(uids.NATIVE_TRANSFER_SYNTAXES)


def test_all_transfer_syntaxes_order() -> None:
    everything = uids.ALL_TRANSFER_SYNTAXES
    assert len(set(everything)) == len(everything) == 39
    assert everything[:4] == (
        uids.EXPLICIT_VR_LE,
        uids.IMPLICIT_VR_LE,
        uids.DEFLATED_EXPLICIT_VR_LE,
        uids.EXPLICIT_VR_BE,
    )
    assert set(everything[4:]) == uids.ENCAPSULATED_TRANSFER_SYNTAXES
    # lossless before lossy
    assert everything.index(uids.JPEG_LS_LOSSLESS) < everything.index(uids.JPEG_BASELINE_8BIT)


def test_transfer_syntax_keywords_match_pydicom() -> None:
    assert set(uids.TRANSFER_SYNTAX_KEYWORDS) == set(uids.ALL_TRANSFER_SYNTAXES)
    for uid, keyword in uids.TRANSFER_SYNTAX_KEYWORDS.items():
        known = pydicom.uid.UID(uid).keyword
        if known:
            assert keyword == known, uid
        else:
            assert uid in NEWER_THAN_PYDICOM_30


@pytest.mark.parametrize(
    ("uid", "expected"),
    [
        ("1.2.840.10008.5.1.4.1.1.4", "MRImageStorage"),
        ("1.2.840.10008.1.2.4.50", "JPEGBaseline8Bit"),
        ("1.2.840.10008.1.1", "Verification"),
        ("1.2.840.10008.3.1.1.1", "DICOMApplicationContext"),
        ("1.2.3.4", "1.2.3.4"),
    ],
)
def test_name(uid: str, expected: str) -> None:
    assert uids.name(uid) == expected


@pytest.mark.parametrize(
    ("uid", "valid"),
    [
        ("1.2.3", True),
        ("0", True),
        ("0.0.10", True),
        ("2.25." + "9" * 39, True),
        ("1." + "2" * 62, True),  # 64 characters
        ("1." + "2" * 63, False),  # 65 characters
        ("", False),
        ("1.02", False),
        ("01.2", False),
        ("1..2", False),
        ("1.2.", False),
        (".1", False),
        ("1.2.a", False),
        ("1.2.3\x00", False),
        ("1.2 ", False),
    ],
)
def test_is_valid_uid(uid: str, valid: bool) -> None:
    assert uids.is_valid_uid(uid) is valid


def test_implementation_identification() -> None:
    uid = uids.IMPLEMENTATION_CLASS_UID
    assert uid.startswith("2.25.")
    assert 0 < int(uid.removeprefix("2.25.")) < 2**128
    name = uids.IMPLEMENTATION_VERSION_NAME
    assert 1 <= len(name) <= 16
    assert all(" " < ch <= "~" and ch != "\\" for ch in name)


def test_importing_uids_pulls_in_neither_pydicom_nor_pynetdicom() -> None:
    code = (
        "import sys, archive.dicom.uids, archive.dicom.ul.negotiation, archive.config\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('pydicom', 'pynetdicom', 'socket', 'threading', 'asyncio')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_extra_storage_classes_are_storage_classes_pydicom_knows() -> None:
    """Each extra is a storage SOP class of PS3.6 (pydicom's dictionary as the oracle),
    none is already in the generated table, and the retired ones are marked retired."""
    from pydicom._uid_dict import UID_dictionary

    extras = uids.EXTRA_STORAGE_SOP_CLASS_KEYWORDS
    assert not set(extras) & uids.STORAGE_SOP_CLASSES
    for uid, keyword in extras.items():
        entry_name, entry_type, _, retired, *_ = UID_dictionary[uid]
        assert entry_type == "SOP Class", uid
        assert "Storage" in entry_name, uid
        assert (
            "Retired" in keyword
            or "Trial" in keyword
            or "Standalone" in keyword
            or keyword == "XRayAngiographicBiPlaneImageStorage"
        ) == (retired == "Retired"), uid
    assert uids.STORAGE_SOP_CLASSES | set(extras) == uids.ACCEPTED_STORAGE_SOP_CLASSES
    assert uids.name("1.2.840.10008.5.1.4.1.1.6") == "UltrasoundImageStorageRetired"
