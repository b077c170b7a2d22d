"""C-STORE requests refused for what they are, over a raw association: the status
PS3.4 / PS3.7 name, the related fields, a WARNING in the node's log, nothing
stored, and the association going on (the next store on it succeeds)."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from pydicom.dataset import Dataset

from archive.dicom.dimse import (
    CEchoRq,
    CEchoRsp,
    CFindRq,
    CFindRsp,
    CMoveRq,
    CMoveRsp,
    CStoreRq,
    CStoreRsp,
    command_pdus,
)
from archive.dicom.dimse.command import Command, decode_command
from archive.dicom.uids import (
    EXPLICIT_VR_LE,
    PATIENT_ROOT_QR_FIND,
    STUDY_ROOT_QR_FIND,
    STUDY_ROOT_QR_MOVE,
    VERIFICATION,
)
from archive.dicom.ul import codec
from archive.dicom.ul.negotiation import build_request
from archive.dicom.ul.pdu import AAssociateAc, RoleSelection
from tests.conftest import RunningNode
from tests.dicom.header_helpers import JPEG_BASELINE, encapsulated
from tests.net.rawpeer import A_RELEASE_RQ, RawPeer, p_data_pdu, wait_until
from tests.store.helpers import (
    CANNOT_UNDERSTAND,
    CT_IMAGE,
    DOES_NOT_MATCH,
    SECONDARY_CAPTURE,
    SUCCESS,
    Item,
    all_rows,
    data_dir,
    encode_dataset,
    instance_files,
    leftovers,
    make_dataset,
    raw_association,
    stored_path,
)

SOP_CLASS_NOT_SUPPORTED = 0x0122
A_RELEASE_RP = bytes.fromhex("06 00 00000004 00000000")


def _send(peer: RawPeer, context_id: int, command: Command, data: bytes | None) -> Command:
    """One request (its data set in 16 kB PDVs), and the response's command set."""
    for pdu in command_pdus(context_id, command, 65536):
        peer.send(bytes(pdu))
    if data is not None:
        chunks = [data[i : i + 16_000] for i in range(0, len(data), 16_000)]
        for n, chunk in enumerate(chunks):
            peer.send(p_data_pdu(context_id, 0x02 if n == len(chunks) - 1 else 0x00, chunk))
    pdu = peer.recv_pdu()
    assert pdu[0] == 0x04, f"not a P-DATA-TF: {pdu[:1]!r}"
    (length,) = struct.unpack_from(">L", pdu, 6)
    control = pdu[11]
    assert control == 0x03, "a command set in one PDV"
    return decode_command(pdu[12 : 10 + length])


def _store(peer: RawPeer, context_id: int, item: Item, message_id: int = 1) -> CStoreRsp:
    rq = CStoreRq(
        message_id=message_id,
        affected_sop_class_uid=item.sop_class,
        affected_sop_instance_uid=item.uid,
    )
    rsp = _send(peer, context_id, rq, item.data)
    assert isinstance(rsp, CStoreRsp)
    return rsp


def test_a_store_on_a_context_where_the_requestor_is_scp_only_is_0122(
    node_factory: Callable[..., RunningNode], caplog: pytest.LogCaptureFixture
) -> None:
    """A context proposed with the SCP role alone (to receive C-GET's sub-operations
    on) is accepted for any syntax we send, here JPEG though only native syntaxes
    are configured: a C-STORE on it was stored, outside the configuration and the
    role the requestor took (PS3.7 D.3.3.4). Now 0122, nothing stored, and the
    association goes on."""
    node = node_factory(
        toml="[association]\naccept_all_transfer_syntaxes = false\n"
        'transfer_syntaxes = ["1.2.840.10008.1.2.1"]\n'
    )
    rq = build_request(
        "RAWSCU",
        "ARCHIVE",
        [(SECONDARY_CAPTURE, [JPEG_BASELINE]), (CT_IMAGE, [EXPLICIT_VR_LE])],
        max_pdu_length=65536,
        roles=[RoleSelection(SECONDARY_CAPTURE, scu_role=False, scp_role=True)],
    )
    peer = RawPeer(node.host, node.port, timeout=10)
    with peer, caplog.at_level("WARNING", logger="archive.net"):
        peer.send(codec.encode(rq))
        ac = peer.recv()
        assert isinstance(ac, AAssociateAc)
        receive_only, ct = (c.id for c in ac.contexts if c.result == 0)
        ds = make_dataset(sop_class=SECONDARY_CAPTURE, pixel_bytes=64)
        del ds.PixelData  # fragments, as in a JPEG data set
        data = encode_dataset(ds, EXPLICIT_VR_LE) + encapsulated(b"\xff\xd8\xff\xd9")
        sc = Item(SECONDARY_CAPTURE, ds.SOPInstanceUID, data)
        rsp = _store(peer, receive_only, sc)
        assert rsp.status == SOP_CLASS_NOT_SUPPORTED
        good = Item.of(make_dataset(pixel_bytes=64), EXPLICIT_VR_LE)
        assert _store(peer, ct, good, message_id=2).status == SUCCESS
    root = data_dir(node)
    assert list(all_rows(root)) == [good.uid]
    assert leftovers(root) == []
    assert any("no SCU role" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("sop_class", [SECONDARY_CAPTURE, VERIFICATION, STUDY_ROOT_QR_FIND])
def test_a_store_under_another_class_than_its_context_is_0122(
    node: RunningNode, sop_class: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A C-STORE whose Affected SOP Class UID is not its presentation context's
    abstract syntax (CT Image here): 0122 Refused: SOP Class not supported (PS3.7
    C.5), not stored under a class nobody negotiated."""
    item = Item.of(make_dataset(sop_class=sop_class, pixel_bytes=64), EXPLICIT_VR_LE)
    good = Item.of(make_dataset(pixel_bytes=64), EXPLICIT_VR_LE)
    peer, context_id = raw_association(node)
    with peer, caplog.at_level("WARNING", logger="archive.net"):
        rsp = _store(peer, context_id, item)
        assert rsp.status == SOP_CLASS_NOT_SUPPORTED
        assert rsp.affected_sop_instance_uid == item.uid
        assert _store(peer, context_id, good, 2).status == SUCCESS
    root = data_dir(node)
    assert instance_files(root) == [stored_path(root, good.uid)]
    wait_until(lambda: leftovers(root) == [], 5, "no leftovers")  # the good one's, after
    assert any("refused" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("context", "sop_class"),
    [
        (CT_IMAGE, STUDY_ROOT_QR_FIND),  # a C-FIND on a storage context
        (STUDY_ROOT_QR_FIND, PATIENT_ROOT_QR_FIND),  # served as Study Root before
    ],
)
def test_a_find_under_another_model_than_its_context_is_0122(
    node: RunningNode, context: str, sop_class: str
) -> None:
    """The same rule for any request: a C-FIND naming an information model that is
    not its context's is not answered under either model."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    peer, context_id = raw_association(node, context)
    with peer:
        rq = CFindRq(message_id=3, affected_sop_class_uid=sop_class)
        rsp = _send(peer, context_id, rq, encode_dataset(identifier, EXPLICIT_VR_LE))
        assert isinstance(rsp, CFindRsp)
        assert rsp.status == SOP_CLASS_NOT_SUPPORTED
        assert rsp.message_id_being_responded_to == 3


@pytest.mark.parametrize("sop_class", [VERIFICATION, STUDY_ROOT_QR_FIND])
def test_a_store_on_a_context_of_another_service_class_is_0122(
    node: RunningNode, sop_class: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A C-STORE naming its context's class, but a class of no storage service
    (Verification, a Q/R model): 0122 (PS3.7 C.5), no file and no row, and the
    association goes on. It was stored and indexed under that class."""
    item = Item.of(make_dataset(sop_class=sop_class, pixel_bytes=64), EXPLICIT_VR_LE)
    peer, context_id = raw_association(node, sop_class)
    with peer, caplog.at_level("WARNING", logger="archive.net"):
        rsp = _store(peer, context_id, item)
        assert rsp.status == SOP_CLASS_NOT_SUPPORTED
        assert rsp.affected_sop_instance_uid == item.uid
        if sop_class == VERIFICATION:
            echo = _send(
                peer, context_id, CEchoRq(message_id=2, affected_sop_class_uid=sop_class), None
            )
            assert isinstance(echo, CEchoRsp)
            assert echo.status == SUCCESS
    root = data_dir(node)
    assert instance_files(root) == []
    assert leftovers(root) == []
    assert all_rows(root) == {}
    assert any("not served" in r.getMessage() for r in caplog.records)


def test_an_echo_on_a_storage_context_is_0122(node: RunningNode) -> None:
    """C-ECHO is Verification's (PS3.4 A): on a CT Image context, under CT Image,
    0122; a store on the same context then succeeds."""
    good = Item.of(make_dataset(pixel_bytes=64), EXPLICIT_VR_LE)
    peer, context_id = raw_association(node)
    with peer:
        rsp = _send(peer, context_id, CEchoRq(message_id=1, affected_sop_class_uid=CT_IMAGE), None)
        assert isinstance(rsp, CEchoRsp)
        assert rsp.status == SOP_CLASS_NOT_SUPPORTED
        assert _store(peer, context_id, good, 2).status == SUCCESS


@pytest.mark.parametrize(
    ("context", "command"),
    [
        (
            STUDY_ROOT_QR_FIND,
            CMoveRq(
                message_id=4, affected_sop_class_uid=STUDY_ROOT_QR_FIND, move_destination="NOWHERE"
            ),
        ),
        (STUDY_ROOT_QR_MOVE, CFindRq(message_id=4, affected_sop_class_uid=STUDY_ROOT_QR_MOVE)),
    ],
)
def test_a_qr_request_on_a_model_of_another_operation_is_0122(
    node: RunningNode, context: str, command: Command
) -> None:
    """A C-MOVE on a FIND model's context, a C-FIND on a MOVE model's: 0122, not
    served as the operation the context was not negotiated for."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = "1.2.3"
    peer, context_id = raw_association(node, context)
    with peer:
        rsp = _send(peer, context_id, command, encode_dataset(identifier, EXPLICIT_VR_LE))
        assert isinstance(rsp, CMoveRsp if isinstance(command, CMoveRq) else CFindRsp)
        assert rsp.status == SOP_CLASS_NOT_SUPPORTED
        assert rsp.message_id_being_responded_to == 4


def test_a_store_without_a_data_set_is_c000(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    """Command Data Set Type (0000,0800) saying "none" on a C-STORE-RQ, which must
    carry one (PS3.7 9.3.1.1): C000 Cannot understand, no traceback, no abort."""
    good = Item.of(make_dataset(pixel_bytes=64), EXPLICIT_VR_LE)
    peer, context_id = raw_association(node)
    with peer, caplog.at_level("WARNING", logger="archive"):
        rq = CStoreRq(
            message_id=1,
            affected_sop_class_uid=CT_IMAGE,
            affected_sop_instance_uid=good.uid,
            has_dataset=False,
        )
        rsp = _send(peer, context_id, rq, None)
        assert isinstance(rsp, CStoreRsp)
        assert rsp.status == CANNOT_UNDERSTAND
        assert rsp.error_comment == "C-STORE-RQ without a data set"
        assert _store(peer, context_id, good, 2).status == SUCCESS
    assert not any(r.levelname == "ERROR" for r in caplog.records)
    assert any("refused, status 0xC000" in r.getMessage() for r in caplog.records)


def test_a_mismatch_names_the_offending_element_and_is_logged(
    node: RunningNode, caplog: pytest.LogCaptureFixture
) -> None:
    """The data set's SOP Instance UID differs from the command's: A900 with
    Offending Element (0008,0018) and an Error Comment that says so within its 64
    characters (PS3.4 Table B.2-1); the node logs the refusal at WARNING."""
    item = Item.of(make_dataset(pixel_bytes=64), EXPLICIT_VR_LE)
    other = Item(item.sop_class, item.uid[:-1] + ("1" if item.uid[-1] != "1" else "2"), item.data)
    peer, context_id = raw_association(node)
    with peer, caplog.at_level("WARNING", logger="archive.store"):
        rsp = _store(peer, context_id, other)
    assert rsp.status == DOES_NOT_MATCH
    assert rsp.offending_element == (0x00080018,)
    assert rsp.error_comment is not None
    assert rsp.error_comment.startswith("SOP Instance UID (0008,0018) differs from the command")
    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"'{other.uid}' refused, status 0xA900" in m for m in messages), messages
    assert leftovers(data_dir(node)) == []


def test_a_release_request_in_the_middle_of_a_data_set_is_answered_at_once(
    node_factory: Callable[..., RunningNode],
) -> None:
    """A-RELEASE-RQ after the first fragment of a C-STORE's data set: the store is
    not carried out (no file, no row, no response), and the release is answered at
    once (A-RELEASE-RP). The node had kept the release unanswered and aborted after
    the ARTIM value (here 20 s, longer than the wait)."""
    node = node_factory(toml="[timeouts]\nartim = 20\n")
    item = Item.of(make_dataset(pixel_bytes=64), EXPLICIT_VR_LE)
    peer, context_id = raw_association(node)
    with peer:
        rq = CStoreRq(
            message_id=1, affected_sop_class_uid=item.sop_class, affected_sop_instance_uid=item.uid
        )
        for pdu in command_pdus(context_id, rq, 65536):
            peer.send(bytes(pdu))
        peer.send(p_data_pdu(context_id, 0x00, item.data[:40]))  # not the last fragment
        peer.send(A_RELEASE_RQ)
        assert peer.recv_pdu(timeout=5) == A_RELEASE_RP
        peer.wait_closed(5)
    root = data_dir(node)
    assert instance_files(root) == []
    wait_until(lambda: leftovers(root) == [], 5, "no leftovers")
    assert all_rows(root) == {}
