"""``archive reindex``: rows an older version made are read again from their files.

The archive is filled by ``archive import``; the state an upgrade leaves (rows of
header version 0 without their sequences, the index's reindex task set, as
migration 0006 does) is then made by hand in the index, and the command must put
back exactly what a fresh ingest indexed, touching no file.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

from archive.config import Config, with_overrides
from archive.dicom.attributes import HEADER_VERSION
from archive.node import INDEX_FILE, Node, Storage
from archive.reindex import reindex
from archive.store import relative_path, scan_file, scan_header
from tests.dicom.header_helpers import dataset

ARCHIVE = [sys.executable, "-m", "archive.cli"]
KOS = "1.2.840.10008.5.1.4.1.1.88.59"
CT = "1.2.840.10008.5.1.4.1.1.2"
#: Columns the header reader fills that rows of version 0 lack, by table.
SEQUENCES = (
    ("patient", "other_patient_ids_sequence"),
    ("study", "procedure_code_sequence"),
    ("series", "request_attributes_sequence"),
    ("instance", "concept_name_code_sequence"),
    ("instance", "content_template_sequence"),
)


def archive(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ARCHIVE, *args], capture_output=True, text=True, timeout=120)


def code(value: str, scheme: str, meaning: str) -> Dataset:
    return dataset(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def make_file(
    folder: Path,
    n: int,
    study: str,
    series: str,
    *,
    pixels: int = 0,
    description: str = "Reindexed",
    name: str = "Reindex^Test",
    transfer_syntax: str = ExplicitVRLittleEndian,
    other_id: str | None = "OTHER-1",
    procedure: str | None = "P-1",
    order: str | None = "per series",
) -> Path:
    """A key object selection document (n even) or a CT image, with sequences; its
    SOP Instance UID is always as long (files of one kind are of one size)."""
    document = n % 2 == 0
    ds = dataset(
        SOPClassUID=KOS if document else CT,
        SOPInstanceUID=f"1.2.826.0.1.3680043.10.1000.{random.randrange(10**12, 10**13)}",
        PatientID="PID-R",
        PatientName=name,
        StudyInstanceUID=study,
        StudyDescription=description,
        SeriesInstanceUID=series,
        Modality="KO" if document else "CT",
        InstanceNumber=n,
    )
    if other_id is not None:
        ds.OtherPatientIDsSequence = [dataset(PatientID=other_id, IssuerOfPatientID="HOSP")]
    if procedure is not None:
        ds.ProcedureCodeSequence = [code(procedure, "L", "Head CT")]
    if order is not None:  # by default one order per series (of two)
        requested = f"RP-{n % 2}" if order == "per series" else order
        ds.RequestAttributesSequence = [
            dataset(RequestedProcedureID=requested, AccessionNumber="ACC-R")
        ]
    if document:
        ds.ConceptNameCodeSequence = [code("113000", "DCM", "Of Interest")]
        ds.ContentTemplateSequence = [dataset(MappingResource="DCMR", TemplateIdentifier="2010")]
    if pixels:
        ds.Rows, ds.Columns = pixels // 1024, 1024
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 8, 8, 7
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.PixelRepresentation = 0
        ds.add_new(0x7FE00010, "OB", bytes(range(256)) * (pixels // 256))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    path = folder / f"{n}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """A data folder holding 12 instances in two series."""
    source = tmp_path / "in"
    source.mkdir()
    study = generate_uid()
    series = [generate_uid(), generate_uid()]
    for n in range(12):
        make_file(source, n, study, series[n % 2], pixels=1024)
    data = tmp_path / "data"
    done = archive("import", str(source), "--data", str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    return data


def rows(data: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(data / INDEX_FILE) as conn:
        return list(conn.execute(sql))


def snapshot(data: Path) -> dict[str, list[tuple[object, ...]]]:
    """What the index holds, by table, keyed so that re-inserted rows compare."""
    return {
        "patient": rows(data, "SELECT * FROM patient ORDER BY patient_key"),
        "study": rows(data, "SELECT * FROM study ORDER BY study_instance_uid"),
        "series": rows(data, "SELECT * FROM series ORDER BY series_instance_uid"),
        # pk and series_pk/study_pk aside (a refreshed row is inserted again).
        "instance": rows(
            data,
            "SELECT sop_instance_uid, sop_class_uid, instance_number, path, size, digest,"
            " source_ae, received_at, transfer_syntax_uid, concept_name_code_sequence,"
            " content_template_sequence, header_version FROM instance ORDER BY sop_instance_uid",
        ),
        "totals": rows(data, "SELECT * FROM totals"),
        "study_sop_class": rows(data, "SELECT * FROM study_sop_class ORDER BY 1, 2"),
    }


def downgrade(data: Path) -> None:
    """What an upgrade from before the sequences leaves: empty sequence columns,
    rows of header version 0, the reindex task (migrations 0004 and 0006)."""
    with sqlite3.connect(data / INDEX_FILE) as conn:
        for table, column in SEQUENCES:
            conn.execute(f"UPDATE {table} SET {column} = ''")
        conn.execute("UPDATE instance SET header_version = 0")
        conn.execute("INSERT INTO maintenance (task) VALUES ('reindex')")


def test_reindex_puts_back_what_ingest_indexed_and_touches_no_file(
    filled: Path,
) -> None:
    data = filled
    fresh = snapshot(data)
    assert {row[-1] for row in fresh["instance"]} == {HEADER_VERSION}
    assert rows(data, "SELECT count(*) FROM instance WHERE concept_name_code_sequence <> ''") == [
        (6,)
    ]
    stored = {p: p.read_bytes() for p in (data / "instances").rglob("*.dcm")}
    mtimes = {p: p.stat().st_mtime_ns for p in stored}
    downgrade(data)
    assert snapshot(data) != fresh

    stats = archive("stats", "--data", str(data))
    assert "12 instance(s) indexed by an older version: run archive reindex" in stats.stdout
    assert '"outdated":12' in archive("stats", "--data", str(data), "--json").stdout

    done = archive("reindex", "--data", str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12 of 12 instance(s) refreshed" in done.stdout
    assert snapshot(data) == fresh
    assert rows(data, "SELECT task FROM maintenance") == []
    assert {p: p.read_bytes() for p in (data / "instances").rglob("*.dcm")} == stored
    assert {p: p.stat().st_mtime_ns for p in stored} == mtimes
    assert "older version" not in archive("stats", "--data", str(data)).stdout
    assert '"outdated":0' in archive("stats", "--data", str(data), "--json").stdout
    assert archive("check", "--data", str(data)).returncode == 0

    # Nothing left to do; --all reads every row again and changes nothing.
    again = archive("reindex", "--data", str(data))
    assert "0 of 0 instance(s) refreshed" in again.stdout
    everything = archive("reindex", "--data", str(data), "--all", "-j", "2")
    assert "12 of 12 instance(s) refreshed" in everything.stdout
    assert snapshot(data) == fresh


def test_a_level_left_empty_by_an_upgrade_takes_its_latest_received_value(
    tmp_path: Path,
) -> None:
    """A study's instances give it different sequences (a procedure code, the
    patient's other IDs, the series' order), the last one none: ingest keeps the
    latest received non-empty value. After an upgrade from before the sequences,
    reindex gave the level the value of whichever instance it refreshed first
    (with 8 jobs, any of them)."""
    source = tmp_path / "in"
    source.mkdir()
    study, series = generate_uid(), generate_uid()
    values = [("OTHER-0", "P-A", "RP-A"), ("OTHER-1", "P-B", "RP-B"), (None, None, None)]
    for n, (other, procedure, order) in enumerate(values * 4):
        folder = source / f"{n:02d}"
        folder.mkdir()
        make_file(folder, n, study, series, other_id=other, procedure=procedure, order=order)
    data = tmp_path / "data"
    for folder in sorted(source.iterdir()):  # one at a time: the order received
        done = archive("import", str(folder), "--data", str(data))
        assert done.returncode == 0, done.stdout + done.stderr
    fresh = snapshot(data)
    assert "P-B" in str(fresh["study"])
    assert "OTHER-1" in str(fresh["patient"])
    assert "RP-B" in str(fresh["series"])
    for jobs in ("1", "8", "8"):
        downgrade(data)
        done = archive("reindex", "--data", str(data), "-j", jobs)
        assert done.returncode == 0, done.stdout + done.stderr
        assert snapshot(data) == fresh


def test_a_sequence_query_matches_after_reindex(filled: Path) -> None:
    """The point of it: C-FIND by document title finds the old documents again."""
    from archive.dicom.dataset import Element
    from tests.index.test_find import q

    data = filled
    downgrade(data)
    config = with_overrides(Config(), data_dir=str(data))
    title = ((Element(0x00080100, "SH", b"113000"),),)

    async def documents() -> int:
        storage = await Storage(config).open()
        try:
            assert storage.index is not None
            query = q("IMAGE", ("ConceptNameCodeSequence", title))
            before = [r async for r in storage.index.find(query)]
            report = await reindex(storage, progress=False)
            assert report.refreshed == 12
            assert report.clean
            assert report.outdated == 0
            after = [r async for r in storage.index.find(query)]
            assert before == []
            return len(after)
        finally:
            await storage.close()

    assert asyncio.run(documents()) == 6


def test_files_that_cannot_be_read_are_reported_and_their_rows_left(
    filled: Path,
) -> None:
    data = filled
    downgrade(data)
    uids = [row[0] for row in rows(data, "SELECT sop_instance_uid FROM instance ORDER BY pk")]
    gone, cut, other = (data / relative_path(uid) for uid in uids[:3])
    gone.unlink()
    cut.write_bytes(cut.read_bytes()[:200])  # not a whole file meta any more
    other.write_bytes((data / relative_path(uids[3])).read_bytes())  # another instance

    done = archive("reindex", "--data", str(data))
    assert done.returncode == 5, done.stdout + done.stderr
    assert "9 of 12 instance(s) refreshed" in done.stdout
    assert "rows whose file is missing: 1" in done.stdout
    assert "unreadable files: 1" in done.stdout
    assert "files that are not the one indexed: 1" in done.stdout
    assert "3 instance(s) still indexed by an older version" in done.stdout
    assert rows(data, "SELECT task FROM maintenance") == [("reindex",)]
    left = rows(
        data,
        "SELECT sop_instance_uid, header_version, concept_name_code_sequence FROM instance"
        " WHERE header_version = 0 ORDER BY pk",
    )
    assert [(uid, 0, "") for uid in uids[:3]] == left


def test_the_server_warns_at_start_while_a_reindex_is_due(
    filled: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = filled
    config = with_overrides(Config(), data_dir=str(data), port=0, host="127.0.0.1")

    async def start() -> None:
        async with Node(config):
            pass

    asyncio.run(start())
    assert "archive reindex" not in caplog.text
    downgrade(data)
    with caplog.at_level(logging.WARNING, logger="archive.node"):
        asyncio.run(start())
    assert "run `archive reindex`" in caplog.text


def test_reindex_refuses_a_folder_a_server_holds(filled: Path) -> None:
    data = filled
    config = with_overrides(Config(), data_dir=str(data), port=0, host="127.0.0.1")

    async def hold() -> subprocess.CompletedProcess[str]:
        async with Node(config):
            return await asyncio.to_thread(archive, "reindex", "--data", str(data))

    done = asyncio.run(hold())
    assert done.returncode == 3, done.stdout + done.stderr


def test_scan_header_reads_only_the_header(tmp_path: Path) -> None:
    """Same attributes as the full scan; a file cut inside its pixel data, which
    the full scan refuses, still gives its header."""
    path = make_file(tmp_path, 2, generate_uid(), generate_uid(), pixels=512 * 1024)
    whole = scan_file(path)
    header = scan_header(path)
    assert header.attrs == whole.attrs
    assert header.meta == whole.meta
    assert header.size == whole.size == path.stat().st_size
    path.write_bytes(path.read_bytes()[: 300 * 1024])
    assert scan_header(path).attrs == whole.attrs
    with pytest.raises(Exception, match="truncated"):
        scan_file(path)


def test_values_received_since_are_not_undone(tmp_path: Path) -> None:
    """An instance received after the upgrade carries a corrected study description
    and patient name; reading the older instance again fills what its row lacks but
    leaves those as the later instance set them."""
    study, series = generate_uid(), generate_uid()
    first, later = tmp_path / "first", tmp_path / "later"
    first.mkdir()
    later.mkdir()
    make_file(first, 0, study, series, description="OLD", name="Old^Name")
    make_file(later, 2, study, series, description="CORRECTED", name="New^Name")
    data = tmp_path / "data"
    assert archive("import", str(first), "--data", str(data)).returncode == 0
    downgrade(data)
    assert archive("import", str(later), "--data", str(data)).returncode == 0
    done = archive("reindex", "--data", str(data))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 of 1 instance(s) refreshed" in done.stdout
    assert rows(data, "SELECT study_description FROM study") == [("CORRECTED",)]
    assert rows(data, "SELECT patient_name FROM patient") == [("New^Name",)]
    # The sequences the downgrade emptied are back, the older instance's own too.
    assert rows(data, "SELECT count(*) FROM instance WHERE concept_name_code_sequence <> ''") == [
        (2,)
    ]
    assert rows(data, "SELECT procedure_code_sequence <> '' FROM study") == [(1,)]


@pytest.mark.parametrize("change", ["cut after its header", "another instance, same size"])
def test_a_file_changed_on_disk_is_left_and_reported(filled: Path, change: str) -> None:
    """Only this: the header still reads, so only the size or the SOP Instance UID
    tells that the file is not the one indexed; exit 5, row left, task kept."""
    data = filled
    downgrade(data)
    held = rows(data, "SELECT sop_instance_uid, sop_class_uid FROM instance ORDER BY pk")
    uid, sop_class = held[0]
    target = data / relative_path(uid)
    if change == "cut after its header":
        target.write_bytes(target.read_bytes()[:-10])  # inside Pixel Data
        assert scan_header(target).attrs.sop_instance_uid == uid
    else:
        # Another instance of the same class: the same size (see make_file).
        other_uid = next(u for u, c in held[1:] if c == sop_class)
        other = (data / relative_path(other_uid)).read_bytes()
        assert len(other) == target.stat().st_size
        target.write_bytes(other)
    done = archive("reindex", "--data", str(data))
    assert done.returncode == 5, done.stdout + done.stderr
    assert "11 of 12 instance(s) refreshed" in done.stdout
    assert "files that are not the one indexed: 1" in done.stdout
    assert rows(data, "SELECT task FROM maintenance") == [("reindex",)]
    versions = rows(data, "SELECT sop_instance_uid, header_version FROM instance")
    assert dict(versions)[uid] == 0


def test_scan_header_of_a_deflated_file(tmp_path: Path) -> None:
    path = make_file(tmp_path, 2, generate_uid(), generate_uid(), pixels=64 * 1024,
                     transfer_syntax=DeflatedExplicitVRLittleEndian)  # fmt: skip
    whole = scan_file(path)
    header = scan_header(path)
    assert header.attrs == whole.attrs
    assert header.attrs.concept_name_code_sequence


def test_an_index_failure_is_a_one_line_error(
    filled: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The index failing mid-run (disk full, say) stops the reindex with the reason,
    as other commands report it, not with a traceback of the workers."""
    from archive.cli import main
    from archive.index import Index, IndexWriteError

    async def refuse(self: Index, *args: object) -> bool:
        raise IndexWriteError("database or disk is full")

    downgrade(filled)
    monkeypatch.setattr(Index, "refresh_merged", refuse)
    status = main(["reindex", "--data", str(filled)])
    err = capsys.readouterr().err
    assert status != 0
    assert err.splitlines() == ["archive reindex: database or disk is full"], err


def test_patients_without_an_id_keep_their_own_values(tmp_path: Path) -> None:
    """A patient without a Patient ID is one of its study (the index keys it so):
    reindex took two such patients for one, and gave the later one's Other
    Patient IDs to both (a review of this session's change)."""
    import pydicom

    source = tmp_path / "in"
    for n, other in enumerate(["OTHER-OF-A", "OTHER-OF-B"]):
        folder = source / f"{n:02d}"
        folder.mkdir(parents=True)
        study, series = generate_uid(), generate_uid()
        # Two instances a series: a refresh empties a series of one for a moment,
        # and it is made again under a new pk (the snapshot compares pks).
        for instance in (1, 3):
            path = make_file(folder, instance, study, series, other_id=other)
            ds = pydicom.dcmread(path)
            ds.PatientID = ""
            ds.save_as(path, enforce_file_format=True)
    data = tmp_path / "data"
    for folder in sorted(source.iterdir()):
        done = archive("import", str(folder), "--data", str(data))
        assert done.returncode == 0, done.stdout + done.stderr
    fresh = snapshot(data)
    assert len(fresh["patient"]) == 2
    downgrade(data)
    done = archive("reindex", "--data", str(data), "-j", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert snapshot(data) == fresh


def test_the_progress_counts_the_bytes_read(filled: Path) -> None:
    """Each refreshed row's file size goes to the progress bar (it showed 0 B)."""
    import io

    downgrade(filled)
    config = with_overrides(Config(), data_dir=str(filled))

    async def main() -> str:
        storage = await Storage(config).open()
        try:
            out = io.StringIO()
            report = await reindex(storage, progress=True, progress_stream=out)
            assert report.refreshed == 12
            return out.getvalue()
        finally:
            await storage.close()

    shown = asyncio.run(main())
    (last,) = [line for line in shown.split("\r") if "12/12 instances" in line]
    assert " 0 B " not in last, shown
