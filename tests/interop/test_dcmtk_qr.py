"""Query/Retrieve interop with DCMTK 3.6.7: findscu, movescu and getscu against our SCP.

One node per module holds the corpus of :mod:`tests.interop.qrhelpers` (three
patients, CT and MR, Explicit and Implicit VR Little Endian and RLE Lossless,
Latin-1 and UTF-8 names). The DCMTK tools run with ``-d`` so every DIMSE status
is printed in hex (``DIMSE Status : 0xff00``); findscu's ``-X`` writes each
matched identifier to a file read back with pydicom. movescu, storescp and
getscu write what they receive with ``+B`` (bit-preserving: the data set bytes
as they came off the wire), so "byte-identical" compares those files' data sets
with the node's stored files.

Known DCMTK 3.6.7 behaviour the tests work around: getscu does not read the
identifier (Failed SOP Instance UID List) of a final C-GET-RSP, so its
A-RELEASE-RQ meets that P-DATA and it aborts ("DUL P-Data PDU arrived") after
the operation completed; movescu with ``+B`` writes into its working folder, not
``-od``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from archive.dicom.attributes import InstanceAttributes
from archive.index import StoredInstance
from tests.conftest import RunningNode, require_tool
from tests.interop.conftest import (
    DCMTK_ENV,
    HOST,
    LISTEN_TIMEOUT,
    TOOL_TIMEOUT,
    dcmconv_implicit,
    free_port,
    run_tool,
    stop,
    wait_listening,
)
from tests.interop.qrhelpers import (
    Corpus,
    Instance,
    build_corpus,
    dataset_bytes,
    peers_toml,
    qr_node,
    store_files,
    stored_dataset,
)

pytestmark = pytest.mark.interop

_STATUS = re.compile(r"DIMSE Status\s*:\s*0x([0-9a-f]{4})")
#: The counts of a C-MOVE/C-GET-RSP as dumped (not getscu's own summary lines).
_COUNT = re.compile(
    r"^D: (Remaining|Completed|Failed|Warning) Suboperations\s*:\s*(\d+|none)", re.MULTILINE
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    """Move destinations known to the node: storescp and movescu's own port."""
    return {"STORESCP": free_port(), "MOVESCU": free_port()}


@pytest.fixture(scope="module")
def qr(
    tmp_path_factory: pytest.TempPathFactory, corpus: Corpus, ports: dict[str, int]
) -> Iterator[RunningNode]:
    for tool in ("findscu", "movescu", "getscu", "storescp"):
        require_tool(tool)
    node = qr_node(tmp_path_factory.mktemp("qr"), corpus, peers_toml(ports))
    try:
        yield node
    finally:
        node.stop()


def statuses(output: str) -> list[int]:
    """Every DIMSE status in a DCMTK tool's debug log, in order."""
    return [int(s, 16) for s in _STATUS.findall(output)]


def final_counts(output: str) -> dict[str, int | None]:
    """The sub-operation counts of the last C-MOVE/C-GET response in a debug log."""
    counts: dict[str, int | None] = {}
    for name, value in _COUNT.findall(output):
        counts[name] = None if value == "none" else int(value)
    return counts


def findscu(
    node: RunningNode,
    keys: Sequence[str | bytes],
    out: Path,
    *options: str,
    model: str = "-S",
) -> tuple[str, list[int], list[pydicom.Dataset]]:
    """findscu -X: (log, statuses, the matched identifiers in order)."""
    out.mkdir()
    args: list[str | bytes] = [require_tool("findscu"), "-d", model, "-aec", node.ae_title]
    for key in keys:
        args += ["-k", key]
    args += ["-X", "-od", str(out), *options, HOST, str(node.port)]
    done = subprocess.run(
        args, capture_output=True, env=DCMTK_ENV, timeout=TOOL_TIMEOUT, check=False
    )
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert done.returncode == 0, output
    found = [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    return output, statuses(output), found


def values(found: Sequence[pydicom.Dataset], keyword: str) -> list[str]:
    return [str(ds.get(keyword, "")) for ds in found]


def query(text: str) -> list[str]:
    """findscu keys written as one line: ``Keyword`` or ``Keyword=value``, space-separated."""
    return text.split()


def rows(found: Sequence[pydicom.Dataset], keys: Sequence[str]) -> list[tuple[str, ...]]:
    """Each identifier's value of every key but QueryRetrieveLevel, as text; rows sorted."""
    names = [key.split("=", 1)[0] for key in keys if not key.startswith("QueryRetrieveLevel=")]
    return sorted(tuple(str(getattr(ds, name)) for name in names) for ds in found)


def study_keys(study_uid: str) -> list[str]:
    """The identifier of a STUDY-level retrieve of one study."""
    return ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study_uid}"]


def series_keys(instance: Instance) -> list[str]:
    """The identifier of a SERIES-level retrieve of an instance's series."""
    return [
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={instance.study_uid}",
        f"SeriesInstanceUID={instance.series_uid}",
    ]


def counts(completed: int, failed: int) -> dict[str, int | None]:
    """The final sub-operation counts of a C-MOVE/C-GET-RSP, no warnings (none remaining)."""
    return {"Remaining": None, "Completed": completed, "Failed": failed, "Warning": 0}


# ---- C-FIND ---------------------------------------------------------------------------


def test_find_patient_level_patient_root(qr: RunningNode, tmp_path: Path) -> None:
    keys = query(
        "QueryRetrieveLevel=PATIENT PatientID PatientName PatientBirthDate"
        " NumberOfPatientRelatedStudies NumberOfPatientRelatedInstances"
    )
    _, status, found = findscu(qr, keys, tmp_path / "f", model="-P")
    assert status == [0xFF00] * 3 + [0x0000]
    assert rows(found, keys) == [
        ("PAT-A", "Müller^Jürgen", "19600101", "2", "7"),
        ("PAT-B", "Dvořák^Zdeněk", "19751231", "1", "3"),
        ("PAT-C", "Smith^John", "19801111", "1", "2"),
    ]
    assert {ds.QueryRetrieveLevel for ds in found} == {"PATIENT"}


def test_find_study_level_return_keys_and_computed(
    qr: RunningNode, corpus: Corpus, tmp_path: Path
) -> None:
    keys = query(
        "QueryRetrieveLevel=STUDY StudyInstanceUID StudyDate AccessionNumber StudyDescription"
        " ModalitiesInStudy NumberOfStudyRelatedSeries NumberOfStudyRelatedInstances"
        " RetrieveAETitle PatientID=PAT-A"
    )
    _, status, found = findscu(qr, keys, tmp_path / "f")
    assert status == [0xFF00, 0xFF00, 0x0000]
    a1, a2 = corpus.study_uids["A1"], corpus.study_uids["A2"]
    assert rows(found, keys) == [
        (a1, "20240105", "ACC-A1", "CT Thorax", "CT", "2", "5", "ARCHIVE", "PAT-A"),
        (a2, "20240320", "ACC-A2", "MR Knie", "MR", "1", "2", "ARCHIVE", "PAT-A"),
    ]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("PatientName=M*", ["A1", "A2"]),  # wildcard (PS3.4 C.2.2.2.4)
        ("PatientName=Sm?th^John", ["C1"]),
        ("StudyDate=20240101-20240228", ["A1", "B1"]),  # date range (C.2.2.2.5)
        ("StudyDate=-20231231", ["C1"]),
        ("StudyDate=20240301-", ["A2"]),
        ("ModalitiesInStudy=MR", ["A2", "B1"]),
        ("ModalitiesInStudy=CT\\MR", ["A1", "A2", "B1", "C1"]),
        ("AccessionNumber=ACC-C1", ["C1"]),
        ("StudyDescription=nothing*", []),
    ],
)
def test_find_study_matching(
    qr: RunningNode, corpus: Corpus, tmp_path: Path, key: str, expected: list[str]
) -> None:
    _, status, found = findscu(
        qr, ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", key], tmp_path / "f"
    )
    assert status == [0xFF00] * len(expected) + [0x0000]
    assert sorted(values(found, "StudyInstanceUID")) == sorted(
        corpus.study_uids[k] for k in expected
    )


def test_find_study_uid_list(qr: RunningNode, corpus: Corpus, tmp_path: Path) -> None:
    wanted = [corpus.study_uids["A2"], corpus.study_uids["C1"]]
    _, status, found = findscu(
        qr,
        ["QueryRetrieveLevel=STUDY", "StudyInstanceUID=" + "\\".join([*wanted, "1.2.3.4"])],
        tmp_path / "f",
    )
    assert status == [0xFF00, 0xFF00, 0x0000]
    assert sorted(values(found, "StudyInstanceUID")) == sorted(wanted)


def test_find_series_level(qr: RunningNode, corpus: Corpus, tmp_path: Path) -> None:
    study = corpus.study_uids["A1"]
    keys = query(
        f"QueryRetrieveLevel=SERIES StudyInstanceUID={study} SeriesInstanceUID Modality"
        " SeriesNumber SeriesDescription NumberOfSeriesRelatedInstances"
    )
    _, status, found = findscu(qr, keys, tmp_path / "f")
    assert status == [0xFF00, 0xFF00, 0x0000]
    assert rows(found, keys) == [
        (study, f"{study}.1", "CT", "1", "Axial", "3"),
        (study, f"{study}.2", "CT", "2", "Coronal", "2"),
    ]


def test_find_image_level_patient_root(qr: RunningNode, corpus: Corpus, tmp_path: Path) -> None:
    b1 = corpus.of_study("B1")
    keys = query(
        f"QueryRetrieveLevel=IMAGE PatientID=PAT-B StudyInstanceUID={b1[0].study_uid}"
        " SeriesInstanceUID SOPInstanceUID SOPClassUID InstanceNumber"
    )
    _, status, found = findscu(qr, keys, tmp_path / "f", model="-P")
    assert status == [0xFF00] * 3 + [0x0000]
    # The instance number is the last component of the corpus's SOP Instance UIDs.
    expected = [
        ("PAT-B", i.study_uid, i.series_uid, i.sop_uid, i.sop_class_uid, i.sop_uid.split(".")[-1])
        for i in b1
    ]
    assert rows(found, keys) == sorted(expected)


@pytest.mark.parametrize(
    ("charset", "encoding", "pattern", "expected"),
    [
        ("ISO_IR 100", "latin_1", "Müller*", ["A1", "A2"]),
        ("ISO_IR 192", "utf-8", "Dvořák^Zdeněk", ["B1"]),
        ("ISO_IR 192", "utf-8", "Müller^Jürgen", ["A1", "A2"]),
    ],
)
def test_find_specific_character_set(
    qr: RunningNode,
    corpus: Corpus,
    tmp_path: Path,
    charset: str,
    encoding: str,
    pattern: str,
    expected: list[str],
) -> None:
    """A key in the query's character set matches names stored in another one."""
    _, status, found = findscu(
        qr,
        [
            f"SpecificCharacterSet={charset}",
            "QueryRetrieveLevel=STUDY",
            "StudyInstanceUID",
            f"PatientName={pattern}".encode(encoding),
        ],
        tmp_path / "f",
    )
    assert status == [0xFF00] * len(expected) + [0x0000]
    assert sorted(values(found, "StudyInstanceUID")) == sorted(
        corpus.study_uids[k] for k in expected
    )
    # pydicom decodes each response with its own Specific Character Set.
    names = {str(ds.PatientName) for ds in found}
    assert names == {"Müller^Jürgen" if "A1" in expected else "Dvořák^Zdeněk"}
    for ds in found:
        if not str(ds.PatientName).isascii():
            assert ds.SpecificCharacterSet in ("ISO_IR 100", "ISO_IR 192")


def test_find_series_by_an_item_of_their_order(
    qr: RunningNode, corpus: Corpus, tmp_path: Path
) -> None:
    """Sequence Matching (PS3.4 C.2.2.2.6) with findscu's path syntax: the item key
    selects, and the response holds the matching item with the requested keys."""
    keys = [
        "QueryRetrieveLevel=SERIES",
        "SeriesInstanceUID",
        "RequestAttributesSequence[0].RequestedProcedureID=RP-A1-2",
        "RequestAttributesSequence[0].ScheduledProcedureStepID",
    ]
    _, status, found = findscu(qr, keys, tmp_path / "f")
    assert status == [0xFF00, 0x0000]
    (series,) = found
    assert series.SeriesInstanceUID == f"{corpus.study_uids['A1']}.2"
    (order,) = series.RequestAttributesSequence
    assert (order.RequestedProcedureID, order.ScheduledProcedureStepID) == ("RP-A1-2", "SPS-A1-2")
    assert "AccessionNumber" not in order  # not requested


def test_find_by_a_nested_sequence_and_the_whole_sequence_back(
    qr: RunningNode, corpus: Corpus, tmp_path: Path
) -> None:
    """Recursive Sequence Matching: the protocol code inside the order; an empty
    sequence key returns the study's sequence whole."""
    keys = [
        "QueryRetrieveLevel=SERIES",
        "SeriesInstanceUID",
        "RequestAttributesSequence[0].ScheduledProtocolCodeSequence[0].CodeValue=PROT-1",
    ]
    _, status, found = findscu(qr, keys, tmp_path / "f")
    assert status == [0xFF00, 0x0000]
    assert values(found, "SeriesInstanceUID") == [f"{corpus.study_uids['A1']}.1"]
    keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "ProcedureCodeSequence"]
    _, status, found = findscu(qr, keys, tmp_path / "g")
    assert status == [0xFF00] * 4 + [0x0000]
    codes = {
        ds.StudyInstanceUID: [(c.CodeValue, c.CodeMeaning) for c in ds.ProcedureCodeSequence]
        for ds in found
    }
    assert codes.pop(corpus.study_uids["A1"]) == [("CTTHX", "CT Thorax")]
    assert set(map(len, codes.values())) == {0}  # the other studies have none


def test_find_without_query_retrieve_level_is_a900(qr: RunningNode, tmp_path: Path) -> None:
    output, status, found = findscu(qr, ["PatientName=*", "StudyInstanceUID"], tmp_path / "f")
    assert status == [0xA900], output
    assert found == []


def test_find_patient_level_in_study_root_is_a900(qr: RunningNode, tmp_path: Path) -> None:
    _, status, found = findscu(qr, ["QueryRetrieveLevel=PATIENT", "PatientID"], tmp_path / "f")
    assert status == [0xA900]
    assert found == []


def test_find_max_matches_ends_with_a700(
    node_factory: Callable[..., RunningNode], corpus: Corpus, tmp_path: Path
) -> None:
    node = node_factory(toml="[query]\nmax_matches = 3\n")
    store_files(node, corpus.paths())
    output, status, found = findscu(
        node, ["QueryRetrieveLevel=IMAGE", "SOPInstanceUID"], tmp_path / "f"
    )
    assert status == [0xFF00] * 3 + [0xA700], output
    assert len(found) == 3
    assert "more than 3 matches: narrow the query" in output


def _many_rows(node: RunningNode, count: int) -> None:
    """``count`` index rows (no files: C-FIND reads the index only), added on the node."""
    assert node.node is not None
    assert node.node.storage.index is not None
    index = node.node.storage.index

    async def add_all() -> None:
        await asyncio.gather(
            *(
                index.add(
                    StoredInstance(
                        attrs=InstanceAttributes(
                            patient_id="PAT-MANY",
                            patient_name="Many^Rows",
                            study_instance_uid="1.2.3.999",
                            series_instance_uid="1.2.3.999.1",
                            modality="CT",
                            sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                            sop_instance_uid=f"1.2.3.999.1.{n}",
                            instance_number=n,
                        ),
                        path=f"instances/none/{n}.dcm",
                        size=1,
                        digest="0" * 64,
                        transfer_syntax_uid="1.2.840.10008.1.2.1",
                        source_ae="TEST",
                        received_at=0.0,
                    )
                )
                for n in range(1, count + 1)
            )
        )

    assert node.loop is not None
    asyncio.run_coroutine_threadsafe(add_all(), node.loop).result(30)


def test_find_cancel_after_two_responses_is_fe00(
    node_factory: Callable[..., RunningNode], tmp_path: Path
) -> None:
    """findscu --cancel 2 sends C-CANCEL-RQ after two pending responses (PS3.7 9.3.2.3)."""
    node = node_factory()
    total = 3000
    _many_rows(node, total)
    output, status, found = findscu(
        node, ["QueryRetrieveLevel=IMAGE", "SOPInstanceUID"], tmp_path / "f", "--cancel", "2"
    )
    assert "Sending Cancel Request" in output
    assert status[-1] == 0xFE00, output[-2000:]
    assert set(status[:-1]) == {0xFF00}
    # Responses already on their way when the cancel arrived still come, but not all.
    assert 2 <= len(found) < total


# ---- C-MOVE ---------------------------------------------------------------------------


def _assert_received(node: RunningNode, folder: Path, wanted: Sequence[Instance]) -> None:
    files = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
        for p in folder.iterdir()
        if p.is_file()
    }
    assert sorted(files) == sorted(i.sop_uid for i in wanted)
    for instance in wanted:
        received = dataset_bytes(files[instance.sop_uid])
        assert received == stored_dataset(node, instance.sop_uid), instance.path.name
        assert received == dataset_bytes(instance.path), instance.path.name


def movescu(
    node: RunningNode, keys: Sequence[str], cwd: Path, *options: str
) -> tuple[str, list[int]]:
    args = [require_tool("movescu"), "-d", "-S", "-aec", node.ae_title]
    for key in keys:
        args += ["-k", key]
    done = subprocess.run(
        [*args, *options, HOST, str(node.port)],
        capture_output=True,
        env=DCMTK_ENV,
        timeout=TOOL_TIMEOUT,
        check=False,
        cwd=cwd,
    )
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    return output, statuses(output)


def to_movescu(ports: dict[str, int]) -> tuple[str, ...]:
    """movescu options: it is the destination itself (AE MOVESCU), writing with ``+B``."""
    return ("-aem", "MOVESCU", "+P", str(ports["MOVESCU"]), "+B")


def test_move_study_to_storescp_byte_identical(
    qr: RunningNode,
    corpus: Corpus,
    ports: dict[str, int],
    tmp_path: Path,
) -> None:
    """Study A2 (Explicit VR LE) to a plain storescp (-aet STORESCP, +B)."""
    wanted = corpus.of_study("A2")
    output = move_to_storescp(qr, wanted, ports, tmp_path)
    assert final_counts(output) == counts(2, 0)
    _assert_received(qr, tmp_path / "storescp-out", wanted)


def test_move_study_to_an_implicit_only_storescp(
    qr: RunningNode,
    corpus: Corpus,
    ports: dict[str, int],
    tmp_path: Path,
) -> None:
    """storescp +xi takes Implicit VR LE alone (PS3.5 10.1's default): A1's three
    Explicit VR instances go converted, as dcmconv +ti writes them, its two
    Implicit VR ones as stored."""
    wanted = corpus.of_study("A1")
    output = move_to_storescp(qr, wanted, ports, tmp_path, "+xi")
    assert final_counts(output) == counts(5, 0)
    assert_received_implicit(tmp_path / "storescp-out", wanted, tmp_path)


def move_to_storescp(
    qr: RunningNode,
    wanted: Sequence[Instance],
    ports: dict[str, int],
    tmp_path: Path,
    *options: str,
) -> str:
    """movescu has the node C-MOVE ``wanted``'s study to a storescp started with
    ``options``, writing into ``tmp_path / "storescp-out"``; movescu's log, its
    final status checked to be Success."""
    scp = _storescp_on(ports["STORESCP"], tmp_path, *options)
    try:
        output, status = movescu(qr, study_keys(wanted[0].study_uid), tmp_path, "-aem", "STORESCP")
    finally:
        stop(scp)
    assert status[-1] == 0x0000, output
    return output


def assert_received_implicit(folder: Path, wanted: Sequence[Instance], tmp_path: Path) -> None:
    """Each of ``wanted`` in ``folder`` in Implicit VR LE: as stored when it was,
    else as DCMTK's dcmconv converts it; dcmdump reads each without a complaint."""
    files = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in folder.iterdir() if p.is_file()}
    assert sorted(files) == sorted(i.sop_uid for i in wanted)
    for instance in wanted:
        received = files[instance.sop_uid]
        assert pydicom.dcmread(received).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        if instance.transfer_syntax == ImplicitVRLittleEndian:
            expected = dataset_bytes(instance.path)
        else:
            expected = dataset_bytes(dcmconv_implicit(instance.path, tmp_path))
        assert dataset_bytes(received) == expected, instance.path.name
        rc, dump = run_tool([require_tool("dcmdump"), str(received)])
        assert rc == 0, dump
        assert "E: " not in dump, dump


def _storescp_on(port: int, tmp_path: Path, *options: str) -> subprocess.Popen[bytes]:
    """storescp on the port the node's peer entry names (the factory picks its own)."""
    out = tmp_path / "storescp-out"
    out.mkdir()
    log = (tmp_path / "storescp.log").open("wb")
    proc = subprocess.Popen(
        [require_tool("storescp"), "-aet", "STORESCP", "+B", *options, "-od", str(out), str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=DCMTK_ENV,
    )
    log.close()
    try:
        wait_listening(port, proc, LISTEN_TIMEOUT)
    except BaseException:
        stop(proc)
        raise
    return proc


@pytest.mark.parametrize(
    ("level", "key", "select"),
    [
        ("STUDY", "StudyInstanceUID", lambda c: c.of_study("C1")),
        ("SERIES", "SeriesInstanceUID", lambda c: c.of_study("A1")[:3]),
        ("IMAGE", "SOPInstanceUID", lambda c: c.of_study("B1")[:1]),
    ],
)
def test_move_to_movescu_itself_byte_identical(
    qr: RunningNode,
    corpus: Corpus,
    ports: dict[str, int],
    tmp_path: Path,
    level: str,
    key: str,
    select: Callable[[Corpus], list[Instance]],
) -> None:
    """movescu as its own destination (-aem MOVESCU +P port), at each level."""
    wanted = select(corpus)
    uid = {
        "StudyInstanceUID": wanted[0].study_uid,
        "SeriesInstanceUID": wanted[0].series_uid,
        "SOPInstanceUID": wanted[0].sop_uid,
    }[key]
    keys = [f"QueryRetrieveLevel={level}", f"{key}={uid}"]
    if level != "STUDY":
        keys.insert(1, f"StudyInstanceUID={wanted[0].study_uid}")
    if level == "IMAGE":
        keys.insert(2, f"SeriesInstanceUID={wanted[0].series_uid}")
    output, status = movescu(qr, keys, tmp_path, *to_movescu(ports))
    assert status[-1] == 0x0000, output
    assert final_counts(output)["Completed"] == len(wanted)
    _assert_received(qr, tmp_path, wanted)


def test_move_study_with_implicit_instances_to_movescu(
    qr: RunningNode, corpus: Corpus, ports: dict[str, int], tmp_path: Path
) -> None:
    wanted = corpus.of_study("A1")  # 3 Explicit + 2 Implicit VR Little Endian
    output, status = movescu(qr, study_keys(wanted[0].study_uid), tmp_path, *to_movescu(ports))
    assert status[-1] == 0x0000, output
    _assert_received(qr, tmp_path, wanted)


def test_move_rle_instance_accepted_only_with_accept_all(
    qr: RunningNode, corpus: Corpus, ports: dict[str, int], tmp_path: Path
) -> None:
    """movescu accepts RLE Lossless only with +xa: the RLE file arrives unchanged."""
    rle = next(i for i in corpus.of_study("B1") if i.transfer_syntax == "1.2.840.10008.1.2.5")
    keys = [
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={rle.study_uid}",
        f"SeriesInstanceUID={rle.series_uid}",
        f"SOPInstanceUID={rle.sop_uid}",
    ]
    refused = tmp_path / "refused"
    refused.mkdir()
    output, status = movescu(qr, keys, refused, *to_movescu(ports))
    assert status[-1] == 0xA702, output
    assert final_counts(output) == counts(0, 1)
    assert list(refused.iterdir()) == []
    accepted = tmp_path / "accepted"
    accepted.mkdir()
    output, status = movescu(qr, keys, accepted, *to_movescu(ports), "+xa")
    assert status[-1] == 0x0000, output
    _assert_received(qr, accepted, [rle])


def test_move_to_unknown_destination_is_a801(
    qr: RunningNode, corpus: Corpus, tmp_path: Path
) -> None:
    output, status = movescu(qr, study_keys(corpus.study_uids["A1"]), tmp_path, "-aem", "NOWHERE")
    assert status == [0xA801], output
    assert list(tmp_path.iterdir()) == []


def test_move_to_destination_not_listening_is_a702(
    node_factory: Callable[..., RunningNode], corpus: Corpus, tmp_path: Path
) -> None:
    """A known destination nobody listens on: every sub-operation fails (A702)."""
    node = node_factory(toml=peers_toml({"GONE": free_port()}))
    store_files(node, [i.path for i in corpus.of_study("C1")])
    output, status = movescu(node, study_keys(corpus.study_uids["C1"]), tmp_path, "-aem", "GONE")
    assert status[-1] == 0xA702, output
    assert final_counts(output) == counts(0, 2)


# ---- C-GET ----------------------------------------------------------------------------


def getscu(
    node: RunningNode, keys: Sequence[str], out: Path, *options: str
) -> tuple[str, list[int]]:
    out.mkdir()
    args = [require_tool("getscu"), "-d", "-S", "-aec", node.ae_title, "+B", "-od", str(out)]
    for key in keys:
        args += ["-k", key]
    rc, output = run_tool([*args, *options, HOST, str(node.port)])
    assert rc == 0, output
    return output, statuses(output)


def test_get_study_byte_identical(qr: RunningNode, corpus: Corpus, tmp_path: Path) -> None:
    wanted = corpus.of_study("A2")
    output, status = getscu(qr, study_keys(wanted[0].study_uid), tmp_path / "get")
    # C-GET pendings and the C-STORE-RSPs getscu sent are both in the log.
    assert status[-1] == 0x0000, output
    assert final_counts(output) == counts(2, 0)
    _assert_received(qr, tmp_path / "get", wanted)


def test_get_rle_with_prefer_rle_byte_identical(
    qr: RunningNode, corpus: Corpus, tmp_path: Path
) -> None:
    rle = next(i for i in corpus.of_study("B1") if i.transfer_syntax == "1.2.840.10008.1.2.5")
    output, status = getscu(qr, series_keys(rle), tmp_path / "get", "+xr")
    assert status[-1] == 0x0000, output
    _assert_received(qr, tmp_path / "get", [rle])


def test_get_unacceptable_transfer_syntax_fails_those_suboperations(
    qr: RunningNode, corpus: Corpus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """getscu offers Explicit VR LE only: A1's two Implicit VR instances fail (B000)."""
    caplog.set_level(logging.WARNING, logger="archive.retrieve")
    a1 = corpus.of_study("A1")
    output, status = getscu(qr, study_keys(a1[0].study_uid), tmp_path / "get")
    assert status[-1] == 0xB000, output
    assert final_counts(output) == counts(3, 2)
    explicit = [i for i in a1 if i.transfer_syntax == "1.2.840.10008.1.2.1"]
    implicit = [i for i in a1 if i.transfer_syntax == "1.2.840.10008.1.2"]
    _assert_received(qr, tmp_path / "get", explicit)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for instance in implicit:
        assert (
            f"sub-operation for instance {instance.sop_uid} failed: the destination does not "
            "accept transfer syntax 1.2.840.10008.1.2 for SOP class 1.2.840.10008.5.1.4.1.1.2 "
            "(no transcoding yet)"
        ) in warnings


def test_get_all_unacceptable_is_a702(
    qr: RunningNode, corpus: Corpus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="archive.retrieve")
    implicit = [i for i in corpus.of_study("A1") if i.transfer_syntax == "1.2.840.10008.1.2"]
    output, status = getscu(qr, series_keys(implicit[0]), tmp_path / "get")
    assert status[-1] == 0xA702, output
    assert final_counts(output) == counts(0, 2)
    assert list((tmp_path / "get").iterdir()) == []
    assert sum("no transcoding yet" in r.getMessage() for r in caplog.records) == 2
