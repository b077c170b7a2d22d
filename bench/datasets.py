"""Synthetic DICOM data sets for the ingest benchmark, generated once into bench/.cache/.

Each data set is one folder of Part 10 files (Explicit VR Little Endian, CT Image
Storage), dealt round-robin into ``part00`` .. ``part15`` so that four client
processes can each send a quarter (four sub-folders) and a slow peer a fraction.
pydicom writes one *template* file per kind; every instance is that template's
bytes with its UIDs (and the first bytes of Pixel Data) overwritten in place. The
placeholders are fixed-width digit strings, so every instance has exactly the
template's length and no element length changes: writing 1,000 x 0.5 MB takes
seconds of ``write()`` instead of 1,000 pydicom encodes.

A folder counts as generated only once its ``<folder>.complete`` marker exists; a half
written folder (Ctrl-C) is deleted and generated again.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
#: pydicom's UID root (its ``generate_uid`` prefix); the suffixes below are ours.
UID_ROOT = "1.2.826.0.1.3680043.8.498"
#: Sub-folders the files are dealt into (round-robin), so that four client processes can
#: each send four of them, and a peer too slow for the whole set can get a fraction.
PARTS = 16
#: Bumped whenever the bytes generated change, so an old cache is not reused.
FORMAT_VERSION = 3
CACHE = Path(__file__).resolve().parent / ".cache"


@dataclass(frozen=True)
class Kind:
    """One kind of synthetic instance and how its instances group into studies."""

    name: str
    #: One digit in every UID, so that instances of different kinds never share a UID.
    uid_code: int
    rows: int
    columns: int
    studies: int
    series_per_study: int


#: 512 x 512 x 16 bit: 524,288 bytes of pixels, ~0.5 MB per file.
CT = Kind("ct", 1, 512, 512, studies=4, series_per_study=2)
#: 44 x 44 x 16 bit: 3,872 bytes of pixels, ~5 KB per file (4,968 bytes).
SMALL = Kind("small", 2, 44, 44, studies=10, series_per_study=5)


@dataclass(frozen=True)
class DataSet:
    """A generated folder: ``count`` files of ``file_size`` bytes in ``parts`` sub-folders."""

    kind: Kind
    count: int
    root: Path
    file_size: int

    @property
    def parts(self) -> list[Path]:
        return [self.root / f"part{i:02d}" for i in range(PARTS)]

    @property
    def total_bytes(self) -> int:
        return self.count * self.file_size

    def files(self) -> Iterator[Path]:
        for part in self.parts:
            yield from sorted(part.iterdir())


# Fixed-width placeholders: every digit run is unique in the template (checked).
_PATIENT = "PATIENT-99999"
_STUDY = f"{UID_ROOT}.9.1.99999991"
_SERIES = f"{UID_ROOT}.9.2.99999992999"
_INSTANCE = f"{UID_ROOT}.9.3.99999993999999"
_ACCESSION = "A99999994"
_STUDY_ID = "S9995"
_SERIES_NUMBER = "99996"
_INSTANCE_NUMBER = "9999997"


def _template(kind: Kind) -> bytes:
    """A Part 10 file with the placeholders above, written by pydicom."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(_INSTANCE)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = _INSTANCE
    ds.StudyDate = "20240115"
    ds.SeriesDate = "20240115"
    ds.StudyTime = "101500"
    ds.AccessionNumber = _ACCESSION
    ds.Modality = "CT"
    ds.Manufacturer = "archive-node bench"
    ds.ReferringPhysicianName = "Doe^Jane"
    ds.StudyDescription = "Bench CT chest"
    ds.SeriesDescription = "Bench axial 1.0"
    ds.PatientName = "Bench^Patient"
    ds.PatientID = _PATIENT
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.StudyInstanceUID = _STUDY
    ds.SeriesInstanceUID = _SERIES
    ds.StudyID = _STUDY_ID
    ds.SeriesNumber = _SERIES_NUMBER
    ds.InstanceNumber = _INSTANCE_NUMBER
    ds.ImagePositionPatient = ["-250.0", "-250.0", "0.0"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = f"{UID_ROOT}.4.1"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = kind.rows
    ds.Columns = kind.columns
    ds.PixelSpacing = ["0.977", "0.977"]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    # Noise-like but cheap and reproducible: a ramp pattern, distinct per file below.
    pixels = bytes((i * 7 + (i >> 9)) & 0x0F for i in range(kind.rows * kind.columns * 2))
    ds.PixelData = pixels
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _offsets(template: bytes, placeholder: str) -> list[int]:
    needle = placeholder.encode("ascii")
    found: list[int] = []
    at = template.find(needle)
    while at >= 0:
        found.append(at)
        at = template.find(needle, at + 1)
    if not found:
        raise AssertionError(f"placeholder {placeholder!r} not in the template")
    return found


def _generate(kind: Kind, count: int, root: Path) -> int:
    template = _template(kind)
    pixel_offset = len(template) - kind.rows * kind.columns * 2
    places = {name: _offsets(template, name) for name in (
        _PATIENT, _STUDY, _SERIES, _INSTANCE, _ACCESSION, _STUDY_ID, _SERIES_NUMBER,
        _INSTANCE_NUMBER,
    )}  # fmt: skip
    # SOPInstanceUID appears twice (the file meta's Media Storage SOP Instance UID too),
    # every other placeholder once: a match anywhere else would corrupt the file.
    for name, found in places.items():
        assert len(found) == (2 if name == _INSTANCE else 1), (name, found)
    per_study = -(-count // kind.studies)
    per_series = -(-per_study // kind.series_per_study)
    for part in range(PARTS):
        (root / f"part{part:02d}").mkdir(parents=True)
    buffer = bytearray(template)
    code = kind.uid_code
    for i in range(count):
        study, within = divmod(i, per_study)
        series = within // per_series
        values = {
            _PATIENT: f"PATIENT-{study:05d}",
            # UID components must not start with 0 (PS3.5 9.1): offset, not zero-pad.
            _STUDY: f"{UID_ROOT}.{code}.1.{10**7 + study}",
            _SERIES: f"{UID_ROOT}.{code}.2.{10**10 + 1000 * study + series}",
            _INSTANCE: f"{UID_ROOT}.{code}.3.{10**13 + i}",
            _ACCESSION: f"A{study:08d}",
            _STUDY_ID: f"S{study:04d}",
            _SERIES_NUMBER: f"{series + 1:05d}",
            _INSTANCE_NUMBER: f"{within % per_series + 1:07d}",
        }
        for placeholder, value in values.items():
            encoded = value.encode("ascii")
            assert len(encoded) == len(placeholder), (placeholder, value)
            for offset in places[placeholder]:
                buffer[offset : offset + len(encoded)] = encoded
        buffer[pixel_offset : pixel_offset + 8] = i.to_bytes(8, "little")
        path = root / f"part{i % PARTS:02d}" / f"{kind.name}{i:06d}.dcm"
        with path.open("wb") as sink:
            sink.write(buffer)
    return len(template)


def marker(root: Path) -> Path:
    """``root``'s completion marker: beside the folder, not in it (storescu +sd would send it)."""
    return root.with_name(root.name + ".complete")


def cached(root: Path, build: Callable[[Path], str]) -> Path:
    """``root``, built now by ``build(tmp)`` unless its marker says it was built before.

    ``build`` fills an empty sibling folder, which is renamed to ``root`` only once it
    returns; what it returns is written into the marker. A half-built folder (Ctrl-C,
    a failure) has no marker and is deleted and built again next time.
    """
    done = marker(root)
    if done.exists():
        return root
    tmp = root.with_name(root.name + ".tmp")
    for folder in (root, tmp):
        if folder.exists():
            shutil.rmtree(folder)
    tmp.mkdir(parents=True)
    text = build(tmp)
    os.replace(tmp, root)
    done.write_text(text)
    return root


def ensure(kind: Kind, count: int, cache: Path = CACHE) -> DataSet:
    """The folder of ``count`` instances of ``kind``, generated now if not cached yet."""
    root = cached(
        cache / "datasets" / f"{kind.name}-{count}-v{FORMAT_VERSION}",
        lambda tmp: str(_generate(kind, count, tmp)),
    )
    return DataSet(kind, count, root, int(marker(root).read_text()))


if __name__ == "__main__":
    import sys
    import time

    for kind, count in ((CT, int(sys.argv[1]) if len(sys.argv) > 1 else 1000), (SMALL, 5000)):
        t0 = time.perf_counter()
        data = ensure(kind, count)
        print(f"{data.root}: {data.count} x {data.file_size} B in {time.perf_counter() - t0:.1f} s")
