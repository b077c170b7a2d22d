"""Orthanc 1.10.1 as a Query/Retrieve SCU against our node.

Orthanc knows our node as a modality and our node knows Orthanc as a
``[[peers]]`` entry. Orthanc C-FINDs us (REST ``/modalities/{name}/query``) and
C-MOVEs studies from us into itself (``/modalities/{name}/move``); every instance
must arrive byte-identical: Orthanc keeps Explicit and Implicit VR Little Endian
data sets as received (``StorageCompression`` off), so the data set bytes after
its own File Meta are compared with the node's stored file.

One Orthanc and one node serve the whole module (Orthanc takes seconds to start).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RunningNode
from tests.interop.conftest import HOST
from tests.interop.orthanc import ORTHANC_AET, Modality, Orthanc, start_orthanc
from tests.interop.qrhelpers import (
    Corpus,
    build_corpus,
    peers_toml,
    qr_node,
    stored_dataset,
)
from tests.interop.storehelpers import split_part10

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def peers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningNode, Orthanc, Corpus]]:
    corpus = build_corpus(tmp_path_factory.mktemp("corpus"))
    # Orthanc's DICOM port must be in the node's config before the node starts, and
    # the node's port must be in Orthanc's: Orthanc learns the node at run time.
    with start_orthanc(tmp_path_factory.mktemp("orthanc")) as orthanc:
        node = qr_node(
            tmp_path_factory.mktemp("qr"),
            corpus,
            peers_toml({ORTHANC_AET: orthanc.dicom_port}),
        )
        try:
            orthanc.add_modality("archive", Modality(node.ae_title, HOST, node.port))
            yield node, orthanc, corpus
        finally:
            node.stop()


def test_orthanc_finds_studies(peers: tuple[RunningNode, Orthanc, Corpus]) -> None:
    _, orthanc, corpus = peers
    _, answers = orthanc.query(
        "archive",
        "Study",
        {
            "PatientID": "PAT-A",
            "StudyInstanceUID": "",
            "StudyDescription": "",
            "ModalitiesInStudy": "",
        },
    )
    rows = sorted(
        (a["StudyInstanceUID"], a["StudyDescription"], a["ModalitiesInStudy"]) for a in answers
    )
    assert rows == [
        (corpus.study_uids["A1"], "CT Thorax", "CT"),
        (corpus.study_uids["A2"], "MR Knie", "MR"),
    ]


def test_orthanc_finds_by_name_outside_ascii(peers: tuple[RunningNode, Orthanc, Corpus]) -> None:
    """Orthanc queries in its default encoding (Latin-1, ISO_IR 100)."""
    _, orthanc, corpus = peers
    _, answers = orthanc.query(
        "archive", "Study", {"PatientName": "Müller*", "StudyInstanceUID": ""}
    )
    assert sorted((a["StudyInstanceUID"], a["PatientName"]) for a in answers) == [
        (corpus.study_uids["A1"], "Müller^Jürgen"),
        (corpus.study_uids["A2"], "Müller^Jürgen"),
    ]


def _assert_in_orthanc(node: RunningNode, orthanc: Orthanc, uids: list[str]) -> None:
    for uid in uids:
        instance_id = orthanc.find_instance(uid)
        assert instance_id is not None, (uid, orthanc.output()[-2000:])
        _, dataset = split_part10(orthanc.instance_file(instance_id))
        assert dataset == stored_dataset(node, uid), uid


def test_orthanc_moves_studies_into_itself(peers: tuple[RunningNode, Orthanc, Corpus]) -> None:
    """Studies A2 and C1 (Explicit VR LE): every instance arrives byte-identical."""
    node, orthanc, corpus = peers
    wanted = corpus.of_study("A2") + corpus.of_study("C1")
    orthanc.move(
        "archive",
        "Study",
        [{"StudyInstanceUID": corpus.study_uids[key]} for key in ("A2", "C1")],
        target_aet=ORTHANC_AET,
    )
    _assert_in_orthanc(node, orthanc, [i.sop_uid for i in wanted])


def test_orthanc_query_then_retrieve_a_series(peers: tuple[RunningNode, Orthanc, Corpus]) -> None:
    node, orthanc, corpus = peers
    wanted = [i for i in corpus.of_study("B1") if i.transfer_syntax == "1.2.840.10008.1.2.1"]
    query_id, answers = orthanc.query(
        "archive",
        "Series",
        {"StudyInstanceUID": wanted[0].study_uid, "SeriesInstanceUID": wanted[0].series_uid},
    )
    assert len(answers) == 1
    orthanc.retrieve(query_id)
    _assert_in_orthanc(node, orthanc, [i.sop_uid for i in wanted])
    # That series only: the study's other series did not come along.
    others = [i for i in corpus.of_study("B1") if i.series_uid != wanted[0].series_uid]
    assert others
    assert all(orthanc.find_instance(i.sop_uid) is None for i in others)


def test_orthanc_moves_a_study_with_implicit_instances(
    peers: tuple[RunningNode, Orthanc, Corpus],
) -> None:
    node, orthanc, corpus = peers
    wanted = corpus.of_study("A1")
    orthanc.move("archive", "Study", [{"StudyInstanceUID": wanted[0].study_uid}])
    _assert_in_orthanc(node, orthanc, [i.sop_uid for i in wanted])
