"""``archive import`` with odd files among good ones: each fails alone, with its
reason in the summary, the others are imported, and the data folder stays as
``archive check`` wants it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from archive.cli import main
from archive.dicom.header import HeaderReader, InstanceAttributes
from archive.services import store as store_service
from archive.store import read_meta
from tests.scu.test_files import with_meta
from tests.test_cli_store import make_instance, stored_path


def import_(data: Path, *paths: Path) -> int:
    return main(["import", "--data", str(data), *map(str, paths)])


def assert_consistent(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``archive check``: no file without its row, no row without its file, no debris."""
    capsys.readouterr()
    assert main(["check", "--data", str(data)]) == 0, capsys.readouterr()
    assert list((data / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("meta", "why"),
    [
        # It used to end the run with a UnicodeEncodeError traceback.
        (
            {"sop_class": "1.2.840.10008.5.1.4.1.1.\u00e9".encode("latin-1")},
            "file meta Media Storage SOP Class UID (0002,0002) is not a UID (1-64 digits"
            " and dots): '1.2.840.10008.5.1.4.1.1.\\ufffd'",
        ),
        # The node cannot read a private transfer syntax's data set (HeaderReader
        # refuses it): that file fails with the reason, before anything is written.
        (
            {"transfer_syntax": b"1.2.3.4.5"},
            "the node cannot read a data set in transfer syntax 1.2.3.4.5: unsupported"
            " transfer syntax '1.2.3.4.5'",
        ),
    ],
    ids=["uid-not-ascii", "private-transfer-syntax"],
)
def test_a_file_meta_the_node_cannot_take_fails_that_file_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], meta: dict[str, bytes], why: str
) -> None:
    folder = tmp_path / "in"
    uids = [make_instance(folder / f"{i}.dcm") for i in range(3)]
    bad = folder / "1.dcm"
    with_meta(bad, **meta)
    data = tmp_path / "data"
    assert import_(data, folder) == 5
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("imported 2, failed 1, skipped 0 of 3 file(s); ")
    assert lines[1:] == [f"failed: {bad}  {uids[1]}  {why}"]
    assert [stored_path(data, uid).exists() for uid in uids] == [True, False, True]
    assert_consistent(data, capsys)


def test_a_source_ae_title_that_is_not_one_is_recorded_as_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A non-ASCII Source AE Title (0002,0016) cannot be written into the stored
    file's meta (it used to end the run with a UnicodeEncodeError): the instance
    is imported under IMPORT, as a file naming none is, and a warning says so."""
    folder = tmp_path / "in"
    uids = [make_instance(folder / f"{i}.dcm") for i in range(2)]
    with_meta(folder / "0.dcm", source_ae="M\u00dcNCHEN".encode("latin-1"))
    with_meta(folder / "1.dcm", source_ae=b"CT_SCANNER")
    data = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="archive.import"):
        assert import_(data, folder) == 0
    assert capsys.readouterr().out.startswith("imported 2, failed 0, skipped 0 of 2 file(s); ")
    sources = [read_meta(stored_path(data, uid))[0].source_application_entity_title for uid in uids]
    assert sources == ["IMPORT", "CT_SCANNER"]
    assert [r.getMessage() for r in caplog.records if r.name == "archive.import"] == [
        f"instance {uids[0]}: Source Application Entity Title (0002,0016) of its file"
        " is not an AE title (must use printable ASCII only (the default character"
        " repertoire, no controls)): recorded as IMPORT"
    ]
    assert_consistent(data, capsys)


def test_an_unexpected_error_fails_that_file_alone(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Anything else raised while one file is ingested (the header reader's bug,
    here) is that file's failure, logged by its type but with no file name nor
    traceback at ERROR (they may name a patient); the run goes on and leaves
    nothing half-written."""
    folder = tmp_path / "in"
    uids = [make_instance(folder / f"{i}.dcm") for i in range(3)]
    calls: list[int] = []

    class Buggy(HeaderReader):
        __slots__ = ()

        def finish(self) -> InstanceAttributes:
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("a bug")
            return super().finish()

    monkeypatch.setattr(store_service, "HeaderReader", Buggy)
    data = tmp_path / "data"
    with caplog.at_level(logging.INFO, logger="archive.import"):
        assert main(["import", "--data", str(data), "-j", "1", str(folder)]) == 5
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("imported 2, failed 1, skipped 0 of 3 file(s); ")
    assert lines[1:] == [
        f"failed: {folder / '1.dcm'}  {uids[1]}  internal error: RuntimeError: a bug (logged)"
    ]
    (record,) = [r for r in caplog.records if r.name == "archive.import"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == f"instance {uids[1]} not imported: unexpected RuntimeError"
    # The error's own text may quote the path: its traceback goes at DEBUG only.
    assert record.exc_info is None
    assert [stored_path(data, uid).exists() for uid in uids] == [True, False, True]
    assert_consistent(data, capsys)
