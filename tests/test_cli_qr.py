"""``archive find/move/get/pull`` against our own node (and a second node as destination).

The CLI runs in-process (``main([...])``) against nodes on 127.0.0.1 holding
instances sent first with ``archive store``. Output is checked exactly: JSON in
the DICOM JSON model, table lines, summary lines, exit statuses. Retrieved
instances are compared with the sent files on the data set bytes (what follows
the File Meta), which is what a C-STORE carries. The identifier helpers are
checked against pydicom as an oracle.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

import archive.scu.get as get_module
from archive.cli import main
from archive.dicom.dataset import Element, decode_dataset, encode_dataset
from archive.dicom.dimse import CStoreRq
from archive.dicom.query_keys import Level
from archive.dicom.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE
from archive.progress import SubOperationBar
from archive.scu.identifier import (
    QueryKey,
    QueryKeyError,
    build_identifier,
    character_set,
    columns,
    parse_key,
    parse_keys,
    table,
    to_dicom_json,
    with_defaults,
)
from tests.conftest import RunningNode
from tests.interop.conftest import free_port
from tests.test_cli_store import dataset_bytes, make_instance, stored_path

STUDY_1 = "1.2.826.0.1.3680043.8.498.1"
STUDY_2 = "1.2.826.0.1.3680043.8.498.2"
SERIES_1 = STUDY_1 + ".1"
SERIES_2 = STUDY_2 + ".1"


def _store(node: RunningNode, paths: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["store", "--aec", node.ae_title, node.host, str(node.port), *map(str, paths)]
    assert main(args) == 0
    capsys.readouterr()


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    """Three instances: two in study 1 (patient P1), one in study 2 (patient P2)."""
    folder = tmp_path / "sources"
    out = {}
    for n, (study, series, patient) in enumerate(
        [(STUDY_1, SERIES_1, "P1"), (STUDY_1, SERIES_1, "P1"), (STUDY_2, SERIES_2, "P2")], 1
    ):
        uid = f"{series}.{n}"
        make_instance(
            folder / f"{n}.dcm",
            sop_instance_uid=uid,
            study=study,
            series=series,
            patient=patient,
            pixels=64 * n,
        )
        out[uid] = folder / f"{n}.dcm"
    return out


@pytest.fixture
def loaded(
    node: RunningNode, sources: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> RunningNode:
    _store(node, list(sources.values()), capsys)
    return node


def _target(node: RunningNode) -> str:
    return f"{node.ae_title}@{node.host}:{node.port}"


def _pn(text: str) -> dict[str, Any]:
    return {"vr": "PN", "Value": [{"Alphabetic": text}]}


# ---- find --------------------------------------------------------------------------------


def test_find_json_is_the_dicom_json_model(
    loaded: RunningNode, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["find", _target(loaded), "--json", "-k", "PatientID=P1", "-k", "PatientName"]
    assert main([*args, "-k", "(0020,000D)", "-k", "00201208"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "00080052": {"vr": "CS", "Value": ["STUDY"]},
            "00080054": {"vr": "AE", "Value": ["ARCHIVE"]},
            "00100010": _pn("Test^P1"),
            "00100020": {"vr": "LO", "Value": ["P1"]},
            "0020000D": {"vr": "UI", "Value": [STUDY_1]},
            "00201208": {"vr": "IS", "Value": [2]},
        }
    ]


def test_find_table_adds_default_return_keys(
    loaded: RunningNode, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["find", _target(loaded), "--table", "-k", "PatientID=P*"]) == 0
    header = (
        "PatientID  PatientName  StudyDate  StudyDescription  AccessionNumber  "
        "ModalitiesInStudy  NumberOfStudyRelatedInstances  StudyInstanceUID"
    )
    pad = " " * len("StudyDate  StudyDescription  AccessionNumber  ")
    assert capsys.readouterr().out.splitlines() == [
        header,
        f"P1         Test^P1      {pad}OT                 2                              {STUDY_1}",
        f"P2         Test^P2      {pad}OT                 1                              {STUDY_2}",
        "2 match(es)",
    ]


def test_find_series_level_by_host_and_port(
    loaded: RunningNode, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["find", loaded.host, str(loaded.port), "--aec", "ARCHIVE", "-L", "series"]
    args += ["--json", "--no-default-keys", "-k", f"StudyInstanceUID={STUDY_1}"]
    assert main([*args, "-k", "SeriesInstanceUID", "-k", "NumberOfSeriesRelatedInstances"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "00080052": {"vr": "CS", "Value": ["SERIES"]},
            "00080054": {"vr": "AE", "Value": ["ARCHIVE"]},
            "0020000D": {"vr": "UI", "Value": [STUDY_1]},
            "0020000E": {"vr": "UI", "Value": [SERIES_1]},
            "00201209": {"vr": "IS", "Value": [2]},
        }
    ]


def test_find_patient_level_needs_patient_root(
    loaded: RunningNode, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["find", _target(loaded), "-L", "PATIENT", "--json"]) == 1
    assert "PATIENT level needs the Patient Root model (-P)" in capsys.readouterr().err
    args = ["find", _target(loaded), "-P", "-L", "PATIENT", "--json", "--no-default-keys"]
    assert main([*args, "-k", "PatientID=P2", "-k", "NumberOfPatientRelatedStudies"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {
            "00080052": {"vr": "CS", "Value": ["PATIENT"]},
            "00080054": {"vr": "AE", "Value": ["ARCHIVE"]},
            "00100020": {"vr": "LO", "Value": ["P2"]},
            "00201200": {"vr": "IS", "Value": [1]},
        }
    ]


def test_find_by_a_key_inside_a_sequence(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-k Sequence[0].Keyword=value`` (findscu's form): Sequence Matching on the
    node; the table shows the key's values in every item returned."""
    paths = []
    for n, procedure in enumerate(["RP7", "RP8"], 1):
        path = tmp_path / f"{n}.dcm"
        make_instance(path, study="1.2.9", series=f"1.2.9.{n}", patient="P9")
        ds = pydicom.dcmread(path)
        order = Dataset()
        order.RequestedProcedureID = procedure
        order.AccessionNumber = f"ACC-{n}"
        ds.RequestAttributesSequence = [order]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    _store(node, paths, capsys)
    args = ["find", _target(node), "-L", "SERIES", "--table", "--no-default-keys"]
    args += [
        "-k",
        "SeriesInstanceUID",
        "-k",
        "RequestAttributesSequence[0].RequestedProcedureID=RP8",
    ]
    assert main([*args, "-k", "RequestAttributesSequence[0].AccessionNumber"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "SeriesInstanceUID  RequestAttributesSequence.RequestedProcedureID"
        "  RequestAttributesSequence.AccessionNumber",
        "1.2.9.2            RP8                                             ACC-2",
        "1 match(es)",
    ]
    args = ["find", _target(node), "-L", "SERIES", "--json", "--no-default-keys"]
    assert main([*args, "-k", "SeriesInstanceUID=1.2.9.1", "-k", "RequestAttributesSequence"]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    (item,) = found["00400275"]["Value"]
    assert item["00401001"] == {"vr": "SH", "Value": ["RP7"]}
    assert item["00080050"] == {"vr": "SH", "Value": ["ACC-1"]}


def test_find_no_match_is_success(loaded: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["find", _target(loaded), "--json", "-k", "PatientID=NOBODY"]) == 0
    assert capsys.readouterr().out == "[]\n"


def test_find_failure_status_exits_5(
    node_factory: Callable[..., RunningNode],
    sources: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    node = node_factory(toml="[query]\nmax_matches = 1\n")
    _store(node, list(sources.values()), capsys)
    assert main(["find", _target(node), "--json", "-k", "StudyInstanceUID"]) == 5
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 1
    assert captured.err.startswith("archive find: C-FIND status 0xA700")


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("NoSuchKeyword=1", "'NoSuchKeyword' is not a DICOM keyword or tag"),
        ("ReferencedStudySequence=1.2", "a sequence takes keys inside it, not a value"),
        ("PatientID[0].PatientName=X", "(0010,0020) is not a sequence"),
        ("RequestAttributesSequence[1].RequestedProcedureID=1", "has one item, [0]"),
        ("RequestAttributesSequence[0].Nothing=1", "'Nothing' is not a DICOM keyword"),
        ("ProcedureCodeSequence.QueryRetrieveLevel=IMAGE", "belongs to the identifier itself"),
        ("ProcedureCodeSequence.SpecificCharacterSet", "belongs to the identifier itself"),
        ("(0009,0010)=X", "private and unknown tags are not supported"),
        ("QueryRetrieveLevel=FRAME", "is not PATIENT, STUDY, SERIES or IMAGE"),
    ],
)
def test_find_bad_keys_are_usage_errors(
    key: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Refused before any connection: the port is never dialled.
    assert main(["find", "127.0.0.1", "9", "-k", key]) == 1
    assert message in capsys.readouterr().err


def test_find_association_failures(node: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["find", node.host, str(node.port), "--aec", "WRONG", "--json"]) == 2
    assert "association rejected" in capsys.readouterr().err
    port = free_port()
    assert main(["find", "127.0.0.1", str(port), "--json", "--timeout", "5"]) == 3
    assert f"cannot connect to 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["find", "NOT-A-PEER"]) == 1
    assert "PEER" in capsys.readouterr().err


def test_ctrl_c_during_find_cancels_and_exits_130(
    node: RunningNode,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = [
        tmp_path / f"{n}.dcm"
        for n in range(40)
        if make_instance(tmp_path / f"{n}.dcm", study=f"1.2.3.{n}", series=f"1.2.3.{n}.1")
    ]
    _store(node, paths, capsys)
    seen: list[dict[str, Any]] = []
    real = to_dicom_json

    def on_first_match(elements: Any, **kw: Any) -> dict[str, Any]:
        if not seen:
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C would
        seen.append(real(elements, **kw))
        return seen[-1]

    monkeypatch.setattr("archive.scu.query.to_dicom_json", on_first_match)
    assert main(["find", _target(node), "--json", "-k", "StudyInstanceUID"]) == 130
    captured = capsys.readouterr()
    matches = len(json.loads(captured.out))
    assert 1 <= matches == len(seen) <= 40
    # The node ends the C-FIND with Cancel (0xFE00, PS3.4 C.4.1.2.3) unless it had
    # already sent every match when the C-CANCEL-RQ arrived.
    finals = ["0xFE00"] if matches < 40 else ["0xFE00", "0x0000"]
    assert captured.err in [
        f"archive find: interrupted (C-CANCEL sent; final status {final})\n" for final in finals
    ]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["find", "--json"], "archive find: interrupted before the peer accepted the association"),
        (["move", "--dest", "X", "-k", "StudyInstanceUID=1.2"], "archive move: interrupted"),
        (["get", "-k", "StudyInstanceUID=1.2"], "archive get: interrupted"),
        (["pull", "-k", "PatientID=X"], "archive pull: interrupted"),
        (["echo"], "archive echo: interrupted"),
    ],
)
def test_ctrl_c_while_the_peer_has_not_answered_the_association_exits_130(
    command: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A peer that takes the connection and never answers the A-ASSOCIATE-RQ: Ctrl-C
    was only heeded once an operation could be cancelled, so every command waited
    out its whole timeout (and echo ended in a traceback; review). It stops now."""
    import socket
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever answers
        port = str(silent.getsockname()[1])
        name, *rest = command
        if name == "get":
            rest = [*rest, "--out", str(tmp_path / "got")]
        # pull takes one PEER argument, AET@HOST:PORT; the others HOST PORT.
        peer = [f"SILENT@127.0.0.1:{port}"] if name == "pull" else ["127.0.0.1", port]
        timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
        started = time.monotonic()
        timer.start()
        try:
            code = main([name, *peer, "--timeout", "20", *rest])
        finally:
            timer.cancel()
        elapsed = time.monotonic() - started
    assert code == 130
    assert elapsed < 10, elapsed
    assert message in capsys.readouterr().err


def test_find_prints_the_matches_it_had_when_the_peer_aborts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One match, then an A-ABORT: the match was dropped with the error, and a long
    query cut short near its end printed nothing (review). The matches received
    are printed, then the error, with its exit status."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    def on_find(event: Any) -> Any:
        match = Dataset()
        match.QueryRetrieveLevel = "STUDY"
        match.StudyInstanceUID = "1.2.3.4"
        yield 0xFF00, match
        event.assoc.abort()

    ae = AE(ae_title="ABORTER")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    server = ae.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)]
    )
    try:
        port = str(server.server_address[1])
        code = main(["find", "127.0.0.1", port, "--json", "--timeout", "10",
                     "-k", "StudyInstanceUID"])  # fmt: skip
    finally:
        server.shutdown()
    captured = capsys.readouterr()
    assert code == 3, captured.err
    assert [m["0020000D"]["Value"] for m in json.loads(captured.out)] == [["1.2.3.4"]]
    assert captured.err.startswith("archive find: association aborted")


def test_get_says_what_it_wrote_when_the_peer_aborts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One C-STORE sub-operation, then an A-ABORT: the file was on disk but the
    output was the error alone (review). The counts and files so far come first;
    no Pending status is called final."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet

    instance = tmp_path / "ct.dcm"
    make_instance(instance, study="1.2.3", series="1.2.3.1")
    ds = pydicom.dcmread(instance)

    def on_get(event: Any) -> Any:
        yield 2  # sub-operations to come
        yield 0xFF00, ds
        event.assoc.abort()

    ae = AE(ae_title="ABORTER")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_supported_context(CTImageStorage, scu_role=True, scp_role=True)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_GET, on_get)])
    out = tmp_path / "got"
    try:
        port = str(server.server_address[1])
        code = main(["get", "127.0.0.1", port, "--timeout", "10", "--out", str(out),
                     "-k", "StudyInstanceUID=1.2.3"])  # fmt: skip
    finally:
        server.shutdown()
    captured = capsys.readouterr()
    assert code == 3, captured.err
    assert f"wrote 1 file(s) to {out}" in captured.out
    assert "no final status" in captured.out
    assert "0xFF00" not in captured.out + captured.err
    assert captured.err.startswith("archive get: association aborted")
    assert len(list(out.rglob("*.dcm"))) == 1


# ---- move ---------------------------------------------------------------------------------


def test_move_to_a_second_node(
    node_factory: Callable[..., RunningNode],
    sources: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    dest = node_factory(ae_title="DEST")
    source = node_factory(
        toml=f'[[peers]]\nae_title = "DEST"\nhost = "127.0.0.1"\nport = {dest.port}\n'
    )
    _store(source, list(sources.values()), capsys)
    args = ["move", _target(source), "--dest", "DEST", "-k", f"StudyInstanceUID={STUDY_1}"]
    assert main(args) == 0
    assert capsys.readouterr().out == (
        f"C-MOVE from ARCHIVE@127.0.0.1:{source.port} to DEST: status 0x0000 (success);"
        " completed 2, failed 0, warning 0\n"
    )
    for uid, path in sources.items():
        stored = stored_path(dest.config.node.data_dir, uid)
        if uid.startswith(SERIES_1):
            assert dataset_bytes(stored) == dataset_bytes(path)
        else:
            assert not stored.exists()


def test_move_to_unknown_destination_exits_5(
    loaded: RunningNode, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["move", _target(loaded), "--dest", "NOWHERE", "-k", f"StudyInstanceUID={STUDY_1}"]
    assert main(args) == 5
    captured = capsys.readouterr()
    assert captured.out.startswith(
        f"C-MOVE from ARCHIVE@127.0.0.1:{loaded.port} to NOWHERE: status 0xA801"
        " (move destination unknown)"
    )
    assert captured.err == "archive move: the peer does not know NOWHERE as a move destination\n"


# ---- get ----------------------------------------------------------------------------------


def test_get_writes_byte_identical_part10_files(
    loaded: RunningNode,
    sources: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "got"
    args = ["get", _target(loaded), "--out", str(out), "-k", f"StudyInstanceUID={STUDY_1}"]
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"C-GET from ARCHIVE@127.0.0.1:{loaded.port}: status 0x0000 (success);"
        " completed 2, failed 0, warning 0",
        f"wrote 2 file(s) to {out}",
    ]
    wanted = {uid: path for uid, path in sources.items() if uid.startswith(SERIES_1)}
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{uid}.dcm" for uid in wanted)
    for uid, path in wanted.items():
        written = out / f"{uid}.dcm"
        assert dataset_bytes(written) == dataset_bytes(path)
        meta = pydicom.dcmread(written).file_meta
        assert meta.MediaStorageSOPInstanceUID == uid
        assert meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert meta.TransferSyntaxUID == EXPLICIT_VR_LE
        assert meta.SourceApplicationEntityTitle == "ARCHIVE"


def test_get_write_failure_answers_out_of_resources(
    loaded: RunningNode,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def full(self: Any, chunks: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(get_module._PartFile, "_write", full)
    out = tmp_path / "got"
    args = ["get", _target(loaded), "--out", str(out), "-k", f"StudyInstanceUID={STUDY_2}"]
    assert main(args) == 5
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"C-GET from ARCHIVE@127.0.0.1:{loaded.port}: status 0xA702 (out of resources:"
        " unable to perform sub-operations); completed 0, failed 1, warning 0",
        f"wrote 0 file(s) to {out}",
        f"  failed: {SERIES_2}.3",
    ]
    assert list(out.iterdir()) == []


def test_get_refuses_a_uid_that_is_not_a_file_name(tmp_path: Path) -> None:
    async def nothing() -> Any:
        yield memoryview(b"")

    request = CStoreRq(message_id=1, affected_sop_class_uid="1.2", affected_sop_instance_uid="../x")
    saving = get_module.save_instance(tmp_path, request, EXPLICIT_VR_LE, nothing())
    with pytest.raises(ValueError, match="not usable as a file name"):
        asyncio.run(saving)
    assert list(tmp_path.iterdir()) == []


def test_get_contexts_fit_in_one_association() -> None:
    contexts, roles = get_module.get_contexts(
        get_module.QueryModel.STUDY_ROOT, ["1.2.840.10008.5.1.4.1.1.2", "1.2.3.4"]
    )
    assert contexts[0] == ("1.2.840.10008.5.1.4.1.2.2.3", [EXPLICIT_VR_LE, IMPLICIT_VR_LE])
    assert len(contexts) == len(get_module.GET_SOP_CLASSES) + 2 <= 128
    assert contexts[-1] == ("1.2.3.4", list(get_module.GET_TRANSFER_SYNTAXES))
    assert [(r.sop_class_uid, r.scu_role, r.scp_role) for r in roles] == [
        (uid, False, True) for uid, _ in contexts[1:]
    ]


# ---- pull ---------------------------------------------------------------------------------


def test_pull_with_serve_brings_the_studies_in(
    loaded: RunningNode,
    node_factory: Callable[..., RunningNode],
    sources: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    source = node_factory(
        toml=f'[[peers]]\nae_title = "PULLER"\nhost = "127.0.0.1"\nport = {port}\n',
        data_dir=loaded.config.node.data_dir + "-copy",
    )
    _store(source, list(sources.values()), capsys)
    data = tmp_path / "pulled"
    args = ["pull", _target(source), "--aet", "PULLER", "--serve", "--port", str(port)]
    assert main([*args, "--host", "127.0.0.1", "--data", str(data), "-k", "PatientID=P*"]) == 0
    assert capsys.readouterr().out == (
        f"pulled 2 of 2 study(ies) from ARCHIVE@127.0.0.1:{source.port} to PULLER:"
        " completed 3, failed 0, warning 0 instance(s)\n"
    )
    for uid, path in sources.items():
        assert dataset_bytes(stored_path(data, uid)) == dataset_bytes(path)


def test_pull_when_the_peer_does_not_know_us(
    loaded: RunningNode, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull", _target(loaded), "--aet", "STRANGER", "-k", "PatientID=P1"]) == 5
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"pulled 0 of 1 study(ies) from ARCHIVE@127.0.0.1:{loaded.port} to STRANGER:"
        " completed 0, failed 0, warning 0 instance(s)",
        f"  study {STUDY_1}: status 0xA801 (move destination unknown):"
        " move destination 'STRANGER' unknown; completed 0, failed 0, warning 0",
    ]
    assert "ARCHIVE does not know STRANGER as a move destination" in captured.err


def test_pull_no_matching_study(loaded: RunningNode, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pull", _target(loaded), "-k", "PatientID=NOBODY"]) == 0
    assert capsys.readouterr().out == f"no matching studies on ARCHIVE@127.0.0.1:{loaded.port}\n"


def test_pull_names_what_it_did_not_ask_for(capsys: pytest.CaptureFixture[str]) -> None:
    """Three matches: one without a Study Instance UID, two studies; the first
    C-MOVE answered A801, which stops the pull. The match without a UID was dropped
    in silence and the study after the A801 was not named (review): both are
    listed now, and a match without a UID keeps the exit status at 5."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
    )

    def on_find(event: Any) -> Any:
        for uid in (None, "1.2.3.1", "1.2.3.2"):
            match = Dataset()
            match.QueryRetrieveLevel = "STUDY"
            if uid is not None:
                match.StudyInstanceUID = uid
            yield 0xFF00, match

    def on_move(event: Any) -> Any:
        yield None, None  # the destination is unknown: pynetdicom answers 0xA801

    ae = AE(ae_title="PEER")
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    handlers = [(evt.EVT_C_FIND, on_find), (evt.EVT_C_MOVE, on_move)]
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    try:
        port = server.server_address[1]
        code = main(["pull", f"PEER@127.0.0.1:{port}", "--timeout", "10", "-k", "PatientID=X"])
    finally:
        server.shutdown()
    out = capsys.readouterr().out
    assert code == 5
    assert "pulled 0 of 2 study(ies)" in out
    assert "  study 1.2.3.1: status 0xA801" in out
    assert "  study 1.2.3.2: not asked for" in out
    assert "  1 match(es) without a Study Instance UID: not pulled" in out


# ---- identifiers (pure) ---------------------------------------------------------------------


def test_parse_key_forms() -> None:
    assert parse_key("PatientID=P1") == QueryKey(0x00100020, "LO", "P1")
    assert parse_key("PatientID") == QueryKey(0x00100020, "LO", None)
    assert parse_key("PatientID=") == QueryKey(0x00100020, "LO", "")
    assert parse_key("(0010,0020)=x=y") == QueryKey(0x00100020, "LO", "x=y")
    assert parse_key("0010,0020") == QueryKey(0x00100020, "LO", None)
    assert parse_key("00100010=A*") == QueryKey(0x00100010, "PN", "A*")
    assert parse_keys(["PatientID=1", "StudyDate", "PatientID=2"]) == [
        QueryKey(0x00080020, "DA", None),
        QueryKey(0x00100020, "LO", "2"),
    ]
    with pytest.raises(QueryKeyError, match="not an identifier attribute"):
        parse_key("TransferSyntaxUID")


def test_parse_key_inside_sequences() -> None:
    request, rp_id, protocol = 0x00400275, 0x00401001, 0x00400008
    assert parse_key("RequestAttributesSequence[0].RequestedProcedureID=RP1") == QueryKey(
        rp_id, "SH", "RP1", (request,)
    )
    assert parse_key("(0040,0275).00401001") == QueryKey(rp_id, "SH", None, (request,))
    nested = parse_key("RequestAttributesSequence.ScheduledProtocolCodeSequence[0].CodeValue=P")
    assert nested == QueryKey(0x00080100, "SH", "P", (request, protocol))
    assert nested.name == "RequestAttributesSequence.ScheduledProtocolCodeSequence.CodeValue"
    assert parse_key("RequestAttributesSequence") == QueryKey(request, "SQ", None)
    # The same keyword at the top and inside a sequence are two keys.
    keys = parse_keys(["AccessionNumber=A", "RequestAttributesSequence.AccessionNumber=B"])
    assert [(k.path, k.value) for k in keys] == [((), "A"), ((request,), "B")]


def test_keys_inside_one_sequence_share_its_one_item() -> None:
    keys = parse_keys(
        [
            "RequestAttributesSequence[0].RequestedProcedureID=RP*",
            "RequestAttributesSequence.ScheduledProtocolCodeSequence.CodeValue=P1",
            "RequestAttributesSequence.AccessionNumber",
            "ProcedureCodeSequence",
            "SeriesInstanceUID",
        ]
    )
    ds = _explicit(build_identifier(keys, Level.SERIES))
    (order,) = ds.RequestAttributesSequence
    assert order.RequestedProcedureID == "RP*"
    assert order.AccessionNumber == ""
    (protocol,) = order.ScheduledProtocolCodeSequence
    assert protocol.CodeValue == "P1"
    assert ds.ProcedureCodeSequence == []
    assert ds.SeriesInstanceUID == ""
    # The sequence is given, so the level's default return keys are still added
    # only when every key matches; a key inside a sequence is not mistaken for its
    # top-level namesake.
    defaults = with_defaults(
        parse_keys(["RequestAttributesSequence.AccessionNumber=A"]), Level.STUDY
    )
    assert "AccessionNumber" in [k.name for k in defaults]


def test_table_cell_of_a_key_inside_a_sequence_lists_every_item() -> None:
    keys = parse_keys(["RequestAttributesSequence.RequestedProcedureID", "PatientID"])
    row = {
        "00100020": {"vr": "LO", "Value": ["P1"]},
        "00400275": {
            "vr": "SQ",
            "Value": [
                {"00401001": {"vr": "SH", "Value": ["RP7"]}},
                {},
                {"00401001": {"vr": "SH", "Value": ["RP8"]}},
            ],
        },
    }
    assert table(columns(keys), [row, {}]) == [
        "RequestAttributesSequence.RequestedProcedureID  PatientID",
        "RP7\\\\RP8".ljust(len("RequestAttributesSequence.RequestedProcedureID  ")) + "P1",
        "",
    ]


def _explicit(elements: list[Element]) -> Dataset:
    data = encode_dataset(elements, EXPLICIT_VR_LE)
    ds = read_dataset(io.BytesIO(data), is_implicit_VR=False, is_little_endian=True)
    ds.decode()
    return ds


def test_build_identifier_bytes() -> None:
    keys = parse_keys(["PatientName=Müller^Hans", "StudyDate", "Rows=512"])
    terms = character_set(keys, None)
    assert terms == ("ISO_IR 192",)
    data = encode_dataset(build_identifier(keys, Level.STUDY, terms), IMPLICIT_VR_LE)
    assert data == (
        b"\x08\x00\x05\x00\x0a\x00\x00\x00ISO_IR 192"
        b"\x08\x00\x20\x00\x00\x00\x00\x00"
        b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "
        b"\x10\x00\x10\x00\x0c\x00\x00\x00M\xc3\xbcller^Hans"
        b"\x28\x00\x10\x00\x02\x00\x00\x00\x00\x02"
    )
    latin = build_identifier(keys, Level.STUDY, character_set(keys, "ISO_IR 100"))
    assert Element(0x00100010, "PN", b"M\xfcller^Hans") in latin
    assert Element(0x00080005, "CS", b"ISO_IR 100") in latin
    with pytest.raises(QueryKeyError, match="PatientName"):
        build_identifier(keys, Level.STUDY, ())
    # Inside a sequence, the error names the key's whole path.
    inner = parse_keys(["RequestAttributesSequence.ScheduledProcedureStepDescription=Knie ä"])
    with pytest.raises(QueryKeyError, match=r"^RequestAttributesSequence\.ScheduledProcedure"):
        build_identifier(inner, Level.SERIES, ())


def test_default_keys_only_with_matching_keys_only() -> None:
    given = parse_keys(["Modality=CT"])
    assert [k.name for k in with_defaults(given, Level.SERIES)] == [
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
        "SeriesInstanceUID",
    ]
    own = parse_keys(["Modality=CT", "SeriesDate"])
    assert with_defaults(own, Level.SERIES) == own


def _oracle(ds: Dataset) -> tuple[dict[str, Any], dict[str, Any]]:
    """Our JSON of pydicom's encoding of ``ds``, and pydicom's own JSON of it."""
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    ours = to_dicom_json(decode_dataset(buffer.getvalue(), EXPLICIT_VR_LE))
    return ours, ds.to_json_dict()


def test_dicom_json_matches_pydicom() -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Hans"
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.NumberOfStudyRelatedInstances = 12
    ds.SliceThickness = "2.5"
    ds.Rows = 512
    ds.PixelSpacing = ["0.5", "0.25"]
    ds.StudyInstanceUID = "1.2.3"
    ds.StudyDescription = ""
    ds.EncapsulatedDocument = b"\x01\x02"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4"
    ds.ReferencedStudySequence = [item]
    ours, theirs = _oracle(ds)
    assert ours == theirs


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.text(
            st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\^=*?"),
            min_size=1,
            max_size=20,
        ).filter(lambda s: s.strip(" ") == s),
        min_size=1,
        max_size=3,
    )
)
def test_identifier_round_trip(values: list[str]) -> None:
    text = "\\".join(values)
    keys = [QueryKey(0x00081030, "LO", text)]  # StudyDescription: multi-valued text
    terms = character_set(keys, None)
    data = encode_dataset(build_identifier(keys, Level.STUDY, terms), EXPLICIT_VR_LE)
    decoded = to_dicom_json(decode_dataset(data, EXPLICIT_VR_LE))
    assert decoded["00081030"] == {"vr": "LO", "Value": values}


def test_sub_operation_bar_draws_on_a_terminal_only() -> None:
    assert SubOperationBar.line(3, 1, 0, 8, "study 1/2  ") == (
        "study 1/2  [############............] 4/8 instances  completed 3, failed 1, warning 0"
    )
    assert SubOperationBar.line(2, 0, 1, None) == "3 instances  completed 2, failed 0, warning 1"
    terminal = io.StringIO()
    bar = SubOperationBar(terminal, enabled=True)
    assert bar.due(force=True)
    bar.draw("first")
    assert not bar.due()  # within the redraw interval
    bar.close()
    assert terminal.getvalue() == "\rfirst\x1b[K\r\x1b[K"
    piped = io.StringIO()  # not a terminal
    bar = SubOperationBar(piped)
    assert not bar.due(force=True)
    bar.update(1, 0, 0, 2)
    bar.close()
    assert piped.getvalue() == ""
    drawn = io.StringIO()
    with SubOperationBar(drawn, enabled=True) as bar:
        bar.update(1, 0, 0, 2)
        bar.update(2, 0, 0, 2)  # within the redraw interval
    line = "[############............] 1/2 instances  completed 1, failed 0, warning 0"
    assert drawn.getvalue() == f"\r{line}\x1b[K\r\x1b[K"


def test_pull_progress_counts_and_total(
    loaded: RunningNode,
    node_factory: Callable[..., RunningNode],
    sources: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The running totals a pull reports after each response: done never falls,
    and the expected total is the C-FIND's estimate made exact by the moves."""
    from archive.scu.pull import pull_studies
    from archive.scu.query import QueryOptions

    port = free_port()
    source = node_factory(
        toml=f'[[peers]]\nae_title = "PULLER"\nhost = "127.0.0.1"\nport = {port}\n',
        data_dir=loaded.config.node.data_dir + "-progress",
    )
    _store(source, list(sources.values()), capsys)
    node_factory(port=port, ae_title="PULLER", data_dir=loaded.config.node.data_dir + "-dest")
    seen: list[tuple[int, int | None]] = []
    report = asyncio.run(
        pull_studies(
            QueryOptions(host="127.0.0.1", port=source.port, calling_ae="PULLER",
                         called_ae="ARCHIVE"),
            parse_keys(["PatientID=P*"]),
            "PULLER",
            on_progress=lambda r, total: seen.append((r.completed + r.failed + r.warning, total)),
        )
    )  # fmt: skip
    assert report.ok
    assert (report.completed, report.failed, report.warning) == (len(sources), 0, 0)
    assert seen
    done = [d for d, _ in seen]
    assert done == sorted(done)
    assert all(total == len(sources) for _, total in seen)


def test_get_cancelled_mid_instance_leaves_no_part_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while a thread is still creating the .part file: it is removed all the same."""
    entered, release, opened = threading.Event(), threading.Event(), threading.Event()
    real_open = Path.open

    def slow_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name.endswith(".part"):
            entered.set()
            release.wait(10)
            try:
                return real_open(self, *args, **kwargs)
            finally:
                opened.set()
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", slow_open)

    async def fragments() -> Any:
        yield memoryview(bytes(get_module.WRITE_BATCH))  # a write job starts
        await asyncio.Event().wait()  # the rest never comes

    request = CStoreRq(
        message_id=1, affected_sop_class_uid="1.2", affected_sop_instance_uid="1.2.3"
    )

    async def scenario() -> None:
        task = asyncio.create_task(
            get_module.save_instance(tmp_path, request, EXPLICIT_VR_LE, fragments())
        )
        assert await asyncio.to_thread(entered.wait, 10)
        task.cancel()  # the write's thread goes on: it cannot be cancelled
        for _ in range(5):
            await asyncio.sleep(0)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(opened.wait, 10)

    asyncio.run(scenario())
    assert list(tmp_path.iterdir()) == []


def test_get_small_instance_costs_one_thread_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips: list[str] = []
    real = asyncio.to_thread

    async def counting(fn: Callable[..., Any], /, *args: Any) -> Any:
        trips.append(fn.__name__)
        return await real(fn, *args)

    monkeypatch.setattr(get_module.asyncio, "to_thread", counting)

    async def fragments() -> Any:
        yield memoryview(b"\x08\x00\x05\x00CS\x00\x00")
        yield memoryview(b"\x08\x00\x16\x00UI\x04\x001.2\x00")

    request = CStoreRq(
        message_id=1, affected_sop_class_uid="1.2", affected_sop_instance_uid="1.2.3"
    )
    path = asyncio.run(get_module.save_instance(tmp_path, request, EXPLICIT_VR_LE, fragments()))
    assert trips == ["finish"]
    assert path == tmp_path / "1.2.3.dcm"
    body = path.read_bytes()
    assert body[128:132] == b"DICM"
    assert body.endswith(b"\x08\x00\x05\x00CS\x00\x00\x08\x00\x16\x00UI\x04\x001.2\x00")
    assert [p.name for p in tmp_path.iterdir()] == ["1.2.3.dcm"]
