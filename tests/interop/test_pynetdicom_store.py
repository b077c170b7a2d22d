"""C-STORE interop with pynetdicom as the SCU against our SCP.

pynetdicom sends either a pydicom ``Dataset`` (encoded for the accepted context
with pydicom's writer) or a file path: by default read and re-encoded, or with
``_config.STORE_SEND_CHUNKED_DATASET`` streamed from the file as it is, with the
command's UIDs taken from the File Meta Information. That last mode sends a
file's data set bytes untouched, so what we store must be byte-identical to the
source file; it also lets a file whose File Meta disagrees with its data set put
a mismatched C-STORE on the wire (PS3.4 B.2.3: refused with A900, nothing
stored). Every exchange goes through :class:`~tests.interop.storehelpers.WireTap`
so the stored data set is also compared with the bytes that crossed the wire.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, cast

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.uid import UID
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.dsutils import encode

from archive.dicom.dimse import CStoreRq, command_pdus
from archive.dicom.ul.pdu import AAssociateAc, PDataTf
from archive.store import relative_path
from tests.conftest import RunningNode
from tests.interop.conftest import HOST
from tests.interop.storehelpers import (
    DEFLATED,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT,
    Sent,
    Source,
    WireTap,
    assert_dcmdump_clean,
    assert_nothing_stored,
    assert_stored,
    index_record,
    index_row,
    index_stats,
    pydicom_file,
)
from tests.net.rawpeer import A_RELEASE_RQ, RawPeer, p_data_pdu

pytestmark = pytest.mark.interop

AET = "PYNETDICOM"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
UNCOMPRESSED = (IMPLICIT, EXPLICIT_LE, EXPLICIT_BE, DEFLATED)
A900 = 0xA900


@contextmanager
def associated(
    port: int, contexts: Sequence[tuple[str, str]], called_ae: str = "ARCHIVE"
) -> Iterator[Association]:
    """A pynetdicom association proposing one context per (SOP class, transfer syntax)."""
    ae = AE(ae_title=AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for abstract, ts in contexts:
        ae.add_requested_context(abstract, ts)
    try:
        assoc = ae.associate(HOST, port, ae_title=called_ae)
        assert assoc.is_established, "pynetdicom could not associate"
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()
    finally:
        ae.shutdown()


@pytest.fixture
def chunked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send file paths from the file as they are (pynetdicom's documented switch)."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


def synthetic(transfer_syntax: str, number: int) -> Dataset:
    """A small Secondary Capture data set built in memory, Latin-1 names, a sequence."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = SC
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1138.{number}.3"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1138.{number}.1"
    ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.1138.{number}.2"
    ds.PatientName = "Müller^Jörg"
    ds.PatientID = f"PID{number}"
    ds.Modality = "OT"
    ds.InstanceNumber = number
    item = Dataset()
    item.CodeValue = "121311"
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = "Localizer"
    ds.ConceptNameCodeSequence = [item]
    ds.Rows = ds.Columns = 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(16))
    return ds


def pynetdicom_encoding(ds: Dataset, transfer_syntax: str) -> bytes:
    """What pynetdicom puts on the wire for ``ds`` (its own encoder, the oracle)."""
    uid = UID(transfer_syntax)
    raw = encode(ds, uid.is_implicit_VR, uid.is_little_endian, uid.is_deflated)
    assert raw is not None
    return raw


def inflate(data: bytes) -> bytes:
    return zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)


# ---- Dataset objects -------------------------------------------------------------------------


def test_datasets_in_each_uncompressed_syntax_one_association(
    node: RunningNode, tmp_path: Path
) -> None:
    # One context per transfer syntax for the same SOP class; pynetdicom picks the
    # context whose syntax is the data set's File Meta Transfer Syntax UID.
    datasets = [synthetic(ts, n) for n, ts in enumerate(UNCOMPRESSED, start=1)]
    with WireTap(node.port) as tap:
        with associated(tap.port, [(SC, ts) for ts in UNCOMPRESSED]) as assoc:
            statuses = [int(assoc.send_c_store(ds).Status) for ds in datasets]
        sent = tap.sent()
    assert statuses == [0x0000] * 4
    stored: list[Path] = []
    for ds, ts in zip(datasets, UNCOMPRESSED, strict=True):
        wire = sent[ds.SOPInstanceUID]
        assert wire.transfer_syntax == ts
        expected = pynetdicom_encoding(ds, ts)
        assert wire.dataset == expected
        # The reference file: the same data set written by pydicom in that syntax.
        reference = tmp_path / f"{ts}.dcm"
        ds.save_as(reference, enforce_file_format=True)
        source = Source.read(reference)
        if ts == DEFLATED:
            assert inflate(source.dataset) == inflate(expected)
        else:
            assert source.dataset == expected
        stored.append(assert_stored(node, source, sent=wire, source_ae=AET))
    assert_dcmdump_clean(stored)
    assert index_stats(node).instances == 4


# ---- file paths ------------------------------------------------------------------------------

FILES = (
    "CT_small.dcm",  # Explicit VR LE
    "MR_small_bigendian.dcm",  # Explicit VR BE
    "SC_rgb_jpeg_dcmd.dcm",  # Implicit VR LE, 197 KB
    "image_dfl.dcm",  # Deflated Explicit VR LE
    "JPEG2000.dcm",  # JPEG 2000
    "SC_rgb_rle.dcm",  # RLE Lossless
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline
    "waveform_ecg.dcm",  # 290 KB: more than one 256 KiB PDU
)


def file_contexts(sources: Sequence[Source]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((s.sop_class_uid, s.transfer_syntax_uid) for s in sources))


def send_files(node: RunningNode, sources: Sequence[Source]) -> tuple[list[int], dict[str, Sent]]:
    with WireTap(node.port) as tap:
        with associated(tap.port, file_contexts(sources)) as assoc:
            statuses = [int(assoc.send_c_store(s.path).Status) for s in sources]
        return statuses, tap.sent()


@pytest.mark.usefixtures("chunked")
def test_file_paths_streamed_as_they_are(node: RunningNode) -> None:
    # Each file's own transfer syntax, several SOP classes, one association; the
    # data set bytes go untouched, so the stored file holds the source's exactly.
    sources = [Source.read(pydicom_file(n)) for n in FILES]
    statuses, sent = send_files(node, sources)
    assert statuses == [0x0000] * len(sources)
    stored: list[Path] = []
    for s in sources:
        assert sent[s.sop_instance_uid].dataset == s.dataset
        assert sent[s.sop_instance_uid].transfer_syntax == s.transfer_syntax_uid
        stored.append(assert_stored(node, s, sent=None, source_ae=AET))
    assert_dcmdump_clean(stored)
    assert index_stats(node).instances == len(sources)


def test_file_paths_read_and_reencoded(node: RunningNode) -> None:
    # pynetdicom's default: dcmread the file, encode it again for the context.
    sources = [Source.read(pydicom_file(n)) for n in FILES]
    statuses, sent = send_files(node, sources)
    assert statuses == [0x0000] * len(sources)
    stored = [assert_stored(node, s, sent=sent[s.sop_instance_uid], source_ae=AET) for s in sources]
    assert_dcmdump_clean(stored)
    assert index_stats(node).instances == len(sources)


# ---- command and data set disagree -----------------------------------------------------------


@pytest.mark.usefixtures("chunked")
def test_file_meta_instance_uid_differs_from_data_set(node: RunningNode) -> None:
    # pydicom's rtplan.dcm: Media Storage SOP Instance UID 1.2.999...; the data
    # set's SOP Instance UID is 1.2.777.... Streamed, the C-STORE-RQ's Affected SOP
    # Instance UID is the former: A900, nothing stored (PS3.4 B.2.3), and the
    # association carries on.
    plan = Source.read(pydicom_file("rtplan.dcm"))
    meta = pydicom.dcmread(plan.path, stop_before_pixels=True).file_meta
    assert meta.MediaStorageSOPInstanceUID != plan.sop_instance_uid
    good = Source.read(pydicom_file("CT_small.dcm"))
    statuses, sent = send_files(node, [plan, good])
    assert statuses == [A900, 0x0000]
    assert sent[meta.MediaStorageSOPInstanceUID].dataset == plan.dataset
    assert index_row(node, plan.sop_instance_uid) is None
    assert index_row(node, str(meta.MediaStorageSOPInstanceUID)) is None
    data = Path(node.config.node.data_dir)
    assert not (data / relative_path(plan.sop_instance_uid)).exists()
    assert not (data / relative_path(str(meta.MediaStorageSOPInstanceUID))).exists()
    assert_stored(node, good, sent=None, source_ae=AET)
    assert index_stats(node).instances == 1


@pytest.mark.usefixtures("chunked")
def test_sop_class_differs_from_data_set(node: RunningNode, tmp_path: Path) -> None:
    # A CT data set sent as MR Image Storage (File Meta says MR, context is MR).
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    ds.file_meta.MediaStorageSOPClassUID = UID(MR)
    wrong = tmp_path / "ct_as_mr.dcm"
    ds.save_as(wrong)  # File Meta written as set, not derived from the data set
    source = Source.read(wrong)
    assert pydicom.dcmread(wrong).file_meta.MediaStorageSOPClassUID == MR
    assert source.sop_class_uid == CT
    with associated(node.port, [(MR, EXPLICIT_LE)]) as assoc:
        status = int(assoc.send_c_store(wrong).Status)
    assert status == A900
    assert_nothing_stored(node)


def _response(pdu: PDataTf) -> Dataset:
    """A response command set (one PDV, command + last), decoded by pydicom."""
    (pdv,) = pdu.pdvs
    assert pdv.control == 0x03
    stream = cast(BinaryIO, DicomBytesIO(bytes(pdv.data)))
    return read_dataset(stream, is_implicit_VR=True, is_little_endian=True)


def test_raw_instance_uid_mismatch(node: RunningNode) -> None:
    # The C-STORE-RQ names 1.2.3.4 while the data set is CT_small's: the response
    # is A900 for the command's UIDs and message ID, with no data set (PS3.7
    # 9.3.1.2), nothing is stored, and the association is still usable.
    ct = Source.read(pydicom_file("CT_small.dcm"))
    with RawPeer(HOST, node.port) as peer:
        ac = peer.associate(contexts=[(CT, [EXPLICIT_LE])])
        assert isinstance(ac, AAssociateAc)
        for message_id, uid in ((7, "1.2.3.4"), (8, ct.sop_instance_uid)):
            rq = CStoreRq(
                message_id=message_id, affected_sop_class_uid=CT, affected_sop_instance_uid=uid
            )
            for pdu in command_pdus(1, rq, 16384):
                peer.send(pdu)
            half = len(ct.dataset) // 2
            peer.send(p_data_pdu(1, 0x00, ct.dataset[:half]))
            peer.send(p_data_pdu(1, 0x02, ct.dataset[half:]))
            reply = peer.recv()
            assert isinstance(reply, PDataTf)
            rsp = _response(reply)
            assert rsp.CommandField == 0x8001
            assert rsp.MessageIDBeingRespondedTo == message_id
            assert rsp.CommandDataSetType == 0x0101
            assert rsp.AffectedSOPClassUID == CT
            assert rsp.AffectedSOPInstanceUID == uid
            if message_id == 7:
                assert rsp.Status == A900
                # LO, at most 64 characters (PS3.5 6.2), naming the culprit.
                assert rsp.ErrorComment.startswith("SOP Instance UID")
                assert len(rsp.ErrorComment) <= 64
                assert_nothing_stored(node)
            else:
                assert rsp.Status == 0x0000
                assert "ErrorComment" not in rsp
        peer.send(A_RELEASE_RQ)
        assert peer.recv_pdu()[0] == 0x06
    # The second copy is stored byte for byte as sent.
    assert_stored(node, ct, sent=None, source_ae="RAWPEER")
    assert index_stats(node).instances == 1


# ---- what the index makes of what was sent -----------------------------------------------------


def test_empty_patient_id_keeps_patients_apart(node: RunningNode) -> None:
    # A bug this test caught, since fixed: two instances of different patients, both with an empty
    # Patient ID (0010,0020) (Type 2, PS3.3 C.7.1.1: zero length is allowed) and different Patient
    # Name/Sex, are stored (both Success). The index files them under ONE patient row keyed by ('',
    # ''), and the later non-empty name overwrites the earlier (archive/index/batch.py
    # UPSERT_PATIENTS): index.record() of the first instance returns Patient Name "Beta^Bob" and Sex
    # "M", values its data set never held, stats() counts 1 patient, and a C-FIND on "Alpha*" would
    # miss the first study. An empty value is no unique key (PS3.4 C.6.1.1.2: Patient ID is the
    # Patient level's unique key); instances without one must not be merged into another patient:
    # the first record should keep "Alpha^Ann"/"F" and stats() count 2 patients. (Seen first with
    # pydicom's test-SR.dcm and reportsi.dcm, which both have an empty Patient ID.)
    first, second = synthetic(EXPLICIT_LE, 21), synthetic(EXPLICIT_LE, 22)
    for ds, name, sex in ((first, "Alpha^Ann", "F"), (second, "Beta^Bob", "M")):
        ds.PatientID = ""
        ds.PatientName = name
        ds.PatientSex = sex
    with associated(node.port, [(SC, EXPLICIT_LE)]) as assoc:
        statuses = [int(assoc.send_c_store(ds).Status) for ds in (first, second)]
    assert statuses == [0x0000, 0x0000]
    records = [index_record(node, ds.SOPInstanceUID) for ds in (first, second)]
    assert [(r.attrs.patient_name, r.attrs.patient_sex) for r in records if r is not None] == [
        ("Alpha^Ann", "F"),
        ("Beta^Bob", "M"),
    ]
    assert index_stats(node).patients == 2
