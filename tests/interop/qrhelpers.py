"""A small, realistic study corpus for the Query/Retrieve interop tests, and a node holding it.

Three patients, four studies, seven series, twelve instances (synthetic, no real
person): CT and MR image storage, in Explicit VR Little Endian, Implicit VR
Little Endian and RLE Lossless (pydicom's ``MR_small_RLE.dcm`` given our
patient, study and series), with person names outside ASCII in ISO_IR 100
(Latin-1) and ISO_IR 192 (UTF-8); patient A's other IDs, study A1's procedure
code and the orders behind its series are sequences to match on. The files are
written once per module by pydicom and sent to a node with our own Storage SCU,
which sends each file's data set bytes as they are on disk: the node stores them
unchanged, so "the retrieved instance is byte-identical" compares against the
node's stored file.

:func:`qr_node` starts a :class:`RunningNode` outside the per-test fixtures (a
module-scoped node loaded once); it must be stopped by the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from archive.dicom import uids
from archive.scu.store import Kind, StoreOptions, send_files
from archive.store import relative_path
from tests.conftest import RunningNode, make_config
from tests.dicom.header_helpers import dataset
from tests.interop.conftest import HOST
from tests.interop.storehelpers import pydicom_file, split_part10

__all__ = [
    "CT_IMAGE",
    "MR_IMAGE",
    "PATIENT_ROOT_FIND",
    "STUDY_ROOT_FIND",
    "STUDY_ROOT_GET",
    "STUDY_ROOT_MOVE",
    "Corpus",
    "Instance",
    "build_corpus",
    "dataset_bytes",
    "peers_toml",
    "qr_node",
    "store_files",
    "stored_dataset",
]

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
PATIENT_ROOT_FIND = uids.PATIENT_ROOT_QR_FIND
STUDY_ROOT_FIND = uids.STUDY_ROOT_QR_FIND
STUDY_ROOT_MOVE = uids.STUDY_ROOT_QR_MOVE
STUDY_ROOT_GET = uids.STUDY_ROOT_QR_GET

#: A UID root for the synthetic corpus (2.25 is UUID-derived; this is just unique).
_ROOT = "1.2.826.0.1.3680043.10.511.7"


@dataclass(frozen=True)
class Instance:
    """One corpus file and the keys the tests match on."""

    path: Path
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    transfer_syntax: str


@dataclass(frozen=True)
class SeriesSpec:
    number: int
    modality: str
    count: int
    transfer_syntax: str
    description: str


@dataclass(frozen=True)
class StudySpec:
    key: str
    date: str
    time: str
    accession: str
    description: str
    series: tuple[SeriesSpec, ...]


@dataclass(frozen=True)
class PatientSpec:
    patient_id: str
    name: str
    charset: str | None
    birth_date: str
    sex: str
    studies: tuple[StudySpec, ...]


_EXPLICIT = ExplicitVRLittleEndian
_IMPLICIT = ImplicitVRLittleEndian

#: The corpus. Study keys name studies in the tests ("A1" is patient A's first).
#: Series: number, modality, instance count, transfer syntax, description.
_A1 = (SeriesSpec(1, "CT", 3, _EXPLICIT, "Axial"), SeriesSpec(2, "CT", 2, _IMPLICIT, "Coronal"))
_A2 = (SeriesSpec(1, "MR", 2, _EXPLICIT, "T1"),)
# Series 2 is the RLE Lossless instance (MR_small_RLE.dcm, re-labelled).
_B1 = (SeriesSpec(1, "MR", 2, _EXPLICIT, "T2"), SeriesSpec(2, "MR", 1, RLELossless, "RLE"))
_C1 = (SeriesSpec(1, "CT", 2, _EXPLICIT, "Venous"),)
#: Studies: key, date, time, accession number, description, series.
_STUDIES_A = (
    StudySpec("A1", "20240105", "101500", "ACC-A1", "CT Thorax", _A1),
    StudySpec("A2", "20240320", "083000", "ACC-A2", "MR Knie", _A2),
)
_STUDIES_B = (StudySpec("B1", "20240210", "140000", "ACC-B1", "MR Hlava", _B1),)
_STUDIES_C = (StudySpec("C1", "20231115", "120000", "ACC-C1", "CT Abdomen", _C1),)
#: Patients: ID, name, Specific Character Set, birth date, sex, studies.
PATIENTS = (
    PatientSpec("PAT-A", "Müller^Jürgen", "ISO_IR 100", "19600101", "M", _STUDIES_A),
    PatientSpec("PAT-B", "Dvořák^Zdeněk", "ISO_IR 192", "19751231", "M", _STUDIES_B),
    PatientSpec("PAT-C", "Smith^John", None, "19801111", "M", _STUDIES_C),
)


@dataclass
class Corpus:
    """The written corpus: every instance, and lookups by study key."""

    instances: list[Instance] = field(default_factory=list)
    #: Study key ("A1") -> Study Instance UID.
    study_uids: dict[str, str] = field(default_factory=dict)

    def paths(self) -> list[Path]:
        return [i.path for i in self.instances]

    def of_study(self, key: str) -> list[Instance]:
        return [i for i in self.instances if i.study_uid == self.study_uids[key]]


def _pixels(seed: int) -> bytes:
    """8 x 8 16-bit pixels, distinct per instance."""
    return bytes((seed * 7 + i) % 251 for i in range(128))


def _base(
    patient: PatientSpec, study: StudySpec, series: SeriesSpec, study_uid: str, series_uid: str
) -> Dataset:
    ds = Dataset()
    if patient.charset is not None:
        ds.SpecificCharacterSet = patient.charset
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study.date
    ds.StudyTime = study.time
    ds.AccessionNumber = study.accession
    ds.StudyDescription = study.description
    ds.StudyID = study.key
    ds.ReferringPhysicianName = "Referrer^Ref"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series.number
    ds.SeriesDescription = series.description
    ds.Modality = series.modality
    return ds


def build_corpus(folder: Path) -> Corpus:
    """Write the corpus's Part 10 files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = Corpus()
    serial = 0
    for p_index, patient in enumerate(PATIENTS, 1):
        for s_index, study in enumerate(patient.studies, 1):
            study_uid = f"{_ROOT}.{p_index}.{s_index}"
            corpus.study_uids[study.key] = study_uid
            for series in study.series:
                series_uid = f"{study_uid}.{series.number}"
                for number in range(1, series.count + 1):
                    serial += 1
                    sop_uid = f"{series_uid}.{number}"
                    ds = _base(patient, study, series, study_uid, series_uid)
                    _sequences(ds, patient, study, series)
                    if series.transfer_syntax == RLELossless:
                        ds = _relabelled_rle(ds)
                    else:
                        _image(ds, series, serial)
                    ds.SOPInstanceUID = sop_uid
                    ds.InstanceNumber = number
                    sop_class = CT_IMAGE if series.modality == "CT" else MR_IMAGE
                    ds.SOPClassUID = sop_class
                    meta = FileMetaDataset()
                    meta.MediaStorageSOPClassUID = sop_class
                    meta.MediaStorageSOPInstanceUID = sop_uid
                    meta.TransferSyntaxUID = series.transfer_syntax
                    ds.file_meta = meta
                    path = folder / f"{serial:02d}-{study.key}-{series.number}-{number}.dcm"
                    ds.save_as(path, enforce_file_format=True)
                    corpus.instances.append(
                        Instance(
                            path,
                            patient.patient_id,
                            study_uid,
                            series_uid,
                            sop_uid,
                            sop_class,
                            series.modality,
                            series.transfer_syntax,
                        )
                    )
    return corpus


def _sequences(ds: Dataset, patient: PatientSpec, study: StudySpec, series: SeriesSpec) -> None:
    """Sequences C-FIND matches on (Sequence Matching): patient A's other ID, study
    A1's procedure code, and the order behind each of A1's series (its Requested
    Procedure ID, "RP-A1-<series number>", and protocol code, "PROT-<number>")."""
    if patient.patient_id == "PAT-A":
        ds.OtherPatientIDsSequence = [dataset(PatientID="X-A", IssuerOfPatientID="OTHER")]
    if study.key != "A1":
        return
    code = dataset(CodeValue="CTTHX", CodingSchemeDesignator="99LOCAL", CodeMeaning="CT Thorax")
    ds.ProcedureCodeSequence = [code]
    protocol = dataset(CodeValue=f"PROT-{series.number}", CodingSchemeDesignator="99LOCAL")
    ds.RequestAttributesSequence = [
        dataset(
            AccessionNumber=study.accession,
            RequestedProcedureID=f"RP-A1-{series.number}",
            ScheduledProcedureStepID=f"SPS-A1-{series.number}",
            ScheduledProtocolCodeSequence=[protocol],
        )
    ]


def _image(ds: Dataset, series: SeriesSpec, serial: int) -> None:
    ds.ContentDate = "20240101"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = _pixels(serial)


def _relabelled_rle(ours: Dataset) -> Dataset:
    """pydicom's RLE Lossless MR with our patient, study and series (pixels untouched)."""
    ds = pydicom.dcmread(pydicom_file("MR_small_RLE.dcm"))
    for keyword in (
        "OtherPatientIDs",
        "RequestAttributesSequence",
        "ReferencedStudySequence",
        "ReferencedPerformedProcedureStepSequence",
    ):
        if keyword in ds:
            delattr(ds, keyword)
    for element in ours:
        ds[element.tag] = element
    return ds


def store_files(node: RunningNode, paths: Iterable[Path], *, calling_ae: str = "LOADER") -> None:
    """Send files to ``node`` with our Storage SCU; every one must be stored."""
    options = StoreOptions(
        host=HOST, port=node.port, calling_ae=calling_ae, called_ae=node.ae_title
    )
    report = asyncio.run(send_files([str(p) for p in paths], options, progress=False))
    failed = [r.describe() for r in report.results if r.kind is not Kind.SENT]
    assert failed == [], failed


def stored_dataset(node: RunningNode, sop_instance_uid: str) -> bytes:
    """The data set bytes of the node's stored file for an instance."""
    path = Path(node.config.node.data_dir) / relative_path(sop_instance_uid)
    return split_part10(path.read_bytes())[1]


def dataset_bytes(path: Path) -> bytes:
    """The data set bytes of a Part 10 file (after the File Meta)."""
    return split_part10(path.read_bytes())[1]


def qr_node(data_dir: Path, corpus: Corpus, toml: str = "", **node: object) -> RunningNode:
    """A node with ``corpus`` stored in it; the caller stops it."""
    running = RunningNode(make_config(toml, data_dir=str(data_dir), **node)).start()
    try:
        store_files(running, corpus.paths())
    except BaseException:
        running.stop()
        raise
    return running


def peers_toml(peers: Mapping[str, int]) -> str:
    """``[[peers]]`` entries on 127.0.0.1 for AE title -> port."""
    return "".join(
        f'[[peers]]\nae_title = "{aet}"\nhost = "{HOST}"\nport = {port}\n'
        for aet, port in peers.items()
    )
