"""Orthanc 1.10.1 as a peer: the harness starts, and both sides reach each other.

The groundwork of the Query/Retrieve interop tests (Orthanc C-MOVEs a study from
us, ``archive pull`` brings one from Orthanc): Orthanc answers our C-ECHO (by
``AET@HOST:PORT``, by configured AE title, and from ``archive peers --echo``),
Orthanc's C-ECHO reaches our running node (and is refused when it calls the
wrong AE title, so the success is not vacuous), and an instance sent with
``archive store`` comes back from Orthanc's REST API with the data set bytes we
sent, byte for byte (Orthanc writes its own File Meta).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pydicom
import pytest

from tests.conftest import RunningNode
from tests.interop import orthanc as harness
from tests.interop.conftest import HOST, archive_command, free_port, run_tool
from tests.interop.orthanc import (
    ORTHANC_AET,
    Modality,
    Orthanc,
    OrthancError,
    OrthancFactory,
)
from tests.interop.storehelpers import pydicom_file, split_part10

pytestmark = pytest.mark.interop

# The harness's fixtures, made visible to pytest in this module.
orthanc = harness.orthanc
orthanc_factory = harness.orthanc_factory


def test_orthanc_runs_with_the_generated_configuration(orthanc: Orthanc) -> None:
    system = orthanc.system()
    assert system["DicomAet"] == ORTHANC_AET
    assert system["DicomPort"] == orthanc.dicom_port
    assert system["HttpPort"] == orthanc.http_port
    assert system["Name"] == "archive-node test peer ORTHANC"
    assert orthanc.instances() == []
    assert orthanc.get_json("/modalities") == []


def test_archive_echo_orthanc(orthanc: Orthanc) -> None:
    rc, out = run_tool([*archive_command(), "echo", orthanc.peer_text])
    assert (rc, out) == (0, f"C-ECHO to ORTHANC@{HOST}:{orthanc.dicom_port}: Success\n")


def test_archive_echo_and_peers_from_the_config(orthanc: Orthanc, tmp_path: Path) -> None:
    dead = free_port()
    config = tmp_path / "archive.toml"
    config.write_text(
        f'[[peers]]\nae_title = "ORTHANC"\nhost = "{HOST}"\nport = {orthanc.dicom_port}\n'
        f'[[peers]]\nae_title = "GONE"\nhost = "{HOST}"\nport = {dead}\n',
        encoding="utf-8",
    )
    rc, out = run_tool([*archive_command(), "echo", "--config", str(config), "ORTHANC"])
    assert (rc, out) == (0, f"C-ECHO to ORTHANC@{HOST}:{orthanc.dicom_port}: Success\n")

    rc, out = run_tool([*archive_command(), "peers", "--config", str(config)])
    assert rc == 0
    assert out.splitlines() == [
        "AE TITLE  HOST        PORT",
        f"ORTHANC   127.0.0.1  {orthanc.dicom_port:>5}",
        f"GONE      127.0.0.1  {dead:>5}",
    ]
    rc, out = run_tool(
        [*archive_command(), "peers", "--config", str(config), "--echo", "--timeout", "5"]
    )
    assert rc == 5, out
    assert out.splitlines() == [
        "AE TITLE  HOST        PORT  C-ECHO",
        f"ORTHANC   127.0.0.1  {orthanc.dicom_port:>5}  OK",
        f"GONE      127.0.0.1  {dead:>5}  cannot connect to 127.0.0.1:{dead}: Connection refused",
    ]


def test_orthanc_echoes_our_node(
    node: RunningNode,
    orthanc_factory: OrthancFactory,
) -> None:
    peer = orthanc_factory(
        modalities={
            "archive": Modality(node.ae_title, HOST, node.port),
            "wrong-aet": Modality("NOT-ARCHIVE", HOST, node.port),
        }
    )
    peer.echo("archive")
    # Our node checks the called AE title: the same port under another title fails.
    with pytest.raises(OrthancError) as info:
        peer.echo("wrong-aet")
    assert info.value.status == 500
    details = json.loads(info.value.body)["Details"]
    assert details == 'DicomAssociation - connecting to AET "NOT-ARCHIVE": DUL Association Rejected'
    # A modality added at run time is usable at once.
    peer.add_modality("later", Modality(node.ae_title, HOST, node.port))
    peer.echo("later")


#: pydicom test files, one transfer syntax each, sent in one ``archive store`` run.
#: Native little-endian only: Orthanc 1.10.1 keeps the transfer syntax of
#: MR_small_bigendian.dcm (Explicit VR Big Endian) and MR_small_RLE.dcm (RLE
#: Lossless) but re-encodes their data sets on receipt (other Pixel Data bytes;
#: an Implicit VR body under the RLE transfer syntax). MR_small_RLE.dcm sent the
#: same way to our node is stored unchanged (tests/test_cli_store.py).
STORED = (
    "CT_small.dcm",  # CT, Explicit VR Little Endian
    "MR_small_implicit.dcm",  # MR, Implicit VR Little Endian
)


def test_archive_store_into_orthanc_comes_back_byte_identical(
    orthanc: Orthanc,
) -> None:
    sources = [pydicom_file(name) for name in STORED]
    rc, out = run_tool(
        [*archive_command(), "store", "--aec", ORTHANC_AET, HOST, str(orthanc.dicom_port)]
        + [str(source) for source in sources]
    )
    assert rc == 0, out
    held: list[str] = []
    for source in sources:
        meta, dataset = split_part10(source.read_bytes())
        uid = pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID
        instance_id = orthanc.find_instance(uid)
        assert instance_id is not None, (source.name, orthanc.output()[-2000:])
        held.append(instance_id)
        held_meta, held_dataset = split_part10(orthanc.instance_file(instance_id))
        assert held_dataset == dataset, source.name
        # The transfer syntax travelled unchanged (no transcoding on the way).
        assert _transfer_syntax(held_meta) == _transfer_syntax(meta), source.name
    assert sorted(orthanc.instances()) == sorted(held)


def _transfer_syntax(meta: bytes) -> str:
    """Transfer Syntax UID of a File Meta block (pydicom as the oracle)."""
    return str(pydicom.dcmread(io.BytesIO(meta), force=True).file_meta.TransferSyntaxUID)


@pytest.mark.parametrize(("in_ci", "outcome"), [(True, "fail"), (False, "skip")])
def test_missing_orthanc_fails_in_ci_and_skips_locally(
    monkeypatch: pytest.MonkeyPatch, in_ci: bool, outcome: str
) -> None:
    monkeypatch.setattr(harness, "_BINARY", "/nonexistent/Orthanc")
    monkeypatch.setattr(harness, "IN_CI", in_ci)
    monkeypatch.setenv("PATH", "/nonexistent")
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(expected, match=r"apt-get install -y orthanc"):
        harness.orthanc_binary()
