"""``archive store`` as a command: its flags, an interrupted run, a file the peer
aborts on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from archive.cli import main
from archive.config import MAX_PDU_LENGTH_RANGE
from archive.dicom.filemeta import FileMeta
from archive.net import AssociationAborted, AssociationTimeout
from archive.progress import Progress
from archive.scu import Cause, FileItem, Kind, Report, StoreOptions
from archive.scu.store import Group, _GroupSender
from tests.conftest import RunningNode
from tests.test_cli_store import make_instance, run_storescp, stored_path

LOW, HIGH = MAX_PDU_LENGTH_RANGE


@pytest.mark.parametrize("value", ["-1", "1", "12", str(LOW - 1), str(HIGH + 1)])
def test_max_pdu_outside_the_range_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """1 or 12 were accepted, and made an association no peer could use."""
    assert main(["store", "--max-pdu", value, "127.0.0.1", "104", "somewhere"]) == 1
    assert capsys.readouterr().err == (
        f"archive store: --max-pdu must be 0 (no limit) or {LOW} to {HIGH}, got {value}\n"
    )


@pytest.mark.parametrize("value", [0, LOW, HIGH])
def test_max_pdu_in_the_range_is_used(
    value: int, node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.dcm"
    uid = make_instance(path)
    argv = ["store", "--max-pdu", str(value), "--aec", "ARCHIVE", node.host, str(node.port)]
    assert main([*argv, str(path)]) == 0, capsys.readouterr()
    assert stored_path(node.config.node.data_dir, uid).exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("-j", "0", "-j must be at least 1"), ("--timeout", "0", "--timeout must be positive")],
)
def test_jobs_and_timeout_say_what_is_wrong(
    flag: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["store", flag, value, "127.0.0.1", "104", "somewhere"]) == 1
    assert capsys.readouterr().err == f"archive store: {message}, got {value}\n"


# ---- a file the peer aborts on ---------------------------------------------------------------


@pytest.fixture
def parsing_storescp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """DCMTK storescp reading each data set as it arrives (no ``--bit-preserving``),
    so that one it cannot parse gets an A-ABORT; its port and output folder."""
    yield from run_storescp(tmp_path)


@pytest.mark.interop
def test_a_file_the_peer_aborts_on_twice_is_that_files_failure(
    parsing_storescp: tuple[int, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DCMTK's storescp A-ABORTs on a data set it cannot parse (here an item tag
    where an element should be: our SCU leaves that to the peer; one cut short it
    no longer sends whole). The file goes again on a new association (the first
    abort may have been the network's), and when that is aborted too it is the
    file's failure (exit 5), not the network's (exit 3); the other files are sent."""
    port, out_dir = parsing_storescp
    folder = tmp_path / "in"
    uids = [make_instance(folder / f"{i}.dcm", pixels=4096) for i in range(3)]
    cut = folder / "1.dcm"
    cut.write_bytes(cut.read_bytes() + b"\xfe\xff\x00\xe0\x04\x00\x00\x00ABCD")
    status = main(["store", "--aec", "STORESCP", "127.0.0.1", str(port), str(folder)])
    lines = capsys.readouterr().out.splitlines()
    assert status == 5, lines
    assert lines[0].startswith("sent 2, failed 1, skipped 0 of 3 file(s); ")
    assert lines[1:] == [
        f"failed: {cut}  {uids[1]}  the peer aborted the association twice while this file"
        " was sent; the file may be malformed (association aborted by the peer"
        " (source 0, reason 0))"
    ]
    received = {pydicom.dcmread(path).SOPInstanceUID for path in out_dir.iterdir()}
    assert received == {uids[0], uids[2]}


@pytest.mark.parametrize(
    ("second", "by_peer", "on_data", "cause"),
    [
        (AssociationAborted("association aborted by the peer"), True, True, Cause.FILE),
        (AssociationAborted("association aborted by the peer"), True, False, Cause.NETWORK),
        (AssociationAborted("association ended: connection closed"), False, True, Cause.NETWORK),
        (AssociationTimeout("no response within 1 s"), False, True, Cause.TIMEOUT),
    ],
)
def test_only_two_aborts_by_the_peer_blame_the_file(
    tmp_path: Path, second: Exception, by_peer: bool, on_data: bool, cause: Cause
) -> None:
    """After a first A-ABORT from the peer on the file's data, and another file
    answered since, a second such abort blames the file; a lost connection or a
    timeout on the retry is still the network's; so is an abort before any of
    the file's data set went out (``on_data`` False: the peer's, after the file
    before)."""
    item, report, sender = one_file_sender(tmp_path)
    first = AssociationAborted("association aborted by the peer")
    sender._retry_or_fail(item, first, by_peer=True, on_data=True)
    assert sender.queue.get_nowait() is item  # retried
    assert report.results == []
    sender.answered += 1  # another file, taken meanwhile
    sender._retry_or_fail(item, second, by_peer=by_peer, on_data=on_data)
    assert sender.queue.empty()
    (result,) = report.results
    assert (result.kind, result.cause) == (Kind.FAILED, cause)


@pytest.mark.parametrize(("answered_next", "cause"), [(True, Cause.FILE), (False, Cause.NETWORK)])
def test_two_aborts_with_no_answer_between_are_judged_by_what_follows(
    tmp_path: Path, answered_next: bool, cause: Cause
) -> None:
    """Aborted twice on its data with no file answered in between (the retry
    went first on the next association): the file's fault if the peer then
    takes another file, the peer's if it takes none (a peer that took some
    files and now aborts every association)."""
    item, report, sender = one_file_sender(tmp_path)
    abort = AssociationAborted("association aborted by the peer")
    sender._retry_or_fail(item, abort, by_peer=True, on_data=True)
    assert sender.queue.get_nowait() is item
    sender._retry_or_fail(item, abort, by_peer=True, on_data=True)
    assert report.results == []  # not judged yet
    sender._judge(files_fault=answered_next)
    (result,) = report.results
    assert (result.kind, result.cause) == (Kind.FAILED, cause)


def one_file_sender(tmp_path: Path) -> tuple[FileItem, Report, _GroupSender]:
    """A group sender of one file, taken off its queue, its peer having answered one."""
    meta = FileMeta(
        media_storage_sop_class_uid="1.2.3",
        media_storage_sop_instance_uid="1.2.3.4",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    item = FileItem(tmp_path / "a.dcm", meta, 0, 0)
    report = Report()
    sender = _GroupSender(
        StoreOptions(host="127.0.0.1", port=104), Group([], [item]), report, Progress(1)
    )
    sender.queue.get_nowait()
    sender.answered = 1
    return item, report, sender
