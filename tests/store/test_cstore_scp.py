"""C-STORE SCP behaviour: stored files, index rows, statuses, duplicates (PS3.4 B.2).

The node runs in-process (tests/conftest.py ``node_factory``); the SCU is pynetdicom
or our own :func:`archive.net.associate`. Each stored file must be the 128-byte
preamble, ``DICM``, the File Meta Information of PS3.10 Table 7.1-1 built from the
command and the association, then the data set bytes exactly as the SCU sent them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from archive.dicom.uids import (
    DEFLATED_EXPLICIT_VR_LE,
    EXPLICIT_VR_LE,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    IMPLICIT_VR_LE,
)
from tests.conftest import RunningNode
from tests.dicom.header_helpers import JPEG_BASELINE, encapsulated
from tests.net.rawpeer import wait_until
from tests.store.helpers import (
    CANNOT_UNDERSTAND,
    CT_IMAGE,
    DOES_NOT_MATCH,
    DUPLICATE,
    INVALID_SOP_INSTANCE,
    NATIVE,
    SECONDARY_CAPTURE,
    SUCCESS,
    Item,
    archive_store,
    archive_store_async,
    data_dir,
    encode_dataset,
    index_row,
    instance_files,
    leftovers,
    make_dataset,
    new_uid,
    pynetdicom_store,
    read_stored,
    record,
    sha256,
    split_part10,
    stored_path,
    text,
    ui,
)

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"

NodeFactory = Callable[..., RunningNode]


def check_stored(
    node: RunningNode,
    *,
    sop_class: str,
    uid: str,
    transfer_syntax: str,
    calling_ae: str,
    sent: bytes,
) -> None:
    """The file and the index row of one instance received as ``sent``."""
    root = data_dir(node)
    meta, data = read_stored(root, uid)
    # PS3.10 Table 7.1-1, exactly the elements we write, each value padded per PS3.5 6.2.
    assert sorted(meta) == [0x0000, 0x0001, 0x0002, 0x0003, 0x0010, 0x0012, 0x0013, 0x0016]
    group_length = sum(
        (12 if vr == b"OB" else 8) + len(value)
        for element, (vr, value) in meta.items()
        if element != 0x0000
    )
    assert meta[0x0000] == (b"UL", struct.pack("<L", group_length))
    assert meta[0x0001] == (b"OB", b"\x00\x01")
    assert meta[0x0002] == (b"UI", ui(sop_class))
    assert meta[0x0003] == (b"UI", ui(uid))
    assert meta[0x0010] == (b"UI", ui(transfer_syntax))
    assert meta[0x0012] == (b"UI", ui(IMPLEMENTATION_CLASS_UID))
    assert meta[0x0013] == (b"SH", text(IMPLEMENTATION_VERSION_NAME))
    assert meta[0x0016] == (b"AE", text(calling_ae))
    assert data == sent

    path = stored_path(root, uid)
    parsed = dcmread(path)
    assert parsed.file_meta.TransferSyntaxUID == transfer_syntax
    assert parsed.file_meta.SourceApplicationEntityTitle == calling_ae
    assert parsed.SOPInstanceUID == uid

    stored = record(node, uid)
    assert stored is not None
    assert stored.path == str(path.relative_to(root))
    assert stored.size == path.stat().st_size
    assert stored.digest == sha256(sent)
    assert stored.transfer_syntax_uid == transfer_syntax
    assert stored.source_ae == calling_ae
    assert stored.attrs.sop_class_uid == sop_class
    assert stored.attrs.sop_instance_uid == uid
    assert leftovers(root) == []


def check_item_stored(
    node: RunningNode,
    item: Item,
    transfer_syntax: str,
    *,
    sop_class: str = CT_IMAGE,
    calling_ae: str = "OURSCU",
) -> None:
    """:func:`check_stored` for an instance our SCU sent as ``item``."""
    check_stored(
        node,
        sop_class=sop_class,
        uid=item.uid,
        transfer_syntax=transfer_syntax,
        calling_ae=calling_ae,
        sent=item.data,
    )


def aggregates(row: Mapping[str, object] | None) -> tuple[object, ...]:
    """An index row's study series, study instances and series instances counts."""
    assert row is not None
    return (row["study_series"], row["study_instances"], row["series_instances"])


# ---- stored files, every native transfer syntax, both SCUs ---------------------------


@pytest.mark.parametrize("transfer_syntax", NATIVE)
def test_pynetdicom_scu_file_and_row(node: RunningNode, transfer_syntax: str) -> None:
    ds = make_dataset(pixel_bytes=3000, seed=1)
    assert pynetdicom_store(node.port, [ds], transfer_syntax, calling_ae="MODALITY1") == [SUCCESS]
    check_stored(
        node,
        sop_class=CT_IMAGE,
        uid=ds.SOPInstanceUID,
        transfer_syntax=transfer_syntax,
        calling_ae="MODALITY1",
        sent=encode_dataset(ds, transfer_syntax),
    )
    stored = record(node, ds.SOPInstanceUID)
    assert stored is not None
    attrs = stored.attrs
    assert (attrs.patient_name, attrs.patient_id, attrs.patient_birth_date) == (
        "Doe^John",
        "PID-1",
        "19700101",
    )
    assert (attrs.study_instance_uid, attrs.series_instance_uid) == (
        ds.StudyInstanceUID,
        ds.SeriesInstanceUID,
    )
    assert (attrs.study_date, attrs.study_time, attrs.accession_number, attrs.study_id) == (
        "20240102",
        "101500",
        "ACC-1",
        "S1",
    )
    assert (attrs.modality, attrs.series_number, attrs.instance_number) == ("CT", 1, 1)
    assert (attrs.rows, attrs.columns) == (ds.Rows, ds.Columns)
    assert (attrs.study_description, attrs.series_description) == ("Head", "Axial")
    assert attrs.referring_physician_name == "Ref^Doctor"


@pytest.mark.parametrize("transfer_syntax", NATIVE)
def test_our_scu_file_and_row(node: RunningNode, transfer_syntax: str) -> None:
    # An odd-length calling AE title: the AE value in the meta is space-padded.
    items = [Item.of(make_dataset(pixel_bytes=70_000, seed=n), transfer_syntax) for n in range(3)]
    assert archive_store(node.port, items, transfer_syntax, calling_ae="OURSCU7") == [SUCCESS] * 3
    for item in items:
        check_item_stored(node, item, transfer_syntax, calling_ae="OURSCU7")


@pytest.mark.parametrize(
    "name",
    ["SC_rgb_jpeg_dcmtk.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"],
)
def test_encapsulated_bytes_as_sent(node: RunningNode, name: str) -> None:
    """The data set of a compressed file, sent raw by our SCU, is stored byte for byte."""
    path = get_testdata_file(name)
    assert path is not None
    blob = Path(path).read_bytes()
    meta, offset = split_part10(blob, zero_preamble=False)
    transfer_syntax = meta[0x0010][1].rstrip(b"\0").decode()
    ds = dcmread(path)
    item = Item(str(ds.SOPClassUID), str(ds.SOPInstanceUID), blob[offset:])
    assert archive_store(node.port, [item], transfer_syntax) == [SUCCESS]
    check_item_stored(node, item, transfer_syntax, sop_class=item.sop_class)
    stored = dcmread(stored_path(data_dir(node), item.uid))
    assert stored.PixelData == ds.PixelData


def test_encapsulated_pynetdicom(node: RunningNode) -> None:
    path = get_testdata_file("SC_rgb_rle.dcm")
    assert path is not None
    ds = dcmread(path)
    transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
    assert pynetdicom_store(node.port, [ds], transfer_syntax) == [SUCCESS]
    check_stored(
        node,
        sop_class=SECONDARY_CAPTURE,
        uid=ds.SOPInstanceUID,
        transfer_syntax=transfer_syntax,
        calling_ae="STORESCU",
        sent=encode_dataset(ds, EXPLICIT_VR_LE),  # encapsulated: Explicit VR LE encoding
    )


# ---- fragmentation -----------------------------------------------------------------


@pytest.mark.parametrize(("max_pdu", "chunk"), [(4096, 16384), (65536, 7), (262144, 1)])
def test_dataset_in_many_small_pdvs(node_factory: NodeFactory, max_pdu: int, chunk: int) -> None:
    """Fragments cut anywhere (PS3.8 E.2: a PDV may end inside an element) change nothing."""
    node = node_factory(toml=f"[association]\nmax_pdu_length = {max_pdu}\n")
    size = 300_000 if chunk > 100 else 1500
    item = Item.of(make_dataset(pixel_bytes=size, charset="ISO_IR 100"), EXPLICIT_VR_LE)
    assert archive_store(node.port, [item], EXPLICIT_VR_LE, chunk=chunk) == [SUCCESS]
    check_item_stored(node, item, EXPLICIT_VR_LE)


# ---- character sets -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "name", "transfer_syntax"),
    [
        ("ISO_IR 100", "Müller^Jürgen", EXPLICIT_VR_LE),
        ("ISO_IR 100", "Ørsted^Hans Christian", IMPLICIT_VR_LE),
        ("ISO_IR 192", "Łukasiewicz^Jan", EXPLICIT_VR_LE),
        ("ISO_IR 192", "山田^太郎", DEFLATED_EXPLICIT_VR_LE),
        # PS3.5 H.3.1 example: ISO 2022 with JIS X 0208 in the ideographic and
        # phonetic component groups.
        ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう", EXPLICIT_VR_LE),
    ],
)
def test_patient_name_decoded_with_charset(
    node: RunningNode, charset: str, name: str, transfer_syntax: str
) -> None:
    ds = make_dataset(charset=charset, patient_name=name)
    sent = encode_dataset(ds, transfer_syntax)
    if transfer_syntax != DEFLATED_EXPLICIT_VR_LE:
        # Really encoded in that character set, not in UTF-8 by accident.
        python = {"ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}.get(charset)
        if python is not None:
            assert name.encode(python) in sent
    assert pynetdicom_store(node.port, [ds], transfer_syntax) == [SUCCESS]
    stored = record(node, ds.SOPInstanceUID)
    assert stored is not None
    assert stored.attrs.patient_name == name
    assert stored.attrs.specific_character_set == charset
    row = index_row(data_dir(node), ds.SOPInstanceUID)
    assert row is not None
    assert row["patient_name"] == name
    assert row["specific_character_set"] == charset


# ---- study and series aggregates ------------------------------------------------------


def test_aggregates_after_two_studies(node: RunningNode) -> None:
    study_a, study_b = new_uid(), new_uid()
    series_a1, series_a2, series_b1 = new_uid(), new_uid(), new_uid()
    datasets = [
        *(
            make_dataset(study_uid=study_a, series_uid=series_a1, instance_number=n)
            for n in range(1, 4)
        ),
        make_dataset(study_uid=study_a, series_uid=series_a2, sop_class=MR_IMAGE, modality="MR"),
        *(
            make_dataset(
                study_uid=study_b,
                series_uid=series_b1,
                sop_class=SECONDARY_CAPTURE,
                modality="OT",
                patient_id="PID-2",
                instance_number=n,
            )
            for n in range(1, 3)
        ),
    ]
    assert pynetdicom_store(node.port, datasets[:3], EXPLICIT_VR_LE) == [SUCCESS] * 3
    items = [Item.of(ds, IMPLICIT_VR_LE) for ds in datasets[3:]]
    assert archive_store(node.port, items, IMPLICIT_VR_LE) == [SUCCESS] * 3
    root = data_dir(node)

    rows = {ds.SOPInstanceUID: index_row(root, ds.SOPInstanceUID) for ds in datasets}
    a = [rows[ds.SOPInstanceUID] for ds in datasets[:4]]
    b = [rows[ds.SOPInstanceUID] for ds in datasets[4:]]
    for row in a:
        assert row is not None
        assert (row["study_series"], row["study_instances"]) == (2, 4)
        assert row["modalities_in_study"] == "CT\\MR"
        assert row["sop_classes_in_study"] == "\\".join(sorted([CT_IMAGE, MR_IMAGE]))
    assert [row["series_instances"] for row in a if row] == [3, 3, 3, 1]
    for row in b:
        assert row is not None
        assert aggregates(row) == (1, 2, 2)
        assert row["modalities_in_study"] == "OT"
        assert row["sop_classes_in_study"] == SECONDARY_CAPTURE

    assert node.node is not None
    index = node.node.storage.index
    assert index is not None
    assert node.loop is not None
    stats = asyncio.run_coroutine_threadsafe(index.stats(), node.loop).result(10)
    sizes = sum(p.stat().st_size for p in instance_files(root))
    assert (stats.patients, stats.studies, stats.series, stats.instances) == (2, 2, 3, 6)
    assert stats.bytes == sizes


# ---- failure statuses: nothing stored -------------------------------------------------


def assert_nothing_stored(node: RunningNode, *uids: str) -> None:
    root = data_dir(node)
    assert instance_files(root) == []
    assert leftovers(root) == []
    for uid in uids:
        assert record(node, uid) is None


def test_sop_instance_uid_mismatch_is_a900(node: RunningNode) -> None:
    ds = make_dataset()
    command_uid = new_uid()
    item = Item(CT_IMAGE, command_uid, encode_dataset(ds, EXPLICIT_VR_LE))
    assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [DOES_NOT_MATCH]
    assert_nothing_stored(node, command_uid, ds.SOPInstanceUID)


def test_sop_class_mismatch_is_a900(node: RunningNode) -> None:
    ds = make_dataset(sop_class=MR_IMAGE)
    item = Item(CT_IMAGE, ds.SOPInstanceUID, encode_dataset(ds, EXPLICIT_VR_LE))
    assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [DOES_NOT_MATCH]
    assert_nothing_stored(node, ds.SOPInstanceUID)


@pytest.mark.parametrize(
    ("missing", "status"),
    [
        ("StudyInstanceUID", DOES_NOT_MATCH),
        ("SeriesInstanceUID", DOES_NOT_MATCH),
        # Without them the data set cannot be told what it is (DCMTK answers so too).
        ("SOPInstanceUID", CANNOT_UNDERSTAND),
        ("SOPClassUID", CANNOT_UNDERSTAND),
    ],
)
def test_missing_uid_is_refused(node: RunningNode, missing: str, status: int) -> None:
    """check_store_request: C000 without SOP Class or Instance UID, A900 without the
    Type 1 Study or Series Instance UID."""
    ds = make_dataset()
    uid = ds.SOPInstanceUID
    delattr(ds, missing)
    item = Item(CT_IMAGE, uid, encode_dataset(ds, IMPLICIT_VR_LE))
    assert archive_store(node.port, [item], IMPLICIT_VR_LE) == [status]
    assert_nothing_stored(node, uid)


def _bad_vr() -> bytes:
    # (0008,0016) with VR bytes 00 00: its "length" reads as 0x2E31 + garbage.
    return struct.pack("<HH2sH", 0x0008, 0x0016, b"\0\0", 4) + b"1.2." + bytes(64)


def _short_header() -> bytes:
    return b"\x08\x00\x16"


def _huge_value() -> bytes:
    return struct.pack("<HH2s2xL", 0x0008, 0x0018, b"UN", 0xFFFFFFF0) + b"1234"


@pytest.mark.parametrize("garbage", [_bad_vr, _short_header, _huge_value])
def test_unparseable_dataset_is_c000(node: RunningNode, garbage: Callable[[], bytes]) -> None:
    uid = new_uid()
    item = Item(CT_IMAGE, uid, garbage())
    assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [CANNOT_UNDERSTAND]
    assert_nothing_stored(node, uid)
    # The association and the node go on: a good instance after it is stored.
    good = Item.of(make_dataset(), EXPLICIT_VR_LE)
    assert archive_store(node.port, [item, good], EXPLICIT_VR_LE) == [CANNOT_UNDERSTAND, SUCCESS]


@pytest.mark.parametrize("transfer_syntax", [EXPLICIT_VR_LE, JPEG_BASELINE])
def test_pixel_data_encoded_against_its_transfer_syntax_is_c000(
    node: RunningNode, transfer_syntax: str
) -> None:
    """Fragments in a native syntax, or a plain value in an encapsulated one (PS3.5
    A.4): such an instance could be neither decoded nor sent on (DCMTK's storescp
    refuses it), so it is refused and nothing is stored."""
    ds = make_dataset(pixel_bytes=64)
    if transfer_syntax == EXPLICIT_VR_LE:
        del ds.PixelData
        data = encode_dataset(ds, EXPLICIT_VR_LE) + encapsulated(b"\xff\xd8\xff\xd9")
    else:
        data = encode_dataset(ds, EXPLICIT_VR_LE)  # Pixel Data of 64 bytes
    item = Item(CT_IMAGE, ds.SOPInstanceUID, data)
    assert archive_store(node.port, [item], transfer_syntax) == [CANNOT_UNDERSTAND]
    assert_nothing_stored(node, ds.SOPInstanceUID)


def test_random_bytes_are_c000(node: RunningNode) -> None:
    # 4 KiB of random bytes sent as an Explicit VR LE data set: the first random
    # tag is past (0028,0011), the last one the header reader wants, but element
    # headers are walked to the end all the same (values skipped), so the random
    # lengths overrunning the end tell garbage from a data set: C000 "Cannot
    # understand" (PS3.4 Table B.2-1), not A900, which would claim the data set
    # was understood and does not match its SOP Class. Nothing is stored.
    uid = new_uid()
    garbage = random.Random(7).randbytes(4096)
    item = Item(CT_IMAGE, uid, garbage)
    statuses = archive_store(node.port, [item], EXPLICIT_VR_LE)
    assert_nothing_stored(node, uid)
    assert statuses == [CANNOT_UNDERSTAND]


def test_truncated_dataset_is_not_acknowledged(node: RunningNode) -> None:
    # A data set cut in the middle of its Pixel Data value (the element says
    # 64000 bytes, the last PDV ends after 20000 of them) is no valid encoding
    # (PS3.5 7.1): the bytes of the value being skipped are counted to the data
    # set's last fragment, and C000 "Cannot understand" goes back (PS3.4 Table
    # B.2-1), nothing stored. pydicom's dcmread would silently return 20000 bytes.
    ds = make_dataset(pixel_bytes=64_000)
    whole = encode_dataset(ds, EXPLICIT_VR_LE)
    item = Item(CT_IMAGE, ds.SOPInstanceUID, whole[: len(whole) - 44_000])
    statuses = archive_store(node.port, [item], EXPLICIT_VR_LE)
    assert statuses == [CANNOT_UNDERSTAND]
    assert_nothing_stored(node, ds.SOPInstanceUID)


# ---- duplicates ------------------------------------------------------------------------


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, st.st_size


def test_identical_duplicate_is_success_and_not_rewritten(node: RunningNode) -> None:
    ds = make_dataset(pixel_bytes=2000)
    item = Item.of(ds, EXPLICIT_VR_LE)
    assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [SUCCESS]
    root = data_dir(node)
    path = stored_path(root, item.uid)
    before = _stat(path)
    row_before = index_row(root, item.uid)
    # Same content again, on another association and on the same one.
    assert archive_store(node.port, [item, item], EXPLICIT_VR_LE) == [SUCCESS, SUCCESS]
    assert _stat(path) == before
    assert index_row(root, item.uid) == row_before
    assert leftovers(root) == []
    assert len(instance_files(root)) == 1


def _first_and_other(transfer_syntax: str = EXPLICIT_VR_LE) -> tuple[Item, Item]:
    ds = make_dataset(pixel_bytes=2000, seed=1)
    other = make_dataset(
        sop_instance_uid=ds.SOPInstanceUID,
        study_uid=ds.StudyInstanceUID,
        series_uid=ds.SeriesInstanceUID,
        patient_name="Other^Name",
        pixel_bytes=4000,
        seed=2,
    )
    return Item.of(ds, transfer_syntax), Item.of(other, transfer_syntax)


def test_different_duplicate_keep_policy(node: RunningNode) -> None:
    first, other = _first_and_other()
    assert archive_store(node.port, [first], EXPLICIT_VR_LE) == [SUCCESS]
    root = data_dir(node)
    before = _stat(stored_path(root, first.uid))
    assert archive_store(node.port, [other], EXPLICIT_VR_LE) == [SUCCESS]
    assert _stat(stored_path(root, first.uid)) == before
    assert read_stored(root, first.uid)[1] == first.data
    stored = record(node, first.uid)
    assert stored is not None
    assert stored.digest == sha256(first.data)
    assert stored.attrs.patient_name == "Doe^John"
    assert leftovers(root) == []


def test_different_duplicate_replace_policy(node_factory: NodeFactory) -> None:
    node = node_factory(toml='[store]\nduplicates = "replace"\n')
    first, other = _first_and_other()
    assert archive_store(node.port, [first], EXPLICIT_VR_LE) == [SUCCESS]
    assert archive_store(node.port, [other], EXPLICIT_VR_LE) == [SUCCESS]
    root = data_dir(node)
    assert read_stored(root, first.uid)[1] == other.data
    stored = record(node, first.uid)
    assert stored is not None
    assert stored.digest == sha256(other.data)
    assert stored.size == stored_path(root, first.uid).stat().st_size
    assert stored.attrs.patient_name == "Other^Name"
    assert stored.attrs.rows == 4000 // 64
    assert leftovers(root) == []
    assert len(instance_files(root)) == 1


def test_replace_moving_the_instance_to_another_study(node_factory: NodeFactory) -> None:
    """A replacement in another study and series: both sides' aggregates follow."""
    node = node_factory(toml='[store]\nduplicates = "replace"\n')
    ds = make_dataset()
    keep = make_dataset(study_uid=ds.StudyInstanceUID, series_uid=ds.SeriesInstanceUID)
    moved = make_dataset(sop_instance_uid=ds.SOPInstanceUID, modality="MR", sop_class=CT_IMAGE)
    items = [Item.of(d, IMPLICIT_VR_LE) for d in (ds, keep, moved)]
    assert archive_store(node.port, items, IMPLICIT_VR_LE) == [SUCCESS] * 3
    root = data_dir(node)
    new_row = index_row(root, ds.SOPInstanceUID)
    assert new_row is not None
    assert new_row["study_instance_uid"] == moved.StudyInstanceUID
    assert aggregates(new_row) == (1, 1, 1)
    assert aggregates(index_row(root, keep.SOPInstanceUID)) == (1, 1, 1)


def test_different_duplicate_reject_policy(node_factory: NodeFactory) -> None:
    node = node_factory(toml='[store]\nduplicates = "reject"\n')
    first, other = _first_and_other()
    assert archive_store(node.port, [first], EXPLICIT_VR_LE) == [SUCCESS]
    root = data_dir(node)
    before = _stat(stored_path(root, first.uid))
    assert archive_store(node.port, [other], EXPLICIT_VR_LE) == [DUPLICATE]
    assert _stat(stored_path(root, first.uid)) == before
    assert read_stored(root, first.uid)[1] == first.data
    stored = record(node, first.uid)
    assert stored is not None
    assert stored.digest == sha256(first.data)
    assert leftovers(root) == []
    # Identical content is still a success under reject.
    assert archive_store(node.port, [first], EXPLICIT_VR_LE) == [SUCCESS]


@pytest.mark.parametrize("policy", ["keep", "replace", "reject"])
@pytest.mark.parametrize("content", ["identical", "other"])
def test_a_duplicate_of_an_instance_whose_file_is_gone_is_stored(
    node_factory: NodeFactory, policy: str, content: str
) -> None:
    """The row says the instance is held, its file was deleted by hand (or lost
    with a disk): a resend, the usual repair from a modality, is stored in its
    place whatever the policy, not answered Success with nothing kept."""
    node = node_factory(toml=f'[store]\nduplicates = "{policy}"\n')
    first, other = _first_and_other()
    again = first if content == "identical" else other
    assert archive_store(node.port, [first], EXPLICIT_VR_LE) == [SUCCESS]
    root = data_dir(node)
    stored_path(root, first.uid).unlink()
    assert archive_store(node.port, [again], EXPLICIT_VR_LE) == [SUCCESS]
    assert read_stored(root, first.uid)[1] == again.data
    stored = record(node, first.uid)
    assert stored is not None
    assert stored.digest == sha256(again.data)
    assert stored.size == stored_path(root, first.uid).stat().st_size
    assert leftovers(root) == []
    assert len(instance_files(root)) == 1


def test_reject_response_fields(node_factory: NodeFactory) -> None:
    """The 0x0111 response echoes the UIDs and says why (PS3.7 9.3.1.2, C.4.x)."""
    node = node_factory(toml='[store]\nduplicates = "reject"\n')
    first, other = _first_and_other()
    assert archive_store(node.port, [first], EXPLICIT_VR_LE) == [SUCCESS]
    (rsp,) = asyncio.run(archive_store_async(node.port, [other], EXPLICIT_VR_LE))
    assert rsp.status == DUPLICATE
    assert rsp.message_id_being_responded_to == 1
    assert rsp.affected_sop_class_uid == CT_IMAGE
    assert rsp.affected_sop_instance_uid == first.uid
    assert rsp.error_comment == "SOP Instance UID already held with other content"
    # pynetdicom as the SCU sees the same status.
    ds = dcmread(stored_path(data_dir(node), first.uid))
    ds.PatientName = "Changed^Name"
    assert pynetdicom_store(node.port, [ds], EXPLICIT_VR_LE) == [DUPLICATE]


def test_concurrent_identical_duplicates_store_one_file(node: RunningNode) -> None:
    """Four associations send the same instance at once: one file, one row, all Success."""
    item = Item.of(make_dataset(pixel_bytes=200_000), EXPLICIT_VR_LE)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: archive_store(node.port, [item], EXPLICIT_VR_LE), range(4))
        )
    assert results == [[SUCCESS]] * 4
    root = data_dir(node)
    assert instance_files(root) == [stored_path(root, item.uid)]
    assert read_stored(root, item.uid)[1] == item.data
    assert leftovers(root) == []


@pytest.mark.parametrize(
    "bad",
    [
        "1.2.3/../../xxxxxx",  # would name a file elsewhere
        "1.2.3.4.A5",
        "1.2.3.4\u00e9",  # not even ASCII (once aborted the association)
        "1." + "2" * 70,  # over 64 characters
        "1..2",
        "1.2.",
    ],
)
def test_invalid_uid_in_command(node: RunningNode, bad: str) -> None:
    """A command's SOP Instance UID that breaks the construction rules (PS3.5 9.1):
    0117 Invalid SOP Instance (PS3.7 C.5), nothing written anywhere, and the
    association goes on: the next store on it succeeds."""
    placeholder = "1.2.3.444444444444"
    data = encode_dataset(make_dataset(sop_instance_uid=placeholder), EXPLICIT_VR_LE)
    item = Item(CT_IMAGE, bad, data.replace(placeholder.encode(), bad.encode("latin-1")))
    good = Item.of(make_dataset(pixel_bytes=64), EXPLICIT_VR_LE)
    statuses = archive_store(node.port, [item, good], EXPLICIT_VR_LE)
    assert statuses == [INVALID_SOP_INSTANCE, SUCCESS]
    root = data_dir(node)
    assert instance_files(root) == [stored_path(root, good.uid)]
    # The stored one's part name goes just after its response (nobody waits for it).
    wait_until(lambda: leftovers(root) == [], 5, "no leftovers")
    assert not any(p.name.startswith("xxxxxx") for p in root.parent.rglob("*"))


def test_uid_with_a_leading_zero_component_is_stored(node: RunningNode) -> None:
    """A leading zero in a component breaks PS3.5 9.1 too, but modalities send such
    UIDs and other archives store them: so do we."""
    placeholder, uid = "1.2.840.9113654.2.70.1.1234", "1.2.840.0113654.2.70.1.1234"
    data = encode_dataset(make_dataset(sop_instance_uid=placeholder), EXPLICIT_VR_LE)
    item = Item(CT_IMAGE, uid, data.replace(placeholder.encode(), uid.encode()))
    assert archive_store(node.port, [item], EXPLICIT_VR_LE) == [SUCCESS]
    assert read_stored(data_dir(node), uid)[1] == item.data
