"""The node answers C-ECHO from pynetdicom: the fixture and the whole stack work."""

from __future__ import annotations

from pynetdicom import AE

from tests.conftest import RunningNode


def test_pynetdicom_echo(node: RunningNode) -> None:
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate(node.host, node.port, ae_title="ARCHIVE")
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    assert status.Status == 0x0000
