"""``archive import`` with odd files among good ones: each fails alone, with its
reason in the summary, the others are imported, and the data folder stays as
``archive check`` wants it."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.cli import main
from tests.scu.test_files import with_meta
from tests.test_cli_store import make_instance, stored_path


def import_(data: Path, *paths: Path) -> int:
    return main(["import", "--data", str(data), *map(str, paths)])


def assert_consistent(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``archive check``: no file without its row, no row without its file, no debris."""
    capsys.readouterr()
    assert main(["check", "--data", str(data)]) == 0, capsys.readouterr()
    assert list((data / "tmp").iterdir()) == []


def test_a_meta_uid_that_is_not_ascii_fails_that_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to end the run with a UnicodeEncodeError traceback."""
    folder = tmp_path / "in"
    uids = [make_instance(folder / f"{i}.dcm") for i in range(3)]
    bad = folder / "1.dcm"
    with_meta(bad, sop_class="1.2.840.10008.5.1.4.1.1.\u00e9".encode("latin-1"))
    data = tmp_path / "data"
    assert import_(data, folder) == 5
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("imported 2, failed 1, skipped 0 of 3 file(s); ")
    assert lines[1:] == [
        f"failed: {bad}  {uids[1]}  file meta Media Storage SOP Class UID (0002,0002)"
        " is not a UID (1-64 digits and dots): '1.2.840.10008.5.1.4.1.1.\\ufffd'"
    ]
    assert [stored_path(data, uid).exists() for uid in uids] == [True, False, True]
    assert_consistent(data, capsys)
