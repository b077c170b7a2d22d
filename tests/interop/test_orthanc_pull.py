"""``archive pull`` (and find, get) against Orthanc 1.10.1 as the peer archive.

Orthanc holds two studies, uploaded through its REST API, and knows our running
node as a modality (its AE title, host and port), which a C-MOVE destination
must be (PS3.4 C.4.2.1.2). ``archive pull`` runs as a child process, the way an
admin runs it: it finds the study on Orthanc and has Orthanc C-MOVE it to our
node. Every instance must arrive with the data set bytes Orthanc was given,
byte for byte (the File Meta is each side's own); the other study must not
arrive. ``archive find`` and ``archive get`` against Orthanc are checked on the
way: the find answers in the DICOM JSON model, the get writes the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archive.dicom.uids import EXPLICIT_VR_LE
from tests.conftest import RunningNode
from tests.interop import orthanc as harness
from tests.interop.conftest import HOST, archive_command, run_tool
from tests.interop.orthanc import Modality, Orthanc, OrthancFactory
from tests.interop.storehelpers import split_part10
from tests.test_cli_store import dataset_bytes, make_instance, stored_path

pytestmark = pytest.mark.interop

orthanc_factory = harness.orthanc_factory

STUDY = "1.2.826.0.1.3680043.8.498.77"
OTHER = "1.2.826.0.1.3680043.8.498.78"
#: A pull may wait on Orthanc's C-MOVE, itself bounded by harness.DICOM_TIMEOUT.
PULL_TIMEOUT = 30.0


def archive(*args: str) -> tuple[int, str]:
    """Our CLI as a child process, each DICOM step bounded, the whole run too."""
    return run_tool([*archive_command(), *args, "--timeout", "20"], timeout=PULL_TIMEOUT)


@pytest.fixture
def peer(
    node: RunningNode, orthanc_factory: OrthancFactory, tmp_path: Path
) -> tuple[Orthanc, dict[str, Path]]:
    """Orthanc knowing our node, holding STUDY (3 instances) and OTHER (1)."""
    orthanc = orthanc_factory(modalities={"archive": Modality(node.ae_title, HOST, node.port)})
    sources: dict[str, Path] = {}
    for n, study in enumerate([STUDY, STUDY, STUDY, OTHER], 1):
        path = tmp_path / "sources" / f"{n}.dcm"
        uid = make_instance(
            path,
            sop_instance_uid=f"{study}.1.{n}",
            study=study,
            series=f"{study}.1",
            patient="PULL1",
            pixels=128 * n,
        )
        orthanc.upload(path)
        sources[uid] = path
    return orthanc, sources


def test_archive_pull_brings_a_study_from_orthanc_byte_identical(
    node: RunningNode, peer: tuple[Orthanc, dict[str, Path]]
) -> None:
    orthanc, sources = peer
    rc, out = archive(
        "pull", orthanc.peer_text, "--aet", node.ae_title, "-k", f"StudyInstanceUID={STUDY}"
    )
    assert (rc, out) == (
        0,
        f"pulled 1 of 1 study(ies) from ORTHANC@{HOST}:{orthanc.dicom_port} to ARCHIVE:"
        " completed 3, failed 0, warning 0 instance(s)\n",
    ), orthanc.output()[-3000:]
    data_dir = node.config.node.data_dir
    for uid, source in sources.items():
        stored = stored_path(data_dir, uid)
        if not uid.startswith(STUDY + "."):
            assert not stored.exists(), uid
            continue
        held_id = orthanc.find_instance(uid)
        assert held_id is not None
        _, held = split_part10(orthanc.instance_file(held_id))
        assert dataset_bytes(stored) == held == dataset_bytes(source), uid


def test_archive_pull_when_orthanc_does_not_know_us(
    node: RunningNode, orthanc_factory: OrthancFactory, tmp_path: Path
) -> None:
    orthanc = orthanc_factory()  # no modalities: our AE title is unknown to it
    make_instance(tmp_path / "1.dcm", study=STUDY, series=f"{STUDY}.1", patient="PULL1")
    orthanc.upload(tmp_path / "1.dcm")
    rc, out = archive("pull", orthanc.peer_text, "--aet", node.ae_title, "-k", "PatientID=PULL1")
    # Orthanc 1.10.1 answers an unknown Move Destination with 0xC000, not 0xA801.
    assert rc == 5, out
    assert f"  study {STUDY}: status 0xC000 (unable to process)" in out
    assert f"hint: if ORTHANC does not know {node.ae_title} as a move destination" in out


def test_archive_find_and_get_against_orthanc(
    peer: tuple[Orthanc, dict[str, Path]], tmp_path: Path
) -> None:
    orthanc, sources = peer
    keys = ["PatientID=PULL1", "StudyInstanceUID", "NumberOfStudyRelatedInstances"]
    rc, out = archive(
        "find", orthanc.peer_text, "--json", "--no-default-keys", *(f"-k{k}" for k in keys)
    )
    assert rc == 0, out
    answers = sorted(json.loads(out), key=lambda a: a["0020000D"]["Value"][0])
    assert [
        (
            a["00100020"],
            a["0020000D"],
            a["00201208"],
        )
        for a in answers
    ] == [
        ({"vr": "LO", "Value": ["PULL1"]}, {"vr": "UI", "Value": [s]}, {"vr": "IS", "Value": [n]})
        for s, n in ((STUDY, 3), (OTHER, 1))
    ]

    folder = tmp_path / "got"
    rc, out = archive(
        "get", orthanc.peer_text, "--out", str(folder), "-k", f"StudyInstanceUID={STUDY}"
    )
    assert rc == 0, out
    assert out.splitlines()[-1] == f"wrote 3 file(s) to {folder}"
    wanted = {uid: path for uid, path in sources.items() if uid.startswith(STUDY + ".")}
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{u}.dcm" for u in wanted)
    for uid, source in wanted.items():
        written = folder / f"{uid}.dcm"
        meta, _ = split_part10(written.read_bytes())
        assert EXPLICIT_VR_LE.encode() in meta
        assert dataset_bytes(written) == dataset_bytes(source), uid
