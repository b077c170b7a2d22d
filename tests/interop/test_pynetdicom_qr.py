"""Query/Retrieve interop with pynetdicom 3: pynetdicom as SCU against our node, and
our SCU (archive.net.associate) against pynetdicom's bundled ``qrscp`` app.

pynetdicom as SCU: C-FIND in both models with pydicom Dataset identifiers,
C-MOVE to a pynetdicom Storage SCP started here, C-GET with SCP/SCU role
selection; the received data set bytes (``event.encoded_dataset``) are the node's
stored bytes. pynetdicom's acceptor takes the requestor's first proposed transfer
syntax it supports, so our [Implicit, Explicit] context for an Implicit VR file
is accepted as Implicit and the whole of study A1 arrives.

Our SCU against qrscp: qrscp needs sqlalchemy (the ``dev`` extra; locally also
found in bench/.cache/pydeps). Files are sent to it with ``archive store``; it
keeps them re-encoded by pydicom, so what comes back is compared element by
element with the source files (:func:`tests.interop.storehelpers.comparable`).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pynetdicom import AE, build_role, evt
from pynetdicom.pdu_primitives import (
    AsynchronousOperationsWindowNegotiation,
    SOPClassExtendedNegotiation,
)
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from archive.cli import main
from archive.dicom.dataset import Element, decode_dataset, encode_dataset
from archive.dicom.dimse import CStoreRq
from archive.dicom.ul.pdu import RoleSelection
from archive.net import Timeouts, associate
from archive.store import relative_path
from tests.conftest import IN_CI, RunningNode, require_tool
from tests.interop.conftest import (
    HOST,
    LISTEN_TIMEOUT,
    archive_command,
    dcmconv_implicit,
    free_port,
    run_tool,
    stop,
    wait_listening,
)
from tests.interop.qrhelpers import (
    CT_IMAGE,
    MR_IMAGE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    Corpus,
    Instance,
    build_corpus,
    dataset_bytes,
    peers_toml,
    qr_node,
    stored_dataset,
)
from tests.interop.storehelpers import comparable

pytestmark = pytest.mark.interop

ELE = "1.2.840.10008.1.2.1"
ILE = "1.2.840.10008.1.2"
RLE = "1.2.840.10008.1.2.5"
#: Seconds pynetdicom waits for anything (association, DIMSE, network).
PYNETDICOM_TIMEOUT = 10
PYDEPS = Path(__file__).resolve().parents[2] / "bench" / ".cache" / "pydeps"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def scp_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def qr(
    tmp_path_factory: pytest.TempPathFactory, corpus: Corpus, scp_port: int
) -> Iterator[RunningNode]:
    node = qr_node(tmp_path_factory.mktemp("qr"), corpus, peers_toml({"PYSCP": scp_port}))
    try:
        yield node
    finally:
        node.stop()


def scu(*contexts: str, roles: tuple[str, ...] = ()) -> AE:
    ae = AE(ae_title="PYSCU")
    for name in ("acse_timeout", "dimse_timeout", "network_timeout"):
        setattr(ae, name, PYNETDICOM_TIMEOUT)
    for uid in contexts:
        ae.add_requested_context(uid)
    for uid in roles:
        # Two contexts per storage class: the node picks one syntax per context.
        ae.add_requested_context(uid, ELE)
        ae.add_requested_context(uid, ILE)
        ae.add_requested_context(uid, RLE)
    return ae


def identifier(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def c_find(
    qr: RunningNode, model: str, query: Dataset, *, ext_neg: list[Any] | None = None
) -> list[tuple[Dataset, Dataset | None]]:
    """Every C-FIND response (status, identifier) of one query on its own association."""
    assoc = scu(model).associate(HOST, qr.port, ae_title=qr.ae_title, ext_neg=ext_neg)
    assert assoc.is_established
    try:
        return list(assoc.send_c_find(query, model))
    finally:
        assoc.release()


def test_c_find_study_root(qr: RunningNode, corpus: Corpus) -> None:
    query = identifier(
        "STUDY",
        PatientID="PAT-A",
        StudyInstanceUID="",
        NumberOfStudyRelatedInstances="",
        ModalitiesInStudy="",
    )
    answers = c_find(qr, StudyRootQueryRetrieveInformationModelFind, query)
    assert [int(status.Status) for status, _ in answers] == [0xFF00, 0xFF00, 0x0000]
    found = sorted(
        (str(ds.StudyInstanceUID), str(ds.ModalitiesInStudy), int(ds.NumberOfStudyRelatedInstances))
        for _, ds in answers[:-1]
    )
    assert found == [
        (corpus.study_uids["A1"], "CT", 5),
        (corpus.study_uids["A2"], "MR", 2),
    ]
    assert answers[-1][1] is None


@pytest.mark.parametrize("combined", [True, False])
def test_c_find_combined_date_time_matching(
    qr: RunningNode, corpus: Corpus, combined: bool
) -> None:
    """SOP Class Extended Negotiation byte 1 (PS3.4 C.5.1.1.2): with it, the date
    and time keys are one range, 5 January 12:00 to 20 March 09:00 (B1 on 10
    February 14:00 and A2 on 20 March 08:30, not A1 on 5 January 10:15); without
    it the time range 12:00-09:00 is empty."""
    negotiation = SOPClassExtendedNegotiation()
    negotiation.sop_class_uid = StudyRootQueryRetrieveInformationModelFind
    negotiation.service_class_application_information = b"\x00\x01" if combined else b"\x00\x00"
    query = identifier(
        "STUDY", StudyDate="20240105-20240320", StudyTime="1200-0900", StudyInstanceUID=""
    )
    answers = c_find(qr, StudyRootQueryRetrieveInformationModelFind, query, ext_neg=[negotiation])
    assert int(answers[-1][0].Status) == 0x0000
    found = sorted(str(ds.StudyInstanceUID) for _, ds in answers[:-1])
    expected = sorted(corpus.study_uids[key] for key in ("B1", "A2")) if combined else []
    assert found == expected


def test_c_find_relational_queries_are_refused_in_negotiation_and_their_keys_fail(
    qr: RunningNode,
) -> None:
    """PS3.4 C.4.1.3.2: a relational query is matched on every key whatever its
    level, which the index does not do. The node answers byte 0 with 0, and a
    key below the level is refused (A900), where it was answered with every
    study, the key empty (FF01)."""
    negotiation = SOPClassExtendedNegotiation()
    negotiation.sop_class_uid = StudyRootQueryRetrieveInformationModelFind
    negotiation.service_class_application_information = b"\x01"
    ae = scu(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(HOST, qr.port, ae_title=qr.ae_title, ext_neg=[negotiation])
    assert assoc.is_established
    try:
        replies = assoc.acceptor.sop_class_extended
        assert replies[StudyRootQueryRetrieveInformationModelFind][:1] == b"\x00"
        query = identifier("STUDY", Modality="MR", StudyInstanceUID="")
        answers = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    assert [int(status.Status) for status, _ in answers] == [0xA900]


def test_c_find_patient_root(qr: RunningNode) -> None:
    query = identifier(
        "PATIENT", PatientID="PAT-*", PatientName="", SpecificCharacterSet="ISO_IR 192"
    )
    answers = c_find(qr, PatientRootQueryRetrieveInformationModelFind, query)
    assert [int(s.Status) for s, _ in answers] == [0xFF00] * 3 + [0x0000]
    names = sorted((str(ds.PatientID), str(ds.PatientName)) for _, ds in answers[:-1])
    assert names == [
        ("PAT-A", "Müller^Jürgen"),
        ("PAT-B", "Dvořák^Zdeněk"),
        ("PAT-C", "Smith^John"),
    ]


def test_c_find_patients_by_their_other_ids(qr: RunningNode) -> None:
    """Sequence Matching (PS3.4 C.2.2.2.6): a wild card in an item key selects,
    and the response's items hold the requested item keys only."""
    other = Dataset()
    other.PatientID = "X-*"
    other.TypeOfPatientID = ""
    query = identifier("PATIENT", PatientID="")
    query.OtherPatientIDsSequence = [other]
    answers = c_find(qr, PatientRootQueryRetrieveInformationModelFind, query)
    assert [int(s.Status) for s, _ in answers] == [0xFF00, 0x0000]
    (found,) = [ds for _, ds in answers[:-1]]
    assert found.PatientID == "PAT-A"
    (item,) = found.OtherPatientIDsSequence
    assert (item.PatientID, item.TypeOfPatientID) == ("X-A", "")
    assert "IssuerOfPatientID" not in item
    # An item key that matches no item of any patient: no match.
    other.PatientID = "Y-*"
    answers = c_find(qr, PatientRootQueryRetrieveInformationModelFind, query)
    assert [int(s.Status) for s, _ in answers] == [0x0000]


class StorageScp:
    """A pynetdicom Storage SCP (AE PYSCP) collecting what it receives."""

    def __init__(self, port: int) -> None:
        self.received: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        ae = AE(ae_title="PYSCP")
        for name in ("acse_timeout", "dimse_timeout", "network_timeout"):
            setattr(ae, name, PYNETDICOM_TIMEOUT)
        for uid in (CTImageStorage, MRImageStorage):
            ae.add_supported_context(uid, [ELE, ILE, RLE])
        self.server = ae.start_server(
            (HOST, port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )

    def _on_store(self, event: Any) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        with self._lock:
            self.received[uid] = (
                str(event.context.transfer_syntax),
                bytes(event.encoded_dataset(include_meta=False)),
            )
        return 0x0000

    def close(self) -> None:
        self.server.shutdown()


def move_to_pyscp(
    qr: RunningNode, scp_port: int, study_uid: str
) -> tuple[list[tuple[Dataset, Dataset | None]], dict[str, tuple[str, bytes]]]:
    """C-MOVE a study to a pynetdicom Storage SCP: the responses and what it received."""
    scp = StorageScp(scp_port)
    try:
        ae = scu(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate(HOST, qr.port, ae_title=qr.ae_title)
        assert assoc.is_established
        try:
            query = identifier("STUDY", StudyInstanceUID=study_uid)
            answers = list(
                assoc.send_c_move(query, "PYSCP", StudyRootQueryRetrieveInformationModelMove)
            )
        finally:
            assoc.release()
    finally:
        scp.close()
    return answers, scp.received


def assert_all_succeeded(answers: list[tuple[Dataset, Dataset | None]], total: int) -> None:
    """Pending responses only, then a Success that counts ``total`` completed, no other."""
    final, dataset = answers[-1]
    assert int(final.Status) == 0x0000
    assert dataset is None
    assert (
        final.NumberOfCompletedSuboperations,
        final.NumberOfFailedSuboperations,
        final.NumberOfWarningSuboperations,
    ) == (total, 0, 0)
    assert all(int(s.Status) == 0xFF00 for s, _ in answers[:-1])


def assert_received(
    qr: RunningNode, received: dict[str, tuple[str, bytes]], wanted: list[Instance]
) -> None:
    """Exactly ``wanted`` arrived, each in its stored transfer syntax and bytes."""
    assert sorted(received) == sorted(i.sop_uid for i in wanted)
    for instance in wanted:
        ts, data = received[instance.sop_uid]
        assert ts == instance.transfer_syntax
        assert data == stored_dataset(qr, instance.sop_uid)


def assert_moved(
    qr: RunningNode,
    answers: list[tuple[Dataset, Dataset | None]],
    received: dict[str, tuple[str, bytes]],
    wanted: list[Instance],
) -> None:
    assert_all_succeeded(answers, len(wanted))
    assert_received(qr, received, wanted)


def test_c_move_to_a_pynetdicom_storage_scp(qr: RunningNode, corpus: Corpus, scp_port: int) -> None:
    """Study B1: Explicit VR LE and RLE Lossless MR, each on its own context."""
    wanted = corpus.of_study("B1")
    answers, received = move_to_pyscp(qr, scp_port, wanted[0].study_uid)
    assert_moved(qr, answers, received, wanted)


def test_c_move_study_with_explicit_and_implicit_instances(
    qr: RunningNode, corpus: Corpus, scp_port: int
) -> None:
    wanted = corpus.of_study("A1")
    answers, received = move_to_pyscp(qr, scp_port, wanted[0].study_uid)
    assert_moved(qr, answers, received, wanted)


def test_c_move_unknown_destination(qr: RunningNode, corpus: Corpus) -> None:
    ae = scu(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate(HOST, qr.port, ae_title=qr.ae_title)
    try:
        query = identifier("STUDY", StudyInstanceUID=corpus.study_uids["A1"])
        answers = list(
            assoc.send_c_move(query, "NOWHERE", StudyRootQueryRetrieveInformationModelMove)
        )
    finally:
        assoc.release()
    assert [int(s.Status) for s, _ in answers] == [0xA801]


def store_recorder() -> tuple[dict[str, tuple[str, bytes]], Callable[[Any], int]]:
    """A C-STORE handler for pynetdicom recording, per SOP Instance UID, the
    context's transfer syntax and the data set's bytes; and what it records."""
    received: dict[str, tuple[str, bytes]] = {}

    def on_store(event: Any) -> int:
        received[str(event.request.AffectedSOPInstanceUID)] = (
            str(event.context.transfer_syntax),
            bytes(event.encoded_dataset(include_meta=False)),
        )
        return 0x0000

    return received, on_store


def c_get_offering(
    node: RunningNode, sop_class: str, syntax: str, study_uid: str
) -> tuple[list[tuple[Dataset, Dataset | None]], dict[str, tuple[str, bytes]], Any]:
    """A C-GET of a study by pynetdicom offering ``sop_class`` in ``syntax`` alone
    (SCP role): its answers, what it received, and its association (released
    unless the node aborted it)."""
    received, on_store = store_recorder()
    ae = scu(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate(
        HOST,
        node.port,
        ae_title=node.ae_title,
        ext_neg=[build_role(sop_class, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    try:
        query = identifier("STUDY", StudyInstanceUID=study_uid)
        answers = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    finally:
        if assoc.is_established:
            assoc.release()
    return answers, received, assoc


@pytest.mark.parametrize("window", [None, (1, 8)], ids=["synchronous", "async-window"])
def test_c_get_with_role_selection(
    qr: RunningNode, corpus: Corpus, window: tuple[int, int] | None
) -> None:
    """pynetdicom as C-GET SCU; with an Asynchronous Operations Window proposed (PS3.7
    D.3.3.3) the node answers (1, 4): the SCU may have one request outstanding and
    perform four sub-operations at once, which the node keeps in flight and
    pynetdicom must take in order like any others. (It answered (4, 1), the two
    fields swapped: a requestor reading it right would send a second request
    while the first was answered, and the node aborted.)"""
    received, on_store = store_recorder()
    ae = scu(StudyRootQueryRetrieveInformationModelGet, roles=(CTImageStorage, MRImageStorage))
    ext_neg: list[Any] = [
        build_role(uid, scp_role=True) for uid in (CTImageStorage, MRImageStorage)
    ]
    if window is not None:
        item = AsynchronousOperationsWindowNegotiation()
        item.maximum_number_operations_invoked, item.maximum_number_operations_performed = window
        ext_neg.append(item)
    assoc = ae.associate(
        HOST,
        qr.port,
        ae_title=qr.ae_title,
        ext_neg=ext_neg,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    assert assoc.acceptor.asynchronous_operations == ((1, 4) if window else (1, 1))
    wanted = corpus.of_study("A1") + corpus.of_study("B1")  # ELE, ILE and RLE
    try:
        answers = []
        for key in ("A1", "B1"):
            query = identifier("STUDY", StudyInstanceUID=corpus.study_uids[key])
            answers.append(list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)))
    finally:
        assoc.release()
    for run_answers, total in zip(answers, (5, 3), strict=True):
        assert_all_succeeded(run_answers, total)
    assert_received(qr, received, wanted)


def test_c_get_proposing_implicit_vr_only_gets_every_instance(
    qr: RunningNode, corpus: Corpus, tmp_path: Path
) -> None:
    """pynetdicom as C-GET SCU offering CT storage in Implicit VR LE alone (the
    default syntax, PS3.5 10.1): A1's Explicit VR instances come converted on the
    C-GET association, byte for byte what DCMTK's dcmconv +ti writes."""
    wanted = corpus.of_study("A1")  # 3 Explicit + 2 Implicit VR LE
    answers, received, _ = c_get_offering(qr, CTImageStorage, ILE, wanted[0].study_uid)
    assert_all_succeeded(answers, len(wanted))
    assert sorted(received) == sorted(i.sop_uid for i in wanted)
    for instance in wanted:
        ts, data = received[instance.sop_uid]
        assert ts == ILE
        if instance.transfer_syntax == ILE:
            assert data == stored_dataset(qr, instance.sop_uid)
        else:
            assert data == dataset_bytes(dcmconv_implicit(instance.path, tmp_path))


@pytest.mark.parametrize("offered", [ELE, ILE], ids=["explicit", "implicit"])
@pytest.mark.parametrize("name", ["image_dfl.dcm", "MR_small_bigendian.dcm"])
def test_c_get_of_an_instance_whose_syntax_is_not_offered(
    node_factory: Callable[..., RunningNode], tmp_path: Path, offered: str, name: str
) -> None:
    """A Deflated instance and an Explicit VR Big Endian one (pydicom's) to a C-GET
    SCU offering one uncompressed syntax: inflated (PS3.5 A.5) or swapped, and for
    Implicit VR converted on, byte for byte what DCMTK's dcmconv writes."""
    node = node_factory()
    source = Path(str(get_testdata_file(name)))
    assert main(["store", "--aec", node.ae_title, HOST, str(node.port), str(source)]) == 0
    held = pydicom.dcmread(source)
    answers, received, _ = c_get_offering(
        node, str(held.SOPClassUID), offered, held.StudyInstanceUID
    )
    assert_all_succeeded(answers, 1)
    ts, data = received[held.SOPInstanceUID]
    assert ts == offered
    if offered == ILE:
        assert data == dataset_bytes(dcmconv_implicit(source, tmp_path))
    elif name == "image_dfl.dcm":
        assert data == zlib.decompress(dataset_bytes(source), -zlib.MAX_WBITS)
    else:
        little = tmp_path / "little.dcm"
        code, text = run_tool([require_tool("dcmconv"), "+te", str(source), str(little)])
        assert code == 0, text
        assert data == dataset_bytes(little)


def test_c_get_of_a_file_that_fails_mid_send_aborts_without_an_internal_error(
    node_factory: Callable[..., RunningNode],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stored Explicit VR file the conversion cannot follow (an item longer than
    its sequence, after Pixel Data: the C-STORE that brought it read no further),
    asked for in Implicit VR: half its C-STORE is sent when that shows, and on
    the caller's own association only an A-ABORT ends a message (PS3.8 7.3). The
    node says why at WARNING, not as an internal error, and serves on."""
    from tests.test_cli_store import make_instance

    node = node_factory()
    bad = tmp_path / "in" / "bad.dcm"
    uid = make_instance(bad, study="1.2.3.77")
    with bad.open("ab") as f:
        f.write(struct.pack("<HH2s2xL", 0x7FE1, 0x1010, b"SQ", 16))
        f.write(struct.pack("<HHL", 0xFFFE, 0xE000, 100) + bytes(8))
    assert main(["store", "--aec", node.ae_title, HOST, str(node.port), str(bad)]) == 0
    with caplog.at_level(logging.INFO):
        _, received, assoc = c_get_offering(node, CTImageStorage, ILE, "1.2.3.77")
        assoc.join(timeout=5)  # pynetdicom's thread takes the A-ABORT in
        assert assoc.is_aborted
        assert received == {}
        again = scu(Verification).associate(HOST, node.port, ae_title=node.ae_title)
        try:
            assert int(again.send_c_echo().Status) == 0x0000
        finally:
            again.release()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith(
            f"C-GET: the file of instance {uid} failed while it was sent:"
            " cannot be sent as Implicit VR"
        )
        and m.endswith("; the association is aborted")
        for m in warnings
    ), warnings
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "Test^P1" not in caplog.text  # the instance's Patient's Name


def test_c_get_without_a_role_fails_every_suboperation(qr: RunningNode, corpus: Corpus) -> None:
    """No SCP role selected: the node has no context to send on (A702 and the UID list)."""
    ae = scu(StudyRootQueryRetrieveInformationModelGet, roles=(CTImageStorage,))
    assoc = ae.associate(HOST, qr.port, ae_title=qr.ae_title)
    assert assoc.is_established
    try:
        wanted = corpus.of_study("C1")
        query = identifier("STUDY", StudyInstanceUID=wanted[0].study_uid)
        answers = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    final, dataset = answers[-1]
    assert int(final.Status) == 0xA702
    assert final.NumberOfFailedSuboperations == 2
    assert final.NumberOfCompletedSuboperations == 0
    assert dataset is not None
    assert sorted(dataset.FailedSOPInstanceUIDList) == sorted(i.sop_uid for i in wanted)


# ---- our SCU against pynetdicom's qrscp ---------------------------------------------------


def _qrscp_env() -> dict[str, str]:
    """An environment in which ``python -m pynetdicom qrscp`` can import sqlalchemy."""
    env = dict(os.environ)
    probe = [sys.executable, "-c", "import sqlalchemy"]
    if subprocess.run(probe, env=env, capture_output=True, check=False).returncode == 0:
        return env
    if PYDEPS.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PYDEPS), env.get("PYTHONPATH")]))
        if subprocess.run(probe, env=env, capture_output=True, check=False).returncode == 0:
            return env
    message = "sqlalchemy is missing for pynetdicom's qrscp (pip install -e '.[dev]')"
    if IN_CI:
        pytest.fail(message + ": interop tests must run in CI")
    pytest.skip(message)


@pytest.fixture
def qrscp(
    tmp_path: Path, node_factory: Callable[..., RunningNode]
) -> Iterator[tuple[int, RunningNode]]:
    """qrscp on a free port whose move destination ARCHIVE is a fresh, empty node."""
    env = _qrscp_env()
    dest = node_factory()
    port = free_port()
    config = tmp_path / "qrscp.ini"
    config.write_text(
        "[DEFAULT]\n"
        "ae_title: QRSCP\n"
        f"port: {port}\n"
        "max_pdu: 16382\n"
        "acse_timeout: 10\ndimse_timeout: 10\nnetwork_timeout: 10\n"
        f"bind_address: {HOST}\n"
        f"instance_location: {tmp_path / 'instances'}\n"
        f"database_location: {tmp_path / 'qrscp.sqlite'}\n"
        "log_identifier: False\n"
        f"[{dest.ae_title}]\naddress: {HOST}\nport: {dest.port}\n",
        encoding="utf-8",
    )
    log = (tmp_path / "qrscp.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pynetdicom", "qrscp", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    log.close()
    try:
        wait_listening(port, proc, LISTEN_TIMEOUT)
        yield port, dest
    finally:
        stop(proc)


def test_our_scu_against_qrscp(qrscp: tuple[int, RunningNode], corpus: Corpus) -> None:
    port, dest = qrscp
    wanted = corpus.of_study("A1")
    rc, out = run_tool(
        [*archive_command(), "store", "--aec", "QRSCP", HOST, str(port)]
        + [str(i.path) for i in wanted]
    )
    assert rc == 0, out
    study = wanted[0].study_uid
    found, moved, got = asyncio.run(asyncio.wait_for(_scu_session(port, study), 30))

    # C-FIND: qrscp answers a STUDY query once per stored instance of the study; each
    # identifier decodes with our codec and names the study.
    assert [status for status, _ in found] == [0xFF00] * len(wanted) + [0x0000]
    for _, data in found[:-1]:
        elements = {e.tag: e.value for e in decode_dataset(data or b"", ELE)}
        assert elements[0x0020000D] in (study.encode(), study.encode() + b"\0")
        assert elements[0x00100020] == b"PAT-A "  # LO padded to even length

    # C-MOVE to our own node: every instance stored there, with the source's values.
    assert moved[-1] == (0x0000, 5, 0, 0)
    # C-GET to our SCU: every instance, with the source's values.
    statuses, received = got
    assert statuses[-1] == (0x0000, 5, 0, 0)
    assert sorted(received) == sorted(i.sop_uid for i in wanted)
    for instance in wanted:
        source = pydicom.dcmread(instance.path)
        expected = comparable(source, big_endian=False)
        ts, data = received[instance.sop_uid]
        got_ds = pydicom.dcmread(
            _part10(data, ts, instance.sop_class_uid, instance.sop_uid), force=True
        )
        assert comparable(got_ds, big_endian=False) == expected
        stored = Path(dest.config.node.data_dir)
        moved_ds = pydicom.dcmread(stored / relative_path(instance.sop_uid))
        assert comparable(moved_ds, big_endian=False) == expected


def _part10(data: bytes, ts: str, sop_class: str, sop_uid: str) -> Any:
    """A readable Part 10 stream for a received data set (pydicom's File Meta)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ts
    buffer = io.BytesIO()
    buffer.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buffer, meta, enforce_standard=True)  # type: ignore[arg-type]
    buffer.write(data)
    buffer.seek(0)
    return buffer


async def _scu_session(
    port: int, study: str
) -> tuple[
    list[tuple[int, bytes | None]],
    list[tuple[int, int | None, int | None, int | None]],
    tuple[list[tuple[int, int | None, int | None, int | None]], dict[str, tuple[str, bytes]]],
]:
    storage = [(uid, [ELE, ILE]) for uid in (CT_IMAGE, MR_IMAGE)]
    assoc = await associate(
        HOST,
        port,
        calling_ae="ARCHIVE",
        called_ae="QRSCP",
        contexts=[
            (STUDY_ROOT_FIND, [ELE]),
            (STUDY_ROOT_MOVE, [ELE]),
            (STUDY_ROOT_GET, [ELE]),
            *storage,
        ],
        roles=[RoleSelection(uid, scu_role=False, scp_role=True) for uid in (CT_IMAGE, MR_IMAGE)],
        timeouts=Timeouts(connect=5, dimse=10, network=10, artim=10),
    )
    received: dict[str, tuple[str, bytes]] = {}

    async def on_store(command: CStoreRq, ts: str, fragments: Any) -> int:
        data = b"".join([bytes(f) async for f in fragments])
        received[command.affected_sop_instance_uid] = (ts, data)
        return 0x0000

    def ident(level: bytes, *extra: Element) -> bytes:
        return encode_dataset(
            [Element(0x00080052, "CS", level), Element(0x0020000D, "UI", study.encode()), *extra],
            ELE,
        )

    async with assoc:
        negotiated = assoc.negotiated
        find_cx = negotiated.context_for(STUDY_ROOT_FIND)
        move_cx = negotiated.context_for(STUDY_ROOT_MOVE)
        get_cx = negotiated.context_for(STUDY_ROOT_GET)
        assert find_cx is not None
        assert move_cx is not None
        assert get_cx is not None
        found = [
            (rsp.status, data)
            async for rsp, data in assoc.find(
                find_cx.id, ident(b"STUDY", Element(0x00100020, "LO", b""))
            )
        ]
        moved = [
            (
                rsp.status,
                rsp.number_of_completed_suboperations,
                rsp.number_of_failed_suboperations,
                rsp.number_of_warning_suboperations,
            )
            async for rsp, _ in assoc.move(move_cx.id, ident(b"STUDY"), "ARCHIVE")
        ]
        got = [
            (
                rsp.status,
                rsp.number_of_completed_suboperations,
                rsp.number_of_failed_suboperations,
                rsp.number_of_warning_suboperations,
            )
            async for rsp, _ in assoc.get(get_cx.id, ident(b"STUDY"), on_store)
        ]
    return found, moved, (got, received)
