"""``archive check``: the full sweep that compares instances/ with the index."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import shutil
import stat
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pydicom
import pytest
from pydicom.data import get_testdata_file

from archive.dicom.dimse import Status
from archive.dicom.filemeta import FileMeta, encode_file_meta
from archive.dicom.uids import DEFLATED_EXPLICIT_VR_LE
from archive.node import Storage
from archive.reconcile import check
from archive.store import StoreError, read_meta, relative_path
from tests.conftest import make_config
from tests.store.helpers import deflated_unchecked
from tests.store.test_recovery import ingest

DEFLATED = "1.2.840.10008.1.2.1.99"

ARCHIVE = [sys.executable, "-m", "archive.cli"]


def archive(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ARCHIVE, *args], capture_output=True, text=True, timeout=60)


def test_check_finds_and_repairs_every_kind_of_difference(tmp_path: Path) -> None:
    data = tmp_path / "data"
    source = tmp_path / "in"
    source.mkdir()
    names = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"]
    for name in names:
        shutil.copy(get_testdata_file(name), source / name)
    assert archive("import", str(source), "--data", str(data)).returncode == 0
    assert archive("check", "--data", str(data)).stdout.endswith("files and index agree\n")

    ct_uid = read_meta(source / "CT_small.dcm")[0].media_storage_sop_instance_uid
    mr_uid = read_meta(source / "MR_small.dcm")[0].media_storage_sop_instance_uid
    # A row whose file is gone, a readable file nobody indexed, an unreadable file,
    # and a superseded version of an indexed instance.
    (data / relative_path(ct_uid)).unlink()
    stray_src = get_testdata_file("SC_rgb_rle.dcm")
    stray_uid = read_meta(stray_src)[0].media_storage_sop_instance_uid
    stray = data / relative_path(stray_uid)
    stray.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(stray_src, stray)
    junk = data / "instances" / "00" / "00" / "1.2.3.dcm"
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_bytes(b"not DICOM")
    old_mr = data / (relative_path(mr_uid)[:-4] + ".rdeadbeef.dcm")
    shutil.copy(data / relative_path(mr_uid), old_mr)

    found = archive("check", "--data", str(data))
    assert found.returncode == 5, found.stdout + found.stderr
    assert "files without an index row: 1" in found.stdout
    assert "unreadable files: 1" in found.stdout
    assert "superseded versions: 1" in found.stdout
    assert "rows whose file is missing: 1" in found.stdout
    assert junk.exists()
    assert old_mr.exists()

    fixed = archive("check", "--data", str(data), "--repair")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "unreadable files (moved to quarantine/): 1" in fixed.stdout
    assert not junk.exists()
    # Set aside, not deleted: it may be all someone has of something.
    assert (data / "quarantine" / "00" / "00" / "1.2.3.dcm").read_bytes() == b"not DICOM"
    assert not old_mr.exists()
    assert stray.exists()
    again = archive("check", "--data", str(data))
    assert again.returncode == 0
    assert again.stdout.endswith("files and index agree\n")
    stats = archive("stats", "--data", str(data), "--json").stdout
    assert '"instances":3' in stats  # MR, JPEG 2000, and the adopted stray; the CT is gone


def test_verify_finds_files_changed_on_disk_and_leaves_them(tmp_path: Path) -> None:
    """``--verify`` reads every indexed file whole. Reported as differing from what
    was stored: one with a byte flipped in its pixels (same size), one cut short,
    one whose File Meta grew (same data set, so same digest: only the size tells);
    reported as unreadable: one that is no longer a regular file. Exit 5, with or
    without --repair, which changes none of them."""
    data = tmp_path / "data"
    source = tmp_path / "in"
    source.mkdir()
    names = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "ExplVR_BigEnd.dcm"]
    for name in names:
        shutil.copy(get_testdata_file(name), source / name)
    assert archive("import", str(source), "--data", str(data)).returncode == 0
    clean = archive("check", "--data", str(data), "--verify", "-j", "2")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "5 file(s) read whole and compared with the index" in clean.stdout
    assert clean.stdout.endswith("files and index agree\n")

    ct, mr, j2k, rle = (
        data / relative_path(read_meta(source / name)[0].media_storage_sop_instance_uid)
        for name in names[:4]
    )
    flipped = bytearray(ct.read_bytes())
    flipped[-100] ^= 0xFF  # in Pixel Data: the header still reads
    ct.write_bytes(bytes(flipped))
    cut = mr.read_bytes()[:-10]
    mr.write_bytes(cut)
    meta, offset = read_meta(j2k)
    longer = msgspec.structs.replace(meta, source_application_entity_title="A_LONGER_AE_TITLE")
    regrown = encode_file_meta(longer) + j2k.read_bytes()[offset:]
    j2k.write_bytes(regrown)
    rle.unlink()
    os.mkfifo(rle)  # there, but no regular file: cannot be read
    # Without --verify names are compared and each file's first bytes read: the
    # FIFO cannot be read, the changed contents go unseen.
    plain = archive("check", "--data", str(data))
    assert plain.returncode == 5, plain.stdout + plain.stderr
    assert "files that cannot be read (left in place): 1" in plain.stdout
    assert f"  {rle.relative_to(data).as_posix()}" in plain.stdout
    assert "differs" not in plain.stdout
    for extra in ([], ["--repair"]):
        found = archive("check", "--data", str(data), "--verify", *extra)
        assert found.returncode == 5, found.stdout + found.stderr
        out = found.stdout
        assert "files whose content differs from the index (left as they are): 3" in out
        assert "files that cannot be read (left in place): 1" in out
        for path in (ct, mr, j2k, rle):
            assert f"  {path.relative_to(data).as_posix()}" in out
        # Read whole and compared: all but the FIFO (the cut MR's size tells).
        assert "4 file(s) read whole and compared with the index" in out
        assert (ct.read_bytes(), mr.read_bytes(), j2k.read_bytes()) == (
            bytes(flipped),
            cut,
            regrown,
        )
        assert stat.S_ISFIFO(rle.stat().st_mode)


def test_verify_compares_what_was_stored_and_does_not_judge_it_again(tmp_path: Path) -> None:
    """An instance ingest acknowledged unchecked past its header (Deflated, too
    compressible to check on the C-STORE path, its stream cut after the header)
    is as it was stored: --verify compares its size and SHA-256 with the row's,
    and does not report it changed because a parse to the end of the stream
    would refuse it."""
    data = tmp_path / "data"
    ds, sent = deflated_unchecked()
    assert ingest(data, ds, DEFLATED_EXPLICIT_VR_LE, data=sent) == Status.SUCCESS
    done = archive("check", "--data", str(data), "--verify")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 file(s) read whole and compared with the index" in done.stdout
    assert done.stdout.endswith("files and index agree\n")


def test_check_refuses_jobs_below_one(tmp_path: Path) -> None:
    done = archive("check", "--data", str(tmp_path / "data"), "--verify", "-j", "0")
    assert done.returncode == 1  # usage, as reindex's
    assert "archive check: -j must be at least 1" in done.stderr


def _ct_and_mr_imported(tmp_path: Path) -> tuple[Path, str]:
    """A data folder holding pydicom's CT_small and MR_small; the CT's UID."""
    data = tmp_path / "data"
    source = tmp_path / "in"
    source.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), source / name)
    assert archive("import", str(source), "--data", str(data)).returncode == 0
    return data, read_meta(source / "CT_small.dcm")[0].media_storage_sop_instance_uid


def test_a_folder_that_cannot_be_listed_ends_the_check_and_removes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leaf folder that cannot be listed (EIO, an unmounted disk behind a link):
    its files would count as missing, and --repair would remove the rows of
    instances still on disk. The check stops with the folder's name instead."""
    data, ct_uid = _ct_and_mr_imported(tmp_path)
    leaf = str((data / relative_path(ct_uid)).parent)
    real = os.scandir

    def scandir(path: Any = ".") -> Any:
        if os.fspath(path) == leaf:
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)
        return real(path)

    config = make_config(data_dir=str(data))

    async def scenario() -> None:
        storage = await Storage(config).open()
        try:
            with monkeypatch.context() as patch:
                patch.setattr(os, "scandir", scandir)
                with pytest.raises(StoreError, match=f"cannot list {leaf}: Input/output error"):
                    await check(storage, repair=True)
        finally:
            await storage.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
    again = archive("check", "--data", str(data))
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.endswith("files and index agree\n")
    assert '"instances":2' in archive("stats", "--data", str(data), "--json").stdout


def test_a_check_without_verify_reports_an_indexed_file_it_cannot_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose first block gives EIO (or that its user may not read): a C-GET
    or C-MOVE of it would fail, so even the quick check reports it (exit 5), and
    leaves it and its row."""
    data, ct_uid = _ct_and_mr_imported(tmp_path)
    bad = data / relative_path(ct_uid)
    real = os.pread
    bad_inode = bad.stat().st_ino

    def pread(fd: int, size: int, offset: int) -> bytes:
        if os.fstat(fd).st_ino == bad_inode:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, size, offset)

    config = make_config(data_dir=str(data))

    async def scenario() -> Any:
        storage = await Storage(config).open()
        try:
            with monkeypatch.context() as patch:
                patch.setattr(os, "pread", pread)
                return await check(storage, repair=True)
        finally:
            await storage.close()

    report = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert report.inaccessible_files == [bad.relative_to(data).as_posix()]
    assert report.beyond_repair
    assert (report.missing_files, report.unreadable_files) == ([], [])
    assert bad.exists()
    assert '"instances":2' in archive("stats", "--data", str(data), "--json").stdout


def test_a_deflated_file_cut_after_a_header_of_zeros_is_not_adopted(tmp_path: Path) -> None:
    """check --repair adopts an unindexed file only if it reads back whole. A
    Deflated one whose Pixel Data are zeros deflates far past the ratio the
    C-STORE path checks within; a scan (in the I/O pool) checks its stream to the
    end, so a cut one is removed as unreadable, not indexed."""
    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.78"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.79"
    ds.PatientID = "P1"
    ds.Rows, ds.Columns, ds.BitsAllocated = 1024, 1024, 16
    ds.PixelData = bytes(2 * 1024 * 1024)
    plain = io.BytesIO()
    pydicom.dcmwrite(plain, ds, implicit_vr=False, little_endian=True)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(plain.getvalue()) + compressor.flush()
    meta = encode_file_meta(
        FileMeta(
            media_storage_sop_class_uid=str(ds.SOPClassUID),
            media_storage_sop_instance_uid=str(ds.SOPInstanceUID),
            transfer_syntax_uid=DEFLATED,
        )
    )
    data = tmp_path / "data"
    target = data / relative_path(str(ds.SOPInstanceUID))
    target.parent.mkdir(parents=True)
    target.write_bytes(meta + deflated[: len(deflated) * 2 // 3])
    fixed = archive("check", "--data", str(data), "--repair")
    assert "unreadable files (moved to quarantine/): 1" in fixed.stdout, fixed.stdout
    assert not target.exists()
    whole = data / relative_path(str(ds.SOPInstanceUID))
    whole.parent.mkdir(parents=True, exist_ok=True)
    whole.write_bytes(meta + deflated)
    adopted = archive("check", "--data", str(data), "--repair")
    assert "files without an index row (repaired): 1" in adopted.stdout, adopted.stdout
    assert '"instances":1' in archive("stats", "--data", str(data), "--json").stdout


def test_a_version_is_not_removed_while_the_one_indexed_is_damaged(tmp_path: Path) -> None:
    """The indexed file of an instance cut short, an intact earlier version beside it
    (a restored copy, a replacement's leftover): the repair removed that version as
    superseded and kept the damaged file, and the instance was lost (review). It is
    kept now, reported, and the exit status says the check is beyond repair; once
    the indexed file reads as stored again, the version goes as before."""
    data = tmp_path / "data"
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), source / "ct.dcm")
    assert archive("import", str(source), "--data", str(data)).returncode == 0
    uid = read_meta(source / "ct.dcm")[0].media_storage_sop_instance_uid
    indexed = data / relative_path(uid)
    whole = indexed.read_bytes()
    version = data / (relative_path(uid)[:-4] + ".r11111111.dcm")
    version.write_bytes(whole)
    indexed.write_bytes(whole[:-5000])

    for args in ([], ["--repair"], ["--repair", "--verify"]):
        done = archive("check", "--data", str(data), *args)
        assert done.returncode == 5, done.stdout + done.stderr
        assert "other versions kept (the version indexed is missing or not as stored): 1" in (
            done.stdout
        )
        assert version.read_bytes() == whole
    indexed.write_bytes(whole)  # the damage mended (a restore)
    done = archive("check", "--data", str(data), "--repair")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "superseded versions (repaired): 1" in done.stdout
    assert not version.exists()


def test_a_repair_refuses_an_instances_folder_without_a_file(tmp_path: Path) -> None:
    """instances/ empty while the index has rows: a disk not mounted, far more often
    than every file lost. The repair removed every row and exited 0 (review); it
    stops now, says why, and the index keeps its rows."""
    data, _ = _ct_and_mr_imported(tmp_path)
    shutil.move(data / "instances", tmp_path / "elsewhere")
    (data / "instances").mkdir()  # the mount point, with its disk not mounted
    done = archive("check", "--data", str(data), "--repair")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "holds no instance file for 2 index row(s)" in done.stderr
    assert '"instances":2' in archive("stats", "--data", str(data), "--json").stdout
    # Without --repair it only reports, as before.
    found = archive("check", "--data", str(data))
    assert found.returncode == 5
    assert "rows whose file is missing: 2" in found.stdout


@pytest.mark.parametrize("command", [["check"], ["check", "--verify"], ["reindex"]])
def test_check_and_reindex_refuse_a_folder_without_an_index(
    tmp_path: Path, command: list[str]
) -> None:
    """A mistyped --data was made into an empty archive and called clean (exit 0,
    index.sqlite, instances/, tmp/ and lock created there; review). Refused now,
    as stats refuses it, and nothing is made."""
    missing = tmp_path / "typo"
    done = archive(*command, "--data", str(missing))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"no archive at {missing} (no index.sqlite)" in done.stderr
    assert not missing.exists()


def test_a_repair_rebuilds_a_lost_index_from_the_files(tmp_path: Path) -> None:
    """The one case a folder without an index is taken: --repair with instances/
    there indexes every file again."""
    data, _ = _ct_and_mr_imported(tmp_path)
    for name in os.listdir(data):
        if name.startswith("index.sqlite"):
            (data / name).unlink()
    done = archive("check", "--data", str(data), "--repair")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "files without an index row (repaired): 2" in done.stdout
    assert '"instances":2' in archive("stats", "--data", str(data), "--json").stdout
