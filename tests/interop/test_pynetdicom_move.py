"""C-MOVE against a real, slow pynetdicom Storage SCP: parallel sub-associations,
Pending counts and C-CANCEL (PS3.4 C.4.2.1.4, C.4.2.3.1).

The destination takes ``STORE_DELAY`` seconds per C-STORE, so a 32-instance move
lasts long enough to see the node's Pending responses (at most one per
``retrieve.PENDING_INTERVAL``) and to cancel it half-way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelMove

from tests.conftest import RunningNode
from tests.interop.conftest import HOST, free_port
from tests.interop.qrhelpers import Corpus, peers_toml, qr_node, store_files

pytestmark = pytest.mark.interop

MOVE = StudyRootQueryRetrieveInformationModelMove
STUDY = "1.2.826.0.1.3680043.10.1143.77"
COUNT = 32
STORE_DELAY = 0.08
TIMEOUT = 20


class SlowScp:
    """Storage SCP "SLOW": records each store's association, keeps count of overlaps."""

    def __init__(self, port: int) -> None:
        self.received: list[str] = []
        #: Each sub-association by its peer's (address, port): an id() may be reused.
        self.associations: set[tuple[str, int]] = set()
        self.most_at_once = 0
        self._now = 0
        self._lock = threading.Lock()
        ae = AE(ae_title="SLOW")
        for name in ("acse_timeout", "dimse_timeout", "network_timeout"):
            setattr(ae, name, TIMEOUT)
        ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian])
        self.server = ae.start_server(
            (HOST, port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )

    def _on_store(self, event: Any) -> int:
        with self._lock:
            self._now += 1
            self.most_at_once = max(self.most_at_once, self._now)
            remote = event.assoc.remote
            self.associations.add((remote["address"], remote["port"]))
        time.sleep(STORE_DELAY)
        with self._lock:
            self._now -= 1
            self.received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def close(self) -> None:
        self.server.shutdown()


def _instance(number: int) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"{STUDY}.1.{number}"
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = f"{STUDY}.1"
    ds.PatientID = "MOVE-1"
    ds.Modality = "CT"
    ds.InstanceNumber = number
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


@pytest.fixture(scope="module")
def dest_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, dest_port: int) -> Iterator[RunningNode]:
    files = tmp_path_factory.mktemp("move-study")
    paths: list[Path] = []
    for number in range(1, COUNT + 1):
        path = files / f"{number:02d}.dcm"
        _instance(number).save_as(path, enforce_file_format=True)
        paths.append(path)
    running = qr_node(tmp_path_factory.mktemp("node"), Corpus(), peers_toml({"SLOW": dest_port}))
    try:
        store_files(running, paths)
        yield running
    finally:
        running.stop()


def _move(node: RunningNode, *, cancel_at_first_pending: bool) -> list[Dataset]:
    """The C-MOVE-RSP command sets, in order."""
    ae = AE(ae_title="MOVER")
    for name in ("acse_timeout", "dimse_timeout", "network_timeout"):
        setattr(ae, name, TIMEOUT)
    ae.add_requested_context(MOVE)
    assoc = ae.associate(HOST, node.port, ae_title=node.ae_title)
    assert assoc.is_established
    statuses: list[Dataset] = []
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = STUDY
        for status, _ in assoc.send_c_move(query, "SLOW", MOVE, msg_id=7):
            statuses.append(status)
            if cancel_at_first_pending and int(status.Status) == 0xFF00 and len(statuses) == 1:
                assoc.send_c_cancel(7, assoc.accepted_contexts[0].context_id)
    finally:
        assoc.release()
    return statuses


def _counts(status: Dataset) -> tuple[int, int, int, int]:
    return (
        int(status.get("NumberOfRemainingSuboperations", 0)),
        int(status.NumberOfCompletedSuboperations),
        int(status.NumberOfFailedSuboperations),
        int(status.NumberOfWarningSuboperations),
    )


def test_c_move_in_parallel_with_pending_counts(node: RunningNode, dest_port: int) -> None:
    scp = SlowScp(dest_port)
    try:
        statuses = _move(node, cancel_at_first_pending=False)
    finally:
        scp.close()
    final = statuses[-1]
    assert int(final.Status) == 0x0000
    assert _counts(final)[1:] == (COUNT, 0, 0)
    assert sorted(scp.received) == sorted(f"{STUDY}.1.{n}" for n in range(1, COUNT + 1))
    # Several sub-associations at once ([retrieve] move_associations, 4 by default).
    assert 2 <= len(scp.associations) <= 4
    assert scp.most_at_once >= 2
    # Pending responses: Remaining falls, and every response adds up to the total.
    pendings = [_counts(s) for s in statuses[:-1]]
    assert pendings, "a 2 s move sends Pending responses"
    assert all(int(s.Status) == 0xFF00 for s in statuses[:-1])
    assert all(sum(p) == COUNT for p in pendings)
    remaining = [p[0] for p in pendings]
    assert remaining == sorted(remaining, reverse=True)


def test_c_move_cancelled_reports_what_remains(node: RunningNode, dest_port: int) -> None:
    scp = SlowScp(dest_port)
    try:
        statuses = _move(node, cancel_at_first_pending=True)
        at_final = len(scp.received)
        time.sleep(2 * STORE_DELAY)  # nothing more arrives after the final response
        received_after = len(scp.received)
    finally:
        scp.close()
    final = statuses[-1]
    assert int(final.Status) == 0xFE00  # Cancel (PS3.4 C.4.2.1.5)
    remaining, completed, failed, warning = _counts(final)
    assert remaining > 0
    assert (failed, warning) == (0, 0)
    assert remaining + completed == COUNT
    assert completed == at_final == received_after
