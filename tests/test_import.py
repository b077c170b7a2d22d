"""``archive import`` and ``archive stats``: offline ingest into a data folder."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ImplicitVRLittleEndian

from archive import importer
from archive.cli import main
from archive.index import Index
from archive.scu import Interrupt, Kind
from archive.store import read_meta
from tests.conftest import make_config
from tests.index import run
from tests.index.test_find import q
from tests.test_cli_store import (
    bare_folder,
    copy_test_files,
    dataset_bytes,
    make_instance,
    sent_bytes,
    stored_path,
)


def build_folder(folder: Path) -> dict[Path, str]:
    """2 patients, 3 studies, 4 series, 12 instances, plus a text file."""
    layout = [
        ("P1", "1.2.3.1", "1.2.3.1.1"),
        ("P1", "1.2.3.1", "1.2.3.1.2"),
        ("P1", "1.2.3.2", "1.2.3.2.1"),
        ("P2", "1.2.3.3", "1.2.3.3.1"),
    ]
    files = {}
    for i in range(12):
        patient, study, series = layout[i % 4]
        path = folder / patient / f"{i:02d}.dcm"
        ts = ImplicitVRLittleEndian if i % 2 else "1.2.840.10008.1.2.1"
        files[path] = make_instance(
            path, patient=patient, study=study, series=series, transfer_syntax=ts
        )
    (folder / "README").write_text("not DICOM\n")
    return files


def stats_json(data: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    assert main(["stats", "--data", str(data), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("}\n")
    assert out.count("\n") == 1
    decoded: dict[str, int] = json.loads(out)
    return decoded


def instance_files(data: Path) -> dict[Path, int]:
    return {p: p.stat().st_ino for p in (data / "instances").rglob("*.dcm")}


def test_import_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default ./data must stay untouched
    folder = tmp_path / "in"
    files = build_folder(folder)
    data = tmp_path / "archive"
    assert main(["import", "--data", str(data), "-j", "3", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("imported 12, failed 0, skipped 1 of 13 file(s); ")
    assert lines[1:] == [f"skipped: {folder / 'README'}  not a DICOM Part 10 file"]
    assert not (tmp_path / "data").exists()

    for path, uid in files.items():
        stored = stored_path(data, uid)
        assert dataset_bytes(stored) == dataset_bytes(path)
        meta, _ = read_meta(stored)
        assert meta.source_application_entity_title == "IMPORT"
        assert meta.transfer_syntax_uid == read_meta(path)[0].transfer_syntax_uid
    assert list((data / "tmp").iterdir()) == []
    on_disk = instance_files(data)
    stats = stats_json(data, capsys)
    assert stats == {
        "patients": 2,
        "studies": 3,
        "series": 4,
        "instances": 12,
        "bytes": sum(p.stat().st_size for p in on_disk),
        "outdated": 0,
    }

    # Again: identical duplicates are successes that write nothing, counted apart.
    assert main(["import", "--data", str(data), str(folder)]) == 0
    assert capsys.readouterr().out.startswith(
        "imported 0, already held 12, failed 0, skipped 1 of 13 file(s); 0 B (0 bytes) in "
    )
    assert instance_files(data) == on_disk
    assert stats_json(data, capsys) == stats
    assert list((data / "tmp").iterdir()) == []


def test_import_pydicom_files_and_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Compressed and deflated inputs; the data folder and durability from --config."""
    data = tmp_path / "from-config"
    config = tmp_path / "archive.toml"
    config.write_text(f'[node]\ndata_dir = "{data}"\n\n[store]\ndurability = "fast"\n')
    files = copy_test_files(tmp_path / "in")
    assert main(["import", "--config", str(config), str(tmp_path / "in")]) == 0
    assert capsys.readouterr().out.startswith(f"imported {len(files)}, failed 0, skipped 0")
    for path in files:
        meta, _ = read_meta(path)
        stored = stored_path(data, meta.media_storage_sop_instance_uid)
        assert dataset_bytes(stored) == sent_bytes(path), path.name
        expected_ae = meta.source_application_entity_title or "IMPORT"
        assert read_meta(stored)[0].source_application_entity_title == expected_ae
    assert stats_json(data, capsys)["instances"] == len(files)


def test_import_failures_exit_5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    good = make_instance(folder / "good.dcm")
    # The meta names one SOP Instance UID, the data set another: 0xA900.
    bad = folder / "bad.dcm"
    make_instance(bad, sop_instance_uid="1.2.3.999")
    raw = bad.read_bytes().replace(b"1.2.3.999", b"1.2.3.998", 1)
    bad.write_bytes(raw)
    data = tmp_path / "data"
    assert main(["import", "--data", str(data), str(folder)]) == 5
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("imported 1, failed 1, skipped 0 of 2 file(s); ")
    assert lines[1].startswith(f"failed: {bad}  1.2.3.998  status 0xA900: ")
    assert stored_path(data, good).exists()
    assert not stored_path(data, "1.2.3.998").exists()


def test_import_refuses_a_data_set_cut_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The node's own header reader refuses a data set that ends inside an
    element (0xC000), so import needs no walk of its own before it (the one
    ``archive store`` makes); nothing of it is stored."""
    import shutil

    from pydicom.data import get_testdata_file

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(get_testdata_file("MR_truncated.dcm"), folder / "cut.dcm")
    data = tmp_path / "data"
    assert main(["import", "--data", str(data), str(folder)]) == 5
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("imported 0, failed 1, skipped 0 of 1 file(s); ")
    assert "status 0xC000: data set truncated after its header" in lines[1], lines
    assert not list((data / "instances").rglob("*.dcm"))


@pytest.mark.parametrize(
    ("policy", "first_line", "kept"),
    [
        ("keep", "imported 1, already held 1, failed 0, skipped 0 of 2 file(s); ", True),
        ("replace", "imported 2, failed 0, skipped 0 of 2 file(s); ", False),
    ],
)
def test_import_a_different_duplicate(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    policy: str,
    first_line: str,
    kept: bool,
) -> None:
    """Under ``keep`` (the default) a duplicate with other content is not stored:
    "already held", not "imported" as it was counted; ``replace`` stores it."""
    held = tmp_path / "held"
    uid = make_instance(held / "a.dcm", pixels=64)
    config = tmp_path / "archive.toml"
    data = tmp_path / "data"
    config.write_text(f'[node]\ndata_dir = "{data}"\n\n[store]\nduplicates = "{policy}"\n')
    assert main(["import", "--config", str(config), str(held)]) == 0
    capsys.readouterr()
    other = tmp_path / "other"
    make_instance(other / "a.dcm", sop_instance_uid=uid, pixels=128)
    make_instance(other / "b.dcm")
    assert main(["import", "--config", str(config), str(other)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(first_line)
    assert lines[1:] == []
    (stored,) = (data / "instances").rglob(f"{uid}*")  # a replacement has a name of its own
    assert dataset_bytes(stored) == dataset_bytes(held / "a.dcm" if kept else other / "a.dcm")


def test_import_replacements_that_correct_patient_and_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under ``replace``, a series sent again with its Patient ID and Study Instance
    UID corrected is found by the corrected ones (C-FIND, C-MOVE), by them only,
    with the corrected patient's values. It stayed under the ones it was first
    sent with."""
    config = tmp_path / "archive.toml"
    data = tmp_path / "data"
    config.write_text(f'[node]\ndata_dir = "{data}"\n\n[store]\nduplicates = "replace"\n')
    series = {"series": "1.2.3.4.5"}
    uids = [make_instance(tmp_path / "sent" / f"{n}.dcm", patient="WRONG", study="1.2.3.4",
                          **series) for n in range(3)]  # fmt: skip
    for n, uid in enumerate(uids):
        make_instance(tmp_path / "fixed" / f"{n}.dcm", sop_instance_uid=uid, patient="RIGHT",
                      study="1.2.3.9", **series)  # fmt: skip
    assert main(["import", "--config", str(config), str(tmp_path / "sent")]) == 0
    assert main(["import", "--config", str(config), "-j", "2", str(tmp_path / "fixed")]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("imported 3, failed 0, ")

    async def studies(patient_id: str) -> list[tuple[object, ...]]:
        keys = ("StudyInstanceUID", "PatientName", "NumberOfStudyRelatedInstances")
        query = q("STUDY", ("PatientID", patient_id), *((key, "") for key in keys))
        async with await Index.open(data / "index.sqlite") as index:
            return [tuple(found[key] for key in keys) async for found in index.find(query)]

    async def retrieved(study: str) -> int:
        async with await Index.open(data / "index.sqlite") as index:
            return len(await index.retrieve(q("STUDY", ("StudyInstanceUID", study))))

    assert run(studies("RIGHT")) == [("1.2.3.9", "Test^RIGHT", 3)]
    assert run(studies("WRONG")) == []
    assert (run(retrieved("1.2.3.9")), run(retrieved("1.2.3.4"))) == (3, 0)
    assert stats_json(data, capsys) | {"bytes": 0} == {
        "patients": 1, "studies": 1, "series": 1, "instances": 3, "bytes": 0, "outdated": 0,
    }  # fmt: skip


def test_import_data_sets_without_file_meta(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Imported as ``archive store`` sends them: the stored file gets a File Meta
    of the syntax the data set's first element shows."""
    bare = bare_folder(tmp_path)
    data = tmp_path / "archive"
    assert main(["import", "--data", str(data), str(tmp_path / "in")]) == 0
    assert capsys.readouterr().out.startswith("imported 3, failed 0, skipped 0 of 3 file(s); ")
    for uid, (_, sent, transfer_syntax) in bare.items():
        stored = stored_path(data, uid)
        assert dataset_bytes(stored) == sent
        meta, _ = read_meta(stored)
        assert (meta.media_storage_sop_instance_uid, meta.transfer_syntax_uid) == (
            uid,
            transfer_syntax,
        )
        assert meta.source_application_entity_title == "IMPORT"
    assert stats_json(data, capsys)["instances"] == 3


def test_import_nothing_to_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.txt").write_text("x")
    assert main(["import", "--data", str(tmp_path / "data"), str(tmp_path / "a.txt")]) == 1
    assert capsys.readouterr().err == "archive import: no DICOM instances found\n"


def test_stats_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    make_instance(folder / "a.dcm", pixels=2048)
    data = tmp_path / "data"
    assert main(["import", "--data", str(data), str(folder)]) == 0
    capsys.readouterr()
    size = sum(p.stat().st_size for p in instance_files(data))
    assert main(["stats", "--data", str(data)]) == 0
    assert capsys.readouterr().out == (
        "patients   1\n"
        "studies    1\n"
        "series     1\n"
        "instances  1\n"
        f"bytes      {size / 1024:.1f} KiB ({size})\n"
    )


def test_stats_without_an_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing"
    assert main(["stats", "--data", str(missing)]) == 1
    assert capsys.readouterr().err == f"archive stats: no index at {missing / 'index.sqlite'}\n"
    assert not os.path.exists(missing)


# ---- a tree too large to list first ------------------------------------------------------


def _instrumented_walk(
    monkeypatch: pytest.MonkeyPatch, files: list[Path]
) -> tuple[list[int], list[int]]:
    """Make the import walk ``files`` (3 per batch) through a generator that notes
    how many it had handed over when each file's import began."""
    handed: list[int] = [0]
    at_import: list[int] = []

    def walk(paths: object, stop: object) -> Iterator[Path]:
        for path in files:
            handed[0] += 1
            yield path

    real_import_one = importer.import_one

    async def import_one(*args: Any) -> Any:
        at_import.append(handed[0])
        return await real_import_one(*args)

    monkeypatch.setattr(importer, "walk", walk)
    monkeypatch.setattr(importer, "WALK_BATCH", 3)
    monkeypatch.setattr(importer, "import_one", import_one)
    return handed, at_import


def test_import_takes_files_as_the_walk_finds_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing starts before the walk ends, and memory holds a batch of paths and
    the files that went wrong, not one result per file."""
    files = [tmp_path / "in" / f"{i:02d}.dcm" for i in range(10)]
    uids = [make_instance(path) for path in files]
    (tmp_path / "in" / "notes.txt").write_text("not DICOM\n")
    files.append(tmp_path / "in" / "notes.txt")
    _, at_import = _instrumented_walk(monkeypatch, files)
    data = tmp_path / "archive"
    report = asyncio.run(
        importer.import_files([tmp_path / "in"], make_config(data_dir=str(data)), jobs=2)
    )
    assert at_import[0] <= 3  # the first import began with one batch walked
    assert report.summary("imported").startswith("imported 10, failed 0, skipped 1 of 11 file(s); ")
    assert [r.kind for r in report.results] == [Kind.SKIPPED]  # the successes: counted
    assert all(stored_path(data, uid).exists() for uid in uids)


def test_import_interrupted_while_walking_says_the_rest_was_not_walked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [tmp_path / "in" / f"{i:02d}.dcm" for i in range(10)]
    for path in files:
        make_instance(path)
    _instrumented_walk(monkeypatch, files)
    interrupt = Interrupt()
    real_import_one = importer.import_one

    async def import_one(*args: Any) -> Any:
        result = await real_import_one(*args)
        interrupt.set()  # Ctrl-C once the first file is in
        return result

    monkeypatch.setattr(importer, "import_one", import_one)
    report = asyncio.run(
        importer.import_files(
            [tmp_path / "in"],
            make_config(data_dir=str(tmp_path / "archive")),
            jobs=1,
            interrupt=interrupt,
        )
    )
    lines = report.summary("imported").splitlines()
    assert lines[0].startswith("imported 1, failed 0, skipped 0 of 3 file(s); ")
    assert lines[1] == "interrupted: 2 file(s) not imported, nor the folders not walked yet"
