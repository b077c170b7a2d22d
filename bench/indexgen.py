"""A synthetic archive for the Query/Retrieve benchmarks: index rows or small DICOM files.

Run: ``.venv/bin/python bench/indexgen.py N FOLDER`` writes an archive-node data folder
(``FOLDER/index.sqlite``) holding N synthetic instances; ``--files`` writes the same
studies as small Part 10 files instead (for loading Orthanc and qrscp);
``--verify N`` checks the bulk loader against the group-commit writer.

What this is. :func:`studies` deals a deterministic population (seeded) of patients,
studies, series and instances with the shapes of a clinical archive: ~1.5 studies per
patient, ~3 series per study, ~20 instances per series, names drawn from a list of
surnames sharing roots (``SMITH``, ``SMITHSON``, ``SMITHER``...: ``SMITH*`` matches ~180
patients at a million instances, ``SMITHSON*`` ~10), study dates spread over ten years, a unique
Accession Number per study, modalities CT/MR/CR/US/DX with their SOP classes. The
same seed and count give the same studies whichever way they are written, so our
index and the peers' stores hold the same data.

:func:`load_index` writes them straight into an index that ``archive.index.Index.open``
created (so schema and migrations are ours), with ``executemany`` in one transaction,
``synchronous=OFF`` and no rollback journal during the load (the file goes back to
WAL at the end), every aggregate column filled as ``archive/index/batch.py`` fills it.
The instance rows name files that do not exist: C-FIND never opens a file.
``--verify`` loads a few thousand instances both ways (bulk, and ``Index.add`` through
the group-commit writer) and compares every row of every table.

What this is not: a DICOM generator for retrieve (``datasets.py`` makes the large CT
instances) nor a test; it is never collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import io
import random
import shutil
import sqlite3
import struct
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from archive.dicom.attributes import InstanceAttributes
from archive.index import Index, StoredInstance

#: pydicom's UID root, as in datasets.py; ``.7`` keeps these UIDs apart from its kinds.
UID_ROOT = "1.2.826.0.1.3680043.8.498.7"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
CHARSET = "ISO_IR 100"
#: Bumped whenever the population or the bytes written change (invalidates caches).
FORMAT_VERSION = 2
SEED = 20261128
#: Unix time of every row's reception: fixed so that two loads compare equal.
RECEIVED_AT = 1_790_000_000.0
#: The fake file of every instance row (C-FIND never opens it).
FAKE_SIZE = 1_500
FAKE_DIGEST = "0" * 64
#: Width the Person Name values are padded to in the files (with spaces, PS3.5 6.2).
NAME_WIDTH = 40
DESCRIPTION_WIDTH = 24

# Surname roots, each with variants that share its first letters (prefix queries).
_ROOT_WORDS = (
    "SMITH JOHNS WILLIAM BROWN JONES MILLER DAVIS GARCIA RODRIG WILSON MARTIN ANDERS TAYLOR"
    " THOMAS HERNAN MOORE JACKS WHITE HARRIS SANCH CLARK LEWIS ROBIN WALKER YOUNG ALLEN KING"
    " WRIGHT SCOTT TORRES NGUYEN HILL FLORES GREEN ADAMS NELSON BAKER HALL RIVERA CAMPBELL"
    " MITCHELL CARTER ROBERT GOMEZ PHILLIP EVANS TURNER DIAZ PARKER CRUZ EDWARD COLLIN REYES"
    " STEWART MORRIS MORALES MURPHY COOK ROGERS PETERS"
)
_ROOTS = tuple(_ROOT_WORDS.split())
_SUFFIXES = (
    "", "SON", "ER", "S", "MAN", "LEY", "TON", "WOOD", "FORD", "BERG", "STEIN", "OWSKI", "ELLI",
    "INI", "AULT", "IER",
)  # fmt: skip
SURNAMES = tuple(root + suffix for root in _ROOTS for suffix in _SUFFIXES)
_GIVEN_WORDS = (
    "JAMES MARY ROBERT PATRICIA JOHN JENNIFER MICHAEL LINDA DAVID ELIZABETH WILLIAM BARBARA"
    " RICHARD SUSAN JOSEPH JESSICA THOMAS SARAH CHARLES KAREN ANNA LUCAS EMMA NOAH OLIVIA"
)
GIVEN = tuple(_GIVEN_WORDS.split())


@dataclass(frozen=True)
class Modality:
    """One modality: its SOP class, share of series, descriptions and image size."""

    code: str
    sop_class: str
    weight: float
    descriptions: tuple[str, ...]
    body_parts: tuple[str, ...]


MODALITIES = (
    Modality("CT", "1.2.840.10008.5.1.4.1.1.2", 0.35, ("AXIAL 1.0", "AXIAL 5.0", "CORONAL MPR"),
             ("CHEST", "ABDOMEN", "HEAD")),
    Modality("MR", "1.2.840.10008.5.1.4.1.1.4", 0.25, ("T1 SAG", "T2 AX", "FLAIR", "DWI"),
             ("BRAIN", "KNEE", "SPINE")),
    Modality("CR", "1.2.840.10008.5.1.4.1.1.1", 0.18, ("PA", "LATERAL"), ("CHEST", "HAND")),
    Modality("US", "1.2.840.10008.5.1.4.1.1.6.1", 0.12, ("LIVER", "KIDNEY"), ("ABDOMEN",)),
    Modality("DX", "1.2.840.10008.5.1.4.1.1.1.1", 0.10, ("AP", "OBLIQUE"), ("FOOT", "CHEST")),
)  # fmt: skip
_BY_CODE = {m.code: m for m in MODALITIES}
#: Every synthetic image is 8 x 8 x 16 bit (files stay ~1.5 KB; the index says the same).
IMAGE_SIDE = 8


@dataclass(frozen=True, slots=True)
class Series:
    number: int
    uid: str
    modality: str
    description: str
    body_part: str
    #: Global number of this series' first instance (its SOP Instance UID suffix).
    first_instance: int
    instances: int


@dataclass(frozen=True, slots=True)
class Study:
    #: Position of the patient (0-based) and of this study, in order of appearance.
    patient: int
    number: int
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    uid: str
    date: str
    time: str
    accession: str
    study_id: str
    description: str
    referring: str
    series: tuple[Series, ...]

    @property
    def instances(self) -> int:
        return sum(s.instances for s in self.series)


def instance_uid(n: int) -> str:
    """SOP Instance UID of the instance numbered ``n`` (fixed width up to 10^10)."""
    return f"{UID_ROOT}.3.{10**10 + n}"


def studies(total: int, seed: int = SEED) -> list[Study]:
    """The population holding exactly ``total`` instances (the last series is cut short)."""
    rng = random.Random(seed)
    start = dt.date(2016, 1, 1)
    codes = [m.code for m in MODALITIES]
    weights = [m.weight for m in MODALITIES]
    found: list[Study] = []
    made = series_made = 0
    patient = 0
    while made < total:
        name = f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}"
        birth = start - dt.timedelta(days=rng.randrange(5 * 365, 90 * 365))
        sex = rng.choice("MF")
        # 1, 2 or 3 studies: mean 1.5.
        for _ in range(rng.choices((1, 2, 3), (0.6, 0.3, 0.1))[0]):
            if made >= total:
                break
            number = len(found)
            day = start + dt.timedelta(days=rng.randrange(3653))
            series: list[Series] = []
            # 1 to 5 series: mean 3.
            for position in range(rng.choice((1, 2, 3, 3, 4, 5))):
                if made >= total:
                    break
                modality = _BY_CODE[rng.choices(codes, weights)[0]]
                count = min(rng.randint(10, 30), total - made)  # mean 20
                series.append(
                    Series(
                        number=position + 1,
                        uid=f"{UID_ROOT}.2.{10**9 + series_made}",
                        modality=modality.code,
                        description=rng.choice(modality.descriptions),
                        body_part=rng.choice(modality.body_parts),
                        first_instance=made,
                        instances=count,
                    )
                )
                series_made += 1
                made += count
            found.append(
                Study(
                    patient=patient,
                    number=number,
                    patient_id=f"P{patient:07d}",
                    patient_name=name,
                    birth_date=birth.strftime("%Y%m%d"),
                    sex=sex,
                    uid=f"{UID_ROOT}.1.{10**8 + number}",
                    date=day.strftime("%Y%m%d"),
                    time="".join(f"{rng.randrange(*r):02d}" for r in ((7, 19), (60,), (60,))),
                    accession=f"AC{number:08d}",
                    study_id=f"S{number:07d}",
                    description=f"{series[0].modality} {series[0].body_part}",
                    referring=f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}",
                    series=tuple(series),
                )
            )
        patient += 1
    return found


# ---- the index, bulk ---------------------------------------------------------------------


def _patient_key(patient_id: str) -> str:
    # batch.patient_key with an empty Issuer of Patient ID.
    return f"{patient_id}\\"


def _instance_rows(population: Sequence[Study]) -> Iterator[tuple[object, ...]]:
    series_pk = 0
    for study in population:
        for series in study.series:
            series_pk += 1
            sop_class = _BY_CODE[series.modality].sop_class
            for k in range(series.instances):
                n = series.first_instance + k
                uid = instance_uid(n)
                yield (
                    n + 1, uid, series_pk, study.number + 1, sop_class, k + 1, study.date,
                    study.time, IMAGE_SIDE, IMAGE_SIDE, None, CHARSET, EXPLICIT_VR_LE,
                    f"instances/{n % 256:02x}/{n // 256 % 256:02x}/{uid}.dcm", FAKE_SIZE,
                    FAKE_DIGEST, "BENCH", RECEIVED_AT,
                )  # fmt: skip


INSERT_PATIENT = """INSERT INTO patient (pk, patient_key, patient_id, issuer_of_patient_id,
    patient_name, patient_name_folded, patient_birth_date, patient_sex, specific_character_set,
    number_of_studies, number_of_series, number_of_instances)
    VALUES (?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_STUDY = """INSERT INTO study (pk, study_instance_uid, patient_pk, study_date, study_time,
    accession_number, study_id, study_description, referring_physician_name,
    specific_character_set, number_of_series, number_of_instances, modalities_in_study,
    sop_classes_in_study) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_STUDY_SOP_CLASS = (
    "INSERT INTO study_sop_class (study_pk, sop_class_uid, instances) VALUES (?, ?, ?)"
)
INSERT_SERIES = """INSERT INTO series (pk, series_instance_uid, study_pk, modality,
    series_number, series_description, body_part_examined, series_date, series_time,
    specific_character_set, number_of_instances) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
INSERT_INSTANCE = """INSERT INTO instance (pk, sop_instance_uid, series_pk, study_pk,
    sop_class_uid, instance_number, content_date, content_time, rows, columns,
    number_of_frames, specific_character_set, transfer_syntax_uid, path, size, digest,
    source_ae, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
UPDATE_TOTALS = "UPDATE totals SET instances = ?, bytes = ? WHERE id = 1"


def _level_rows(
    population: Sequence[Study],
) -> tuple[list[tuple[object, ...]], ...]:
    """Patient, study, study_sop_class and series rows with their aggregates."""
    patients: dict[int, list[object]] = {}
    study_rows: list[tuple[object, ...]] = []
    sop_rows: list[tuple[object, ...]] = []
    series_rows: list[tuple[object, ...]] = []
    series_pk = 0
    for study in population:
        study_pk = study.number + 1
        per_class: dict[str, int] = {}
        for series in study.series:
            series_pk += 1
            modality = _BY_CODE[series.modality]
            per_class[modality.sop_class] = per_class.get(modality.sop_class, 0) + series.instances
            series_rows.append((
                series_pk, series.uid, study_pk, series.modality, series.number,
                series.description, series.body_part, study.date, study.time, CHARSET,
                series.instances,
            ))  # fmt: skip
        classes = sorted(per_class)
        sop_rows.extend((study_pk, c, per_class[c]) for c in classes)
        count = study.instances
        study_rows.append((
            study_pk, study.uid, study.patient + 1, study.date, study.time, study.accession,
            study.study_id, study.description, study.referring, CHARSET, len(study.series),
            count, "\\".join(sorted({s.modality for s in study.series})), "\\".join(classes),
        ))  # fmt: skip
        row = patients.get(study.patient)
        if row is None:
            patients[study.patient] = [
                study.patient + 1, _patient_key(study.patient_id), study.patient_id,
                study.patient_name, study.patient_name.casefold(), study.birth_date, study.sex,
                CHARSET, 1, len(study.series), count,
            ]  # fmt: skip
        else:
            row[8] = int(row[8]) + 1  # type: ignore[call-overload]
            row[9] = int(row[9]) + len(study.series)  # type: ignore[call-overload]
            row[10] = int(row[10]) + count  # type: ignore[call-overload]
    return [tuple(r) for r in patients.values()], study_rows, sop_rows, series_rows


async def _create(path: Path) -> None:
    index = await Index.open(path, durability="fast", readers=1)
    await index.close()


def load_index(path: Path, population: Sequence[Study]) -> float:
    """Create ``path`` with our schema and bulk-load ``population``; seconds taken."""
    started = time.perf_counter()
    if path.exists():
        raise FileExistsError(path)
    asyncio.run(_create(path))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # Nobody else has the file open: no journal and no sync until it is complete.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -524288")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("BEGIN")
        patients, study_rows, sop_rows, series_rows = _level_rows(population)
        conn.executemany(INSERT_PATIENT, patients)
        conn.executemany(INSERT_STUDY, study_rows)
        conn.executemany(INSERT_STUDY_SOP_CLASS, sop_rows)
        conn.executemany(INSERT_SERIES, series_rows)
        conn.executemany(INSERT_INSTANCE, _instance_rows(population))
        total = sum(study.instances for study in population)
        conn.execute(UPDATE_TOTALS, (total, total * FAKE_SIZE))
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()
    return time.perf_counter() - started


def make_data_folder(folder: Path, population: Sequence[Study]) -> float:
    """``folder`` as an archive-node data folder: the index, empty ``instances/``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "instances").mkdir(exist_ok=True)
    return load_index(folder / "index.sqlite", population)


# ---- the same through the group-commit writer (--verify) ---------------------------------


def stored_instances(population: Sequence[Study]) -> Iterator[StoredInstance]:
    """The population as the C-STORE SCP would hand it to ``Index.add``."""
    rows = _instance_rows(population)
    for study in population:
        for series in study.series:
            for _ in range(series.instances):
                row = next(rows)
                attrs = InstanceAttributes(
                    specific_character_set=CHARSET,
                    patient_id=study.patient_id,
                    patient_name=study.patient_name,
                    patient_birth_date=study.birth_date,
                    patient_sex=study.sex,
                    study_instance_uid=study.uid,
                    study_date=study.date,
                    study_time=study.time,
                    accession_number=study.accession,
                    study_id=study.study_id,
                    study_description=study.description,
                    referring_physician_name=study.referring,
                    series_instance_uid=series.uid,
                    modality=series.modality,
                    series_number=series.number,
                    series_description=series.description,
                    body_part_examined=series.body_part,
                    series_date=study.date,
                    series_time=study.time,
                    sop_class_uid=str(row[4]),
                    sop_instance_uid=str(row[1]),
                    instance_number=int(row[5]),  # type: ignore[call-overload]
                    content_date=study.date,
                    content_time=study.time,
                    rows=IMAGE_SIDE,
                    columns=IMAGE_SIDE,
                )
                yield StoredInstance(
                    attrs=attrs, path=str(row[13]), size=FAKE_SIZE, digest=FAKE_DIGEST,
                    transfer_syntax_uid=EXPLICIT_VR_LE, source_ae="BENCH",
                    received_at=RECEIVED_AT,
                )  # fmt: skip


async def _load_through_writer(path: Path, population: Sequence[Study]) -> None:
    index = await Index.open(path, durability="fast", readers=1, max_batch=500)
    try:
        items = list(stored_instances(population))
        for start in range(0, len(items), 500):
            # Submitted in order: the writer's pks follow the queue order.
            await asyncio.gather(*(index.add(item) for item in items[start : start + 500]))
    finally:
        await index.close()


TABLES = ("patient", "study", "study_sop_class", "series", "instance", "totals")


def _dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}


def verify(count: int, work: Path) -> list[str]:
    """Differences between the bulk load and the writer's for ``count`` instances."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    population = studies(count)
    load_index(work / "bulk.sqlite", population)
    asyncio.run(_load_through_writer(work / "writer.sqlite", population))
    bulk, writer = _dump(work / "bulk.sqlite"), _dump(work / "writer.sqlite")
    problems = []
    for table in TABLES:
        if bulk[table] != writer[table]:
            diff = next(
                (
                    pair
                    for pair in zip(bulk[table], writer[table], strict=False)
                    if pair[0] != pair[1]
                ),
                None,
            )
            problems.append(
                f"{table}: {len(bulk[table])} bulk rows, {len(writer[table])} writer rows;"
                f" first difference {diff}"
            )
    shutil.rmtree(work)
    return problems


# ---- the same as small DICOM files (for the peers) -------------------------------------


_PLACES = {
    # keyword: (tag, VR, width of the value on the wire)
    "MediaStorageSOPInstanceUID": (0x00020003, "UI", len(instance_uid(0))),
    "SOPInstanceUID": (0x00080018, "UI", len(instance_uid(0))),
    "StudyDate": (0x00080020, "DA", 8),
    "SeriesDate": (0x00080021, "DA", 8),
    "ContentDate": (0x00080023, "DA", 8),
    "StudyTime": (0x00080030, "TM", 6),
    "SeriesTime": (0x00080031, "TM", 6),
    "ContentTime": (0x00080033, "TM", 6),
    "AccessionNumber": (0x00080050, "SH", 10),
    "ReferringPhysicianName": (0x00080090, "PN", NAME_WIDTH),
    "StudyDescription": (0x00081030, "LO", DESCRIPTION_WIDTH),
    "SeriesDescription": (0x0008103E, "LO", DESCRIPTION_WIDTH),
    "PatientName": (0x00100010, "PN", NAME_WIDTH),
    "PatientID": (0x00100020, "LO", 8),
    "PatientBirthDate": (0x00100030, "DA", 8),
    "PatientSex": (0x00100040, "CS", 2),
    "BodyPartExamined": (0x00180015, "CS", 8),
    "StudyInstanceUID": (0x0020000D, "UI", len(f"{UID_ROOT}.1.{10**8}")),
    "SeriesInstanceUID": (0x0020000E, "UI", len(f"{UID_ROOT}.2.{10**9}")),
    "StudyID": (0x00200010, "SH", 8),
    "SeriesNumber": (0x00200011, "IS", 2),
    "InstanceNumber": (0x00200013, "IS", 4),
}


def _template(modality: Modality) -> tuple[bytes, dict[str, int]]:
    """A Part 10 file of ``modality`` with every varying value at a fixed width."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(modality.sop_class)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = CHARSET
    ds.SOPClassUID = modality.sop_class
    ds.Modality = modality.code
    ds.Manufacturer = "archive-node bench"
    for keyword, (_tag, vr, width) in _PLACES.items():
        # Digits fit every VR here (UI, DA, TM, IS, text) at the width wanted.
        value = "1" * width if vr in ("UI", "DA", "TM", "IS") else "X" * width
        setattr(meta if keyword.startswith("Media") else ds, keyword, value)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = IMAGE_SIDE
    ds.Columns = IMAGE_SIDE
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(IMAGE_SIDE * IMAGE_SIDE * 2)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    offsets = {}
    for keyword, (tag, vr, width) in _PLACES.items():
        # An odd-length UID is padded with one NUL on the wire (PS3.5 6.2): kept as is.
        padded = width + width % 2
        header = struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), padded)
        at = data.find(header)
        assert at >= 0, keyword
        assert data.find(header, at + 1) < 0, keyword
        offsets[keyword] = at + len(header)
    return data, offsets


def _fixed(value: str, width: int, vr: str) -> bytes:
    encoded = value.encode("ascii")
    if len(encoded) > width:
        raise ValueError(f"{value!r} is longer than {width}")
    if vr == "UI" and len(encoded) != width:
        raise ValueError(f"UID {value!r} is not {width} long")
    return encoded.ljust(width, b" ")


def write_files(population: Sequence[Study], root: Path, parts: int = 16) -> int:
    """The population as Part 10 files dealt into ``root/partNN``; files written."""
    templates = {m.code: _template(m) for m in MODALITIES}
    for part in range(parts):
        (root / f"part{part:02d}").mkdir(parents=True, exist_ok=True)
    written = 0
    for study in population:
        for series in study.series:
            template, offsets = templates[series.modality]
            buffer = bytearray(template)
            common = {
                "StudyDate": study.date, "SeriesDate": study.date, "ContentDate": study.date,
                "StudyTime": study.time, "SeriesTime": study.time, "ContentTime": study.time,
                "AccessionNumber": study.accession, "ReferringPhysicianName": study.referring,
                "StudyDescription": study.description,
                "SeriesDescription": series.description, "PatientName": study.patient_name,
                "PatientID": study.patient_id, "PatientBirthDate": study.birth_date,
                "PatientSex": study.sex, "BodyPartExamined": series.body_part,
                "StudyInstanceUID": study.uid, "SeriesInstanceUID": series.uid,
                "StudyID": study.study_id, "SeriesNumber": str(series.number),
            }  # fmt: skip
            for keyword, value in common.items():
                _tag, vr, width = _PLACES[keyword]
                at = offsets[keyword]
                buffer[at : at + width] = _fixed(value, width, vr)
            for k in range(series.instances):
                n = series.first_instance + k
                uid = _fixed(instance_uid(n), _PLACES["SOPInstanceUID"][2], "UI")
                for keyword in ("MediaStorageSOPInstanceUID", "SOPInstanceUID"):
                    at = offsets[keyword]
                    buffer[at : at + len(uid)] = uid
                at = offsets["InstanceNumber"]
                buffer[at : at + 4] = _fixed(str(k + 1), 4, "IS")
                path = root / f"part{n % parts:02d}" / f"i{n:08d}.dcm"
                path.write_bytes(buffer)
                written += 1
    return written


def ensure_files(count: int, cache: Path) -> Path:
    """The folder of ``count`` instances as files, generated now if not cached yet."""

    def build(tmp: Path) -> str:
        write_files(studies(count), tmp)
        return str(count)

    return datasets.cached(cache / f"qrfiles-{count}-v{FORMAT_VERSION}", build)


def ensure_index(count: int, cache: Path) -> Path:
    """A data folder holding ``count`` synthetic instances, bulk-loaded once and cached."""

    def build(tmp: Path) -> str:
        return f"{make_data_folder(tmp, studies(count)):.1f}"

    return datasets.cached(cache / f"qrindex-{count}-v{FORMAT_VERSION}", build)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="synthetic index / files for the Q/R benchmarks")
    parser.add_argument("count", type=int, nargs="?", default=1_000_000)
    parser.add_argument("folder", type=Path, nargs="?")
    parser.add_argument("--files", action="store_true", help="write Part 10 files instead")
    parser.add_argument("--verify", type=int, metavar="N", help="bulk load == writer, N instances")
    args = parser.parse_args(argv)
    if args.verify:
        work = Path(__file__).resolve().parent / ".cache" / "runs" / "indexgen-verify"
        t0 = time.perf_counter()
        problems = verify(args.verify, work)
        for line in problems:
            print(line)
        print(f"verify {args.verify}: {'DIFFERENT' if problems else 'identical'}"
              f" ({time.perf_counter() - t0:.1f} s)")  # fmt: skip
        return 1 if problems else 0
    if args.folder is None:
        parser.error("FOLDER is required")
    t0 = time.perf_counter()
    population = studies(args.count)
    made = time.perf_counter() - t0
    if args.files:
        written = write_files(population, args.folder)
        print(f"{written} files in {time.perf_counter() - t0:.1f} s")
        return 0
    seconds = make_data_folder(args.folder, population)
    patients = population[-1].patient + 1
    print(f"{args.count:,} instances, {len(population):,} studies, {patients:,} patients:"
          f" population {made:.1f} s, index {seconds:.1f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
